//! Requests as the CRM sends them, signed webhooks as the carrier sends them, and waiting.

use std::future::Future;
use std::time::{Duration, Instant};

use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use tonic::transport::Channel;

use crate::setup::{ORG, USER};

/// Sends `request` as the test user and returns the accepted message (panics on refusal).
pub async fn send_ok(
    client: &mut MessagingServiceClient<Channel>,
    request: sms_proto::v1::SendMessageRequest,
) -> sms_proto::v1::Message {
    client
        .send_message(as_user(request))
        .await
        .unwrap_or_else(|e| panic!("send refused: {e}"))
        .into_inner()
        .message
        .unwrap_or_else(|| panic!("SendMessage answered without a message"))
}

/// A plain SendMessage request from `from` to `to`.
pub fn sms(from: &str, to: &str, body: &str) -> sms_proto::v1::SendMessageRequest {
    sms_proto::v1::SendMessageRequest {
        to: to.into(),
        from: from.into(),
        body: body.into(),
        ..Default::default()
    }
}

/// A request as [`USER`] of [`ORG`], an administrator of it (tests set their organization up:
/// numbers, groups, settings, webhooks).
pub fn as_user<T>(message: T) -> tonic::Request<T> {
    as_caller(message, ORG, USER)
}

/// A request as `user` of `org`, an administrator of it.
pub fn as_caller<T>(message: T, org: &str, user: &str) -> tonic::Request<T> {
    let mut r = as_member(message, org, user);
    r.metadata_mut()
        .insert("x-user-role", "admin".parse().unwrap());
    r
}

/// A request as `user` of `org`, a member (no administrator's rights).
pub fn as_member<T>(message: T, org: &str, user: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("x-organization-id", org.parse().unwrap());
    r.metadata_mut().insert("x-user-id", user.parse().unwrap());
    r
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `X-Twilio-Signature` by Twilio's scheme, written out here independently of the receiver's
/// code (and of sms-twilio's), so that the tests check the receiver against the scheme.
pub fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// POSTs a form to `url`, with `signature` as `X-Twilio-Signature`; returns the status and body.
pub async fn post_form(
    url: &str,
    params: &[(&str, &str)],
    signature: Option<&str>,
) -> (u16, String) {
    let client = sms_runtime::http_client(Duration::from_secs(30)).unwrap();
    let mut request = client.post(url).form(params);
    if let Some(sig) = signature {
        request = request.header("X-Twilio-Signature", sig);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}
