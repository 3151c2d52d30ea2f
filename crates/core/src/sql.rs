//! How domain values are stored in PostgreSQL (the `sqlx` feature). Numbers are parsed once,
//! at the edge, and stored in E.164; reading a row parses the text back into the domain value
//! it was, so the row carries a [`PhoneNumber`] (or an [`Address`]) and nothing inside the
//! services parses a number from text again. A stored number that does not parse is
//! a decoding error (the row was not written by us); a stored address that is not a number
//! stays the text it was. A [`Failure`] is stored as its reason's name or its words. The enums
//! derive their types beside their definitions; the ids are transparent UUIDs.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef, Postgres};

use crate::phone::{Address, PhoneNumber};
use crate::reason::Failure;

/// Stores a type as text: `|value| text` writes it, `|text| result` reads it back.
macro_rules! as_text {
    ($t:ty, |$value:ident| $write:expr, |$text:ident| $read:expr) => {
        impl sqlx::Type<Postgres> for $t {
            fn type_info() -> PgTypeInfo {
                <String as sqlx::Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <String as sqlx::Type<Postgres>>::compatible(ty)
            }
        }

        impl PgHasArrayType for $t {
            fn array_type_info() -> PgTypeInfo {
                <String as PgHasArrayType>::array_type_info()
            }
        }

        impl<'r> sqlx::Decode<'r, Postgres> for $t {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let $text = <&str as sqlx::Decode<Postgres>>::decode(value)?;
                $read
            }
        }

        impl sqlx::Encode<'_, Postgres> for $t {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                let $value = self;
                <&str as sqlx::Encode<Postgres>>::encode($write, buf)
            }
        }
    };
}

as_text!(PhoneNumber, |n| n.e164(), |text| Ok(PhoneNumber::parse(
    text, None
)?));
as_text!(Address, |a| a.as_str(), |text| Ok(Address::read(text)));
as_text!(Failure, |f| f.as_str(), |text| Ok(Failure::from_text(text)));
