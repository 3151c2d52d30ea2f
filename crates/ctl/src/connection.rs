//! Where and as whom `smsctl` calls the platform, and how its errors are shown.

use anyhow::{Context, bail};
use clap::Args;
use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;
/// Where and as whom to call: from `SMS_*` variables, overridden by flags.
#[derive(Debug, Args)]
pub struct Connection {
    /// gRPC endpoint of the opt-out registry.
    #[arg(
        long,
        env = "SMS_OPTOUT_ENDPOINT",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    pub optout_endpoint: String,
    /// gRPC endpoint of the platform.
    #[arg(
        long,
        env = "SMS_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    endpoint: String,
    /// Bearer token.
    #[arg(long, env = "SMS_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Organization id.
    #[arg(long, env = "SMS_ORG", global = true)]
    org: Option<String>,
    /// User id.
    #[arg(long, env = "SMS_USER", global = true)]
    pub(crate) user: Option<String>,
    /// The user's role in the organization: member (the default) or admin (needed to manage
    /// numbers, groups, settings, webhooks, opt-ins and replies).
    #[arg(long, env = "SMS_ROLE", global = true)]
    role: Option<String>,
}

impl Connection {
    /// The calling user, if set.
    pub(crate) fn user(&self) -> Option<String> {
        self.user.clone()
    }

    pub(crate) async fn channel(&self) -> anyhow::Result<Channel> {
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .with_context(|| format!("SMS_ENDPOINT {:?} is not a valid URL", self.endpoint))?;
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach the platform at {}", self.endpoint))
    }

    pub(crate) fn request<T>(
        &self,
        message: T,
        need_user: bool,
    ) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        let md = request.metadata_mut();
        let Some(org) = &self.org else {
            bail!("no organization: set SMS_ORG or pass --org");
        };
        md.insert(
            "x-organization-id",
            org.parse().context("--org is not valid metadata")?,
        );
        match &self.user {
            Some(user) => {
                md.insert(
                    "x-user-id",
                    user.parse().context("--user is not valid metadata")?,
                );
            }
            None if need_user => bail!("no user: set SMS_USER or pass --user"),
            None => {}
        }
        if let Some(role) = &self.role {
            md.insert(
                "x-user-role",
                role.parse().context("--role is not valid metadata")?,
            );
        }
        if let Some(token) = &self.token {
            md.insert(
                "authorization",
                format!("Bearer {token}")
                    .parse()
                    .context("the token is not valid metadata")?,
            );
        }
        Ok(request)
    }
}

/// A gRPC error, printed plainly with its machine-readable reason.
pub(crate) fn explain(status: tonic::Status) -> anyhow::Error {
    let reason = status
        .get_details_error_info()
        .map(|info| format!(" [{}]", info.reason))
        .unwrap_or_default();
    anyhow::anyhow!("{}{reason}", status.message())
}

/// A Messaging client that carries attachments.
pub(crate) fn messaging(channel: Channel) -> MessagingServiceClient<Channel> {
    MessagingServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// Largest gRPC message (attachments).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
