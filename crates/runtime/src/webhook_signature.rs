//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): what the composer signs
//! its webhooks with, and what the simulator's endpoint checks them with in development.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed with the bytes of `secret`
/// (`whsec_` and base64); `None` when the secret is not one.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Whether one of the space-separated signatures of a `webhook-signature` header is `secret`'s
/// (compared in constant time).
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(expected) = sign(secret, id, timestamp, body) else {
        return false;
    };
    let Some(key) = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or_default())
        .ok()
    else {
        return false;
    };
    header.split(' ').any(|given| {
        // HMAC both sides again so that the comparison takes the same time wherever they differ.
        let digest = |s: &str| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(s.as_bytes());
            Some(mac.finalize().into_bytes())
        };
        matches!((digest(given), digest(&expected)), (Some(a), Some(b)) if a == b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_checks_the_specifications_example() {
        // The example of the specification and its reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(sign(secret, id, ts, body).as_deref(), Some(sig));
        assert!(verify(secret, id, ts, body, &format!("v1,bm90IGl0 {sig}")));
        assert!(!verify(secret, id, ts + 1, body, sig));
        assert!(!verify(secret, id, ts, b"{}", sig));
        assert_eq!(sign("not-a-secret", id, ts, body), None);
        assert!(!verify("not-a-secret", id, ts, body, sig));
    }
}
