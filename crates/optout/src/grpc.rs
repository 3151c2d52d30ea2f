//! gRPC `OptOuts`: check, list, add and remove by hand, and the organization's replies.

use std::collections::HashMap;
use std::sync::Arc;

use sms_core::PhoneNumber;
use sms_core::text::{self, Lines};
use sms_proto::v1::opt_outs_service_server::{OptOutsService, OptOutsServiceServer};
use sms_proto::v1::{
    AddOptOutRequest, AddOptOutResponse, CheckOptOutRequest, CheckOptOutResponse,
    GetRepliesRequest, GetRepliesResponse, ListOptOutsRequest, ListOptOutsResponse, OptOutStatus,
    RemoveOptOutRequest, RemoveOptOutResponse, SetRepliesRequest, SetRepliesResponse,
};
use sms_runtime::auth::{self, Caller};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

use crate::registry::{Change, OptOutRow, Registry};

/// Serves `OptOuts` (plus health and reflection) on `listener` until `shutdown`.
pub async fn serve(
    registry: Arc<Registry>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<OptOutsServiceServer<Service>>().await;
    let reflection = sms_proto::Reflection::new(
        &[
            <OptOutsServiceServer<Service> as tonic::server::NamedService>::NAME,
            "grpc.health.v1.Health",
        ],
        &[tonic_health::pb::FILE_DESCRIPTOR_SET],
    );
    let reflection_v1alpha = reflection.v1alpha()?;
    let reflection = reflection.v1()?;
    tracing::info!(addr = ?listener.local_addr().ok(), "opt-out registry serving gRPC");
    tonic::transport::Server::builder()
        // Tonic's own refusal of an over-large request, with a reason like every other.
        .layer(sms_runtime::grpc_limits::ReasonedLimits)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(OptOutsServiceServer::new(Service(registry)))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown.cancelled_owned(),
        )
        .await?;
    Ok(())
}

/// The `OptOuts` service.
#[derive(Clone)]
pub struct Service(Arc<Registry>);

fn refuse(code: Code, reason: &str, message: impl Into<String>) -> Status {
    auth::status(code, message, reason, HashMap::new())
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "opt-out registry error");
    refuse(Code::Internal, "INTERNAL", "internal error; try again")
}

/// Longest reason for a change by hand.
const MAX_REASON_CHARS: usize = 500;
/// The replies are texts: at most one SMS body.
const MAX_REPLY_CHARS: usize = sms_core::MAX_BODY_CHARS;
/// Longest page token (a contact number).
const MAX_TOKEN_CHARS: usize = 64;

/// Checks a request field (length, characters).
fn field(name: &'static str, value: &str, max: usize, lines: Lines) -> Result<(), Status> {
    text::check(name, value, max, lines).map_err(|e| auth::field_status(&e))
}

fn contact(name: &'static str, number: &str) -> Result<String, Status> {
    field(name, number, sms_core::phone::MAX_INPUT_LEN, Lines::Single)?;
    PhoneNumber::parse_valid(number, None)
        .map(|n| n.e164().to_owned())
        .map_err(|e| refuse(Code::InvalidArgument, "INVALID_NUMBER", e.to_string()))
}

fn status(row: OptOutRow) -> OptOutStatus {
    OptOutStatus {
        contact_number: row.contact_number,
        opted_out: row.opted_out,
        source: row.source,
        our_number: row.our_number.unwrap_or_default(),
        changed_at: Some(prost_types::Timestamp {
            seconds: row.changed_at.timestamp(),
            nanos: i32::try_from(row.changed_at.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        changed_by: row.changed_by.unwrap_or_default(),
        reason: row.reason.unwrap_or_default(),
    }
}

impl Service {
    /// Who calls `method`, if they may (administrators only for some: see
    /// [`auth::ADMIN_METHODS`]).
    fn caller<T>(&self, request: &Request<T>, method: &'static str) -> Result<Caller, Status> {
        Ok(auth::authorize(&self.0.tokens, request.metadata(), method)?)
    }

    async fn current(&self, org: &str, number: &str) -> Result<OptOutStatus, Status> {
        let row = self.0.get(org, number).await.map_err(internal)?;
        Ok(row.map(status).unwrap_or_else(|| OptOutStatus {
            contact_number: number.to_owned(),
            ..Default::default()
        }))
    }

    async fn change<T>(
        &self,
        request: Request<T>,
        method: &'static str,
        contact_number: impl Fn(&T) -> (&str, &str),
        opted_out: bool,
    ) -> Result<OptOutStatus, Status> {
        let caller = self.caller(&request, method)?;
        let user = caller.user_id.as_deref().ok_or_else(|| {
            refuse(
                Code::InvalidArgument,
                "MISSING_USER",
                "x-user-id is required: changes record who made them",
            )
        })?;
        let (number, reason) = contact_number(request.get_ref());
        let number = contact("contact_number", number)?;
        field("reason", reason, MAX_REASON_CHARS, Lines::Multi)?;
        if reason.trim().is_empty() {
            return Err(refuse(
                Code::InvalidArgument,
                "MISSING_REASON",
                "say why (reason)",
            ));
        }
        self.0
            .record(&Change {
                organization_id: &caller.organization_id,
                contact: &number,
                opted_out,
                source: "manual",
                our_number: None,
                changed_by: Some(user),
                reason: Some(reason.trim()),
            })
            .await
            .map_err(internal)?;
        self.current(&caller.organization_id, &number).await
    }
}

#[tonic::async_trait]
impl OptOutsService for Service {
    async fn check_opt_out(
        &self,
        request: Request<CheckOptOutRequest>,
    ) -> Result<Response<CheckOptOutResponse>, Status> {
        let caller = self.caller(&request, "CheckOptOut")?;
        let number = contact("contact_number", &request.get_ref().contact_number)?;
        Ok(Response::new(CheckOptOutResponse {
            status: Some(self.current(&caller.organization_id, &number).await?),
        }))
    }

    async fn list_opt_outs(
        &self,
        request: Request<ListOptOutsRequest>,
    ) -> Result<Response<ListOptOutsResponse>, Status> {
        let caller = self.caller(&request, "ListOptOuts")?;
        let r = request.get_ref();
        field("page_token", &r.page_token, MAX_TOKEN_CHARS, Lines::Single)?;
        if !r.page_token.is_empty() && !r.page_token.starts_with('+') {
            return Err(refuse(
                Code::InvalidArgument,
                "INVALID_PAGE_TOKEN",
                "invalid page token",
            ));
        }
        let size = match r.page_size {
            0 => 100,
            n => n.min(1000),
        };
        let rows = self
            .0
            .list(&caller.organization_id, &r.page_token, i64::from(size) + 1)
            .await
            .map_err(internal)?;
        let more = rows.len() > size as usize;
        let mut opt_outs: Vec<OptOutStatus> =
            rows.into_iter().take(size as usize).map(status).collect();
        let next_page_token = if more {
            opt_outs
                .last()
                .map(|o| o.contact_number.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        opt_outs.truncate(size as usize);
        Ok(Response::new(ListOptOutsResponse {
            opt_outs,
            next_page_token,
        }))
    }

    async fn add_opt_out(
        &self,
        request: Request<AddOptOutRequest>,
    ) -> Result<Response<AddOptOutResponse>, Status> {
        let status = self
            .change(
                request,
                "AddOptOut",
                |r| (&r.contact_number, &r.reason),
                true,
            )
            .await?;
        Ok(Response::new(AddOptOutResponse {
            status: Some(status),
        }))
    }

    async fn remove_opt_out(
        &self,
        request: Request<RemoveOptOutRequest>,
    ) -> Result<Response<RemoveOptOutResponse>, Status> {
        let status = self
            .change(
                request,
                "RemoveOptOut",
                |r| (&r.contact_number, &r.reason),
                false,
            )
            .await?;
        Ok(Response::new(RemoveOptOutResponse {
            status: Some(status),
        }))
    }

    async fn get_replies(
        &self,
        request: Request<GetRepliesRequest>,
    ) -> Result<Response<GetRepliesResponse>, Status> {
        let caller = self.caller(&request, "GetReplies")?;
        let (help_text, opt_out_confirmation) = self
            .0
            .replies(&caller.organization_id)
            .await
            .map_err(internal)?;
        Ok(Response::new(GetRepliesResponse {
            help_text,
            opt_out_confirmation,
        }))
    }

    async fn set_replies(
        &self,
        request: Request<SetRepliesRequest>,
    ) -> Result<Response<SetRepliesResponse>, Status> {
        let caller = self.caller(&request, "SetReplies")?;
        let r = request.get_ref();
        field("help_text", &r.help_text, MAX_REPLY_CHARS, Lines::Multi)?;
        field(
            "opt_out_confirmation",
            &r.opt_out_confirmation,
            MAX_REPLY_CHARS,
            Lines::Multi,
        )?;
        let (help_text, opt_out_confirmation) = self
            .0
            .set_replies(
                &caller.organization_id,
                &r.help_text,
                &r.opt_out_confirmation,
            )
            .await
            .map_err(internal)?;
        Ok(Response::new(SetRepliesResponse {
            help_text,
            opt_out_confirmation,
        }))
    }
}
