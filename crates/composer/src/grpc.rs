//! The gRPC services: thin adapters from protobuf to [`App`].

use std::sync::Arc;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use sms_proto::v1::messaging_server::Messaging;
use sms_proto::v1::numbers_server::Numbers;
use sms_proto::v1::{
    AddNumberRequest, AddNumberResponse, Direction, GetMessageRequest, GetMessageResponse,
    ListMessagesRequest, ListMessagesResponse, ListNumbersRequest, ListNumbersResponse, Message,
    NumberKind, PhoneNumber, SendMessageRequest, SendMessageResponse, StatusEntry,
};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::app::App;
use crate::store::{HistoryRow, MessageRow, NumberRow};

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// A span for one call, continuing the caller's trace when it sent a `traceparent`.
fn rpc_span(method: &'static str, metadata: &MetadataMap) -> tracing::Span {
    let span = tracing::info_span!("grpc", method, system = tracing::field::Empty);
    let cx = TraceContextPropagator::new().extract(&MetadataExtractor(metadata));
    let _ = span.set_parent(cx);
    span
}

/// `sms.v1.Messaging`.
#[derive(Clone)]
pub struct MessagingService(pub Arc<App>);

#[tonic::async_trait]
impl Messaging for MessagingService {
    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        let span = rpc_span("SendMessage", request.metadata());
        async {
            let caller = self.0.caller(request.metadata())?;
            let m = self.0.send(&caller, request.into_inner()).await?;
            Ok(Response::new(SendMessageResponse {
                message: Some(message(m, Vec::new())),
            }))
        }
        .instrument(span)
        .await
    }

    async fn get_message(
        &self,
        request: Request<GetMessageRequest>,
    ) -> Result<Response<GetMessageResponse>, Status> {
        let span = rpc_span("GetMessage", request.metadata());
        async {
            let caller = self.0.caller(request.metadata())?;
            let (m, history) = self.0.get(&caller, &request.get_ref().id).await?;
            Ok(Response::new(GetMessageResponse {
                message: Some(message(m, history)),
            }))
        }
        .instrument(span)
        .await
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        let span = rpc_span("ListMessages", request.metadata());
        async {
            let caller = self.0.caller(request.metadata())?;
            let (rows, next_page_token) = self.0.list(&caller, request.get_ref()).await?;
            Ok(Response::new(ListMessagesResponse {
                messages: rows.into_iter().map(|m| message(m, Vec::new())).collect(),
                next_page_token,
            }))
        }
        .instrument(span)
        .await
    }
}

/// `sms.v1.Numbers`.
#[derive(Clone)]
pub struct NumbersService(pub Arc<App>);

#[tonic::async_trait]
impl Numbers for NumbersService {
    async fn add_number(
        &self,
        request: Request<AddNumberRequest>,
    ) -> Result<Response<AddNumberResponse>, Status> {
        let span = rpc_span("AddNumber", request.metadata());
        async {
            let caller = self.0.caller(request.metadata())?;
            let (row, warnings) = self.0.add_number(&caller, request.into_inner()).await?;
            Ok(Response::new(AddNumberResponse {
                number: Some(number(row)),
                warnings,
            }))
        }
        .instrument(span)
        .await
    }

    async fn list_numbers(
        &self,
        request: Request<ListNumbersRequest>,
    ) -> Result<Response<ListNumbersResponse>, Status> {
        let span = rpc_span("ListNumbers", request.metadata());
        async {
            let caller = self.0.caller(request.metadata())?;
            let rows = self.0.list_numbers(&caller).await?;
            Ok(Response::new(ListNumbersResponse {
                numbers: rows.into_iter().map(number).collect(),
            }))
        }
        .instrument(span)
        .await
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn proto_status(s: &str) -> i32 {
    s.parse::<sms_core::Status>()
        .map(|s| sms_bus::status_to_proto(s) as i32)
        .unwrap_or(0)
}

fn message(m: MessageRow, history: Vec<HistoryRow>) -> Message {
    Message {
        id: m.id.to_string(),
        organization_id: m.organization_id,
        direction: if m.direction == "inbound" {
            Direction::Inbound as i32
        } else {
            Direction::Outbound as i32
        },
        from: m.from_number,
        to: m.to_number,
        body: m.body,
        status: proto_status(&m.status),
        reason: m.reason.unwrap_or_default(),
        encoding: m.encoding,
        segments: u32::try_from(m.segments).unwrap_or(0),
        characters: u32::try_from(m.characters).unwrap_or(0),
        user_id: m.user_id,
        carrier_sid: m.carrier_sid.unwrap_or_default(),
        created_at: Some(timestamp(m.created_at)),
        updated_at: Some(timestamp(m.updated_at)),
        history: history
            .into_iter()
            .map(|h| StatusEntry {
                status: proto_status(&h.status),
                at: Some(timestamp(h.occurred_at)),
                reason: h.reason.unwrap_or_default(),
                carrier_error_code: h
                    .carrier_error_code
                    .and_then(|c| u32::try_from(c).ok())
                    .unwrap_or(0),
            })
            .collect(),
        lead_id: m.lead_id.unwrap_or_default(),
        contact_id: m.contact_id.unwrap_or_default(),
        carrier_error_code: m
            .carrier_error_code
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0),
    }
}

fn number(n: NumberRow) -> PhoneNumber {
    PhoneNumber {
        id: n.id.to_string(),
        organization_id: n.organization_id,
        number: n.number,
        region: n.region,
        number_type: n.number_type,
        sms_capable: n.sms_capable,
        mms_capable: n.mms_capable,
        voice_capable: n.voice_capable,
        kind: if n.kind == "external" {
            NumberKind::External as i32
        } else {
            NumberKind::Internal as i32
        },
        owner_user_id: n.owner_user_id.unwrap_or_default(),
        owner_group_id: n.owner_group_id.unwrap_or_default(),
        created_at: Some(timestamp(n.created_at)),
    }
}
