//! How domain values are stored in PostgreSQL (the `sqlx` feature). Numbers are parsed once,
//! at the edge, and stored in E.164; reading a row parses the text back into the domain value
//! it was, so the row carries a [`PhoneNumber`] (or an [`Address`], a [`Region`]) and nothing
//! inside the services parses a number from text again. A stored number that does not parse is
//! a decoding error (the row was not written by us); a stored address that is not a number
//! stays the text it was. A [`Failure`] is stored as its reason's name or its words. The enums
//! derive their types beside their definitions; the ids are transparent UUIDs.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef, Postgres};

use crate::phone::{Address, PhoneNumber, Region};
use crate::reason::Failure;

impl sqlx::Type<Postgres> for Address {
    fn type_info() -> PgTypeInfo {
        <String as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Address {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Address::read(<&str as sqlx::Decode<Postgres>>::decode(
            value,
        )?))
    }
}

impl sqlx::Encode<'_, Postgres> for Address {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as sqlx::Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

impl sqlx::Type<Postgres> for PhoneNumber {
    fn type_info() -> PgTypeInfo {
        <String as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for PhoneNumber {
    fn array_type_info() -> PgTypeInfo {
        <String as PgHasArrayType>::array_type_info()
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for PhoneNumber {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as sqlx::Decode<Postgres>>::decode(value)?;
        Ok(PhoneNumber::parse(text, None)?)
    }
}

impl sqlx::Encode<'_, Postgres> for PhoneNumber {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as sqlx::Encode<Postgres>>::encode(self.e164(), buf)
    }
}

impl sqlx::Type<Postgres> for Region {
    fn type_info() -> PgTypeInfo {
        <String as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Region {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as sqlx::Decode<Postgres>>::decode(value)?;
        Ok(text.parse::<Region>()?)
    }
}

impl sqlx::Encode<'_, Postgres> for Region {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as sqlx::Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

impl sqlx::Type<Postgres> for Failure {
    fn type_info() -> PgTypeInfo {
        <String as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for Failure {
    fn array_type_info() -> PgTypeInfo {
        <String as PgHasArrayType>::array_type_info()
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Failure {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Failure::from_text(
            <&str as sqlx::Decode<Postgres>>::decode(value)?,
        ))
    }
}

impl sqlx::Encode<'_, Postgres> for Failure {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as sqlx::Encode<Postgres>>::encode(self.as_str(), buf)
    }
}
