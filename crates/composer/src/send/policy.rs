//! Who may send what from which number to whom: the recipient's country and line, the sender's
//! ownership, kind and capabilities, the same-calling-code rule.

use sms_core::{PhoneNumber, phone};

use sms_runtime::auth::Caller;
use sqlx::PgPool;

use crate::error::SendError;
use crate::store::{self, NumberRow};
use sms_numbers::SenderCache;

/// The recipient is in a supported country and can take SMS as far as we know.
pub fn check_recipient(to: &PhoneNumber) -> Result<(), SendError> {
    if !to.region().is_some_and(|r| r.sms_supported()) {
        return Err(SendError::UnsupportedCountry {
            region: to
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "unknown".into()),
        });
    }
    if !to.number_type().sms_capable() {
        return Err(SendError::RecipientNotSmsCapable {
            number: to.e164().to_owned(),
            number_type: to.number_type().as_str().to_owned(),
        });
    }
    Ok(())
}

/// Finds and checks the sender of a message; held numbers are remembered by sender.
#[derive(Clone)]
pub struct Senders {
    pool: PgPool,
    cache: SenderCache,
}

impl Senders {
    /// Numbers read from `pool`, remembered in `cache`.
    pub fn new(pool: PgPool, cache: SenderCache) -> Self {
        Senders { pool, cache }
    }

    /// The sender for `to`: the one asked for, checked (the organization's, rented, able to
    /// send SMS, the user's own or their group's, in the same calling code), or the user's
    /// number with the recipient's calling code (the one last used with this contact first).
    pub(crate) async fn sender(
        &self,
        caller: &Caller,
        user: &str,
        from: Option<&PhoneNumber>,
        to: &PhoneNumber,
    ) -> Result<NumberRow, SendError> {
        let org = caller.organization_id.as_str();
        let Some(from) = from else {
            let candidates = store::numbers::usable(&self.pool, org, user, to.e164()).await?;
            return candidates
                .into_iter()
                .find(|n| phone::same_calling_code(&n.number, to))
                .ok_or(SendError::NoSenderAvailable {
                    calling_code: to.calling_code(),
                });
        };
        let number = match self.cache.get(org, from.e164()) {
            Some(number) => number,
            None => {
                let number = store::numbers::find(&self.pool, org, from.e164())
                    .await?
                    .ok_or_else(|| SendError::UnknownSender(from.e164().to_owned()))?;
                self.cache.insert(number.clone());
                number
            }
        };
        if !number.kind.can_send() {
            return Err(SendError::ExternalSender(number.number.e164().to_owned()));
        }
        if !number.sms_capable {
            return Err(SendError::SenderNotSmsCapable(
                number.number.e164().to_owned(),
            ));
        }
        let owns = number.owner_user_id.as_deref() == Some(user);
        let member = match &number.owner_group_id {
            Some(group) if !owns => store::groups::is_member(&self.pool, org, group, user).await?,
            _ => false,
        };
        if !owns && !member {
            return Err(SendError::SenderNotOwned(number.number.e164().to_owned()));
        }
        if !phone::same_calling_code(from, to) {
            return Err(SendError::InternationalNotAllowed {
                from: from.calling_code(),
                to: to.calling_code(),
            });
        }
        Ok(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> PhoneNumber {
        PhoneNumber::parse_valid(s, None).unwrap()
    }

    #[test]
    fn recipients() {
        assert!(check_recipient(&n("+12015550123")).is_ok());
        assert!(matches!(
            check_recipient(&n("+819012345678")),
            Err(SendError::UnsupportedCountry { .. })
        ));
        assert!(matches!(
            check_recipient(&n("+442079460018")),
            Err(SendError::RecipientNotSmsCapable { .. })
        ));
    }
}
