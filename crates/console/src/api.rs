//! The platform's public gRPC APIs, called as the signed-in user (the console is a client like
//! any other), and what their refusals mean for a page.

use std::collections::HashMap;
use std::time::Duration;

use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use sms_proto::v1::numbers_service_client::NumbersServiceClient;
use sms_proto::v1::opt_outs_service_client::OptOutsServiceClient;
use sms_proto::v1::templates_service_client::TemplatesServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use tonic_types::StatusExt;

use crate::session::Session;

/// How long one API call may take before the page says the platform is not answering.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Connections to the platform (opened on first use, shared by every session).
#[derive(Clone, Debug)]
pub struct Api {
    platform: Channel,
    optout: Channel,
}

impl Api {
    /// Lazily connected channels to the composer's and the opt-out registry's gRPC endpoints.
    pub fn new(platform_url: &str, optout_url: &str) -> Result<Self, tonic::transport::Error> {
        let channel = |url: &str| {
            Endpoint::from_shared(url.to_owned()).map(|e| {
                e.connect_timeout(Duration::from_secs(5))
                    .timeout(CALL_TIMEOUT)
                    .connect_lazy()
            })
        };
        Ok(Api {
            platform: channel(platform_url)?,
            optout: channel(optout_url)?,
        })
    }

    /// Messages, conversations, inbox, usage.
    pub fn messaging(&self) -> MessagingServiceClient<Channel> {
        MessagingServiceClient::new(self.platform.clone())
    }

    /// Templates and previews.
    pub fn templates(&self) -> TemplatesServiceClient<Channel> {
        TemplatesServiceClient::new(self.platform.clone())
    }

    /// Numbers and groups.
    pub fn numbers(&self) -> NumbersServiceClient<Channel> {
        NumbersServiceClient::new(self.platform.clone())
    }

    /// The opt-out registry.
    pub fn opt_outs(&self) -> OptOutsServiceClient<Channel> {
        OptOutsServiceClient::new(self.optout.clone())
    }
}

/// `message` as `session`'s call: its token, organization, user and role.
pub fn call<T>(session: &Session, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let md = request.metadata_mut();
    // Sign-in accepted only values that are valid metadata (`signin::check`).
    if let Ok(v) = session.organization_id.parse() {
        md.insert("x-organization-id", v);
    }
    if let Ok(v) = session.user_id.parse() {
        md.insert("x-user-id", v);
    }
    let role = if session.admin { "admin" } else { "member" };
    md.insert(
        "x-user-role",
        tonic::metadata::MetadataValue::from_static(role),
    );
    if !session.token.is_empty()
        && let Ok(v) = format!("Bearer {}", session.token).parse()
    {
        md.insert("authorization", v);
    }
    request
}

/// A refusal from the API, as a page shows it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The gRPC code.
    pub code: Code,
    /// The machine-readable reason (`ErrorInfo.reason`), e.g. `INVALID_RECIPIENT`.
    pub reason: String,
    /// The API's message: says what is wrong and what to do.
    pub message: String,
    /// The form field it is about, where one is.
    pub field: Option<String>,
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        let info = s.get_details_error_info();
        let (reason, metadata) = info
            .map(|i| (i.reason, i.metadata))
            .unwrap_or_else(|| (String::new(), HashMap::new()));
        let field = metadata
            .get("field")
            .cloned()
            .or_else(|| field_of(&reason).map(str::to_owned));
        let message = match s.code() {
            Code::Unavailable | Code::DeadlineExceeded if reason.is_empty() => {
                "The platform is not answering; try again in a moment.".to_owned()
            }
            _ => s.message().to_owned(),
        };
        ApiError {
            code: s.code(),
            reason,
            message,
            field,
        }
    }
}

/// The form field (named as the API's request field) a reason is about.
pub fn field_of(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "INVALID_RECIPIENT"
        | "UNSUPPORTED_COUNTRY"
        | "RECIPIENT_NOT_SMS_CAPABLE"
        | "INTERNATIONAL_NOT_ALLOWED"
        | "OPTED_OUT" => "to",
        "INVALID_SENDER"
        | "UNKNOWN_SENDER"
        | "EXTERNAL_SENDER"
        | "SENDER_NOT_SMS_CAPABLE"
        | "SENDER_NOT_OWNED"
        | "NO_SENDER_AVAILABLE"
        | "SENDER_NOT_MMS_CAPABLE" => "from",
        "BODY_EMPTY" | "BODY_TOO_LONG" | "BODY_AND_TEMPLATE" => "body",
        r if r.starts_with("TEMPLATE_") && r != "TEMPLATE_NOT_FOUND" => "body",
        "UNKNOWN_TIME_ZONE" => "time_zone",
        "INVALID_LOCAL_TIME"
        | "LOCAL_TIME_DOES_NOT_EXIST"
        | "SEND_AT_IN_PAST"
        | "SEND_AT_TOO_FAR"
        | "INVALID_SEND_AT"
        | "SEND_AT_REQUIRED" => "send_at",
        "MISSING_NAME" => "name",
        "INVALID_MONTH" => "month",
        "INVALID_NUMBER" => "number",
        _ => return None,
    })
}
