//! `sms.v1.WebhooksService`.

use sms_proto::v1::webhooks_service_server::WebhooksService;
use sms_proto::v1::{
    CreateWebhookEndpointRequest, CreateWebhookEndpointResponse, DeleteWebhookEndpointRequest,
    DeleteWebhookEndpointResponse, ListWebhookAttemptsRequest, ListWebhookAttemptsResponse,
    ListWebhookEndpointsRequest, ListWebhookEndpointsResponse, ReplayWebhookEventsRequest,
    ReplayWebhookEventsResponse, RotateWebhookSecretRequest, RotateWebhookSecretResponse,
    SetWebhookEndpointEnabledRequest, SetWebhookEndpointEnabledResponse, WebhookAttempt,
    WebhookEndpoint, WebhookOutcome,
};
use tonic::{Request, Response, Status};

use super::{call, timestamp};
use crate::store::webhooks::{AttemptRow, EndpointRow, Outcome};

fn endpoint(e: EndpointRow) -> WebhookEndpoint {
    WebhookEndpoint {
        id: e.id.to_string(),
        url: e.url,
        event_types: e.event_types,
        description: e.description,
        enabled: e.enabled,
        disabled_reason: e.disabled_reason,
        failing_since: e.failing_since.map(timestamp),
        created_at: Some(timestamp(e.created_at)),
    }
}

fn attempt(a: AttemptRow) -> WebhookAttempt {
    WebhookAttempt {
        event_id: a.event_id,
        event_type: a.event_type,
        attempt: u32::try_from(a.attempt).unwrap_or(0),
        attempted_at: Some(timestamp(a.attempted_at)),
        duration_ms: u32::try_from(a.duration_ms).unwrap_or(0),
        http_status: a
            .http_status
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(0),
        error: a.error,
        response: a.response,
        attempt_outcome: match Outcome::parse(&a.outcome) {
            Some(Outcome::Delivered) => WebhookOutcome::Delivered,
            Some(Outcome::Retrying) => WebhookOutcome::Retrying,
            Some(Outcome::Failed) => WebhookOutcome::Failed,
            None => WebhookOutcome::Unspecified,
        } as i32,
        outcome: a.outcome,
        next_attempt_at: a.next_attempt_at.map(timestamp),
    }
}

/// `sms.v1.WebhooksService`.
#[derive(Clone)]
pub struct WebhooksApi {
    auth: sms_runtime::rpc::Auth,
    webhooks: crate::webhooks::Webhooks,
}

impl WebhooksApi {
    /// The service over its capabilities, its calls authenticated by `auth`.
    pub fn new(auth: sms_runtime::rpc::Auth, webhooks: crate::webhooks::Webhooks) -> Self {
        WebhooksApi { auth, webhooks }
    }
}

#[tonic::async_trait]
impl WebhooksService for WebhooksApi {
    async fn create_webhook_endpoint(
        &self,
        request: Request<CreateWebhookEndpointRequest>,
    ) -> Result<Response<CreateWebhookEndpointResponse>, Status> {
        call!(self, request, "CreateWebhookEndpoint", |caller| {
            let r = request.get_ref();
            self.webhooks
                .create_webhook(&caller, &r.url, &r.event_types, &r.description)
                .await
                .map(|(e, secret)| CreateWebhookEndpointResponse {
                    endpoint: Some(endpoint(e)),
                    secret,
                })
        })
    }

    async fn list_webhook_endpoints(
        &self,
        request: Request<ListWebhookEndpointsRequest>,
    ) -> Result<Response<ListWebhookEndpointsResponse>, Status> {
        call!(self, request, "ListWebhookEndpoints", |caller| {
            self.webhooks
                .list_webhooks(&caller)
                .await
                .map(|all| ListWebhookEndpointsResponse {
                    endpoints: all.into_iter().map(endpoint).collect(),
                })
        })
    }

    async fn set_webhook_endpoint_enabled(
        &self,
        request: Request<SetWebhookEndpointEnabledRequest>,
    ) -> Result<Response<SetWebhookEndpointEnabledResponse>, Status> {
        call!(self, request, "SetWebhookEndpointEnabled", |caller| {
            let r = request.get_ref();
            self.webhooks
                .set_webhook_enabled(&caller, &r.endpoint_id, r.enabled)
                .await
                .map(|e| SetWebhookEndpointEnabledResponse {
                    endpoint: Some(endpoint(e)),
                })
        })
    }

    async fn delete_webhook_endpoint(
        &self,
        request: Request<DeleteWebhookEndpointRequest>,
    ) -> Result<Response<DeleteWebhookEndpointResponse>, Status> {
        call!(self, request, "DeleteWebhookEndpoint", |caller| {
            self.webhooks
                .delete_webhook(&caller, &request.get_ref().endpoint_id)
                .await
                .map(|()| DeleteWebhookEndpointResponse {})
        })
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<RotateWebhookSecretRequest>,
    ) -> Result<Response<RotateWebhookSecretResponse>, Status> {
        call!(self, request, "RotateWebhookSecret", |caller| {
            self.webhooks
                .rotate_webhook_secret(&caller, &request.get_ref().endpoint_id)
                .await
                .map(|secret| RotateWebhookSecretResponse { secret })
        })
    }

    async fn list_webhook_attempts(
        &self,
        request: Request<ListWebhookAttemptsRequest>,
    ) -> Result<Response<ListWebhookAttemptsResponse>, Status> {
        call!(self, request, "ListWebhookAttempts", |caller| {
            let r = request.get_ref();
            self.webhooks
                .webhook_attempts(
                    &caller,
                    &r.endpoint_id,
                    &r.event_id,
                    r.page_size,
                    &r.page_token,
                )
                .await
                .map(|(rows, next)| ListWebhookAttemptsResponse {
                    attempts: rows.into_iter().map(attempt).collect(),
                    next_page_token: next,
                })
        })
    }

    async fn replay_webhook_events(
        &self,
        request: Request<ReplayWebhookEventsRequest>,
    ) -> Result<Response<ReplayWebhookEventsResponse>, Status> {
        call!(self, request, "ReplayWebhookEvents", |caller| {
            let r = request.get_ref();
            self.webhooks
                .replay_webhooks(&caller, &r.endpoint_id, &r.event_id, r.all_failed)
                .await
                .map(|n| ReplayWebhookEventsResponse {
                    scheduled: u32::try_from(n).unwrap_or(u32::MAX),
                })
        })
    }
}
