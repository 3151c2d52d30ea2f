//! The gRPC services: thin adapters from protobuf to [`App`].

use std::sync::Arc;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use sms_proto::v1::messaging_service_server::MessagingService;
use sms_proto::v1::numbers_service_server::NumbersService;
use sms_proto::v1::templates_service_server::TemplatesService;
use sms_proto::v1::{
    AddGroupMemberRequest, AddGroupMemberResponse, AddNumberRequest, AddNumberResponse, Attachment,
    CancelMessageRequest, CancelMessageResponse, CreateGroupRequest, CreateGroupResponse,
    CreateTemplateRequest, CreateTemplateResponse, DeleteTemplateRequest, DeleteTemplateResponse,
    Direction, ErroredLead, GetConversationRequest, GetConversationResponse, GetMediaRequest,
    GetMediaResponse, GetMessageRequest, GetMessageResponse, GetNumberRequest, GetNumberResponse,
    GetTemplateRequest, GetTemplateResponse, GetUsageRequest, GetUsageResponse, Group,
    ListErroredLeadsRequest, ListErroredLeadsResponse, ListGroupsRequest, ListGroupsResponse,
    ListInboxRequest, ListInboxResponse, ListMessagesRequest, ListMessagesResponse,
    ListNumbersRequest, ListNumbersResponse, ListTemplatesRequest, ListTemplatesResponse,
    MarkInboxDoneRequest, MarkInboxDoneResponse, Message, NumberKind, PhoneNumber, PreviewRequest,
    PreviewResponse, ReleaseNumberRequest, ReleaseNumberResponse, RemoveGroupMemberRequest,
    RemoveGroupMemberResponse, RescheduleMessageRequest, RescheduleMessageResponse,
    SendMessageRequest, SendMessageResponse, StatusEntry, Template, UpdateTemplateRequest,
    UpdateTemplateResponse, UsageRow,
};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::app::App;
use crate::store::{GroupRow, HistoryRow, MediaRow, MessageRow, NumberRow, TemplateRow};

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

/// Runs a call body in its span, with the authenticated caller.
macro_rules! call {
    ($self:ident, $request:ident, $method:literal, |$caller:ident| $body:expr) => {{
        let span = rpc_span($method, $request.metadata());
        async {
            let $caller = $self.0.caller($request.metadata())?;
            let reply: Result<_, crate::ComposerError> = $body;
            Ok(Response::new(reply?))
        }
        .instrument(span)
        .await
    }};
}

/// `sms.v1.MessagingService`.
#[derive(Clone)]
pub struct MessagingApi(pub Arc<App>);

#[tonic::async_trait]
impl MessagingService for MessagingApi {
    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        let span = rpc_span("SendMessage", request.metadata());
        async {
            let caller = self.0.caller(request.metadata())?;
            let sent = self
                .0
                .send(&caller, request.into_inner())
                .await
                .inspect_err(|e| {
                    metrics::counter!(sms_runtime::metrics::SENDS_REFUSED, "reason" => e.reason())
                        .increment(1);
                })?;
            Ok(Response::new(SendMessageResponse {
                message: Some(message(sent.message, Vec::new())),
                notes: sent.notes,
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
            let mut media = self.0.attachments(&[m.id]).await?;
            let media = media.remove(&m.id).unwrap_or_default();
            Ok(Response::new(GetMessageResponse {
                message: Some(message_with(m, history, media)),
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

    async fn list_errored_leads(
        &self,
        request: Request<ListErroredLeadsRequest>,
    ) -> Result<Response<ListErroredLeadsResponse>, Status> {
        call!(self, request, "ListErroredLeads", |caller| {
            self.0
                .errored_leads(&caller, request.get_ref())
                .await
                .map(|(rows, next_page_token)| ListErroredLeadsResponse {
                    leads: rows
                        .into_iter()
                        .map(|r| ErroredLead {
                            lead_id: r.lead_id,
                            errored_messages: u32::try_from(r.errored).unwrap_or(u32::MAX),
                            last_error_at: Some(timestamp(r.last_error_at)),
                            last_reason: r.last_reason.unwrap_or_default(),
                        })
                        .collect(),
                    next_page_token,
                })
        })
    }

    async fn get_conversation(
        &self,
        request: Request<GetConversationRequest>,
    ) -> Result<Response<GetConversationResponse>, Status> {
        call!(self, request, "GetConversation", |caller| {
            let r = request.get_ref();
            match self
                .0
                .conversation(
                    &caller,
                    &r.our_number,
                    &r.contact_number,
                    r.page_size,
                    &r.page_token,
                )
                .await
            {
                Ok((rows, next_page_token)) => {
                    let ids: Vec<uuid::Uuid> = rows.iter().map(|m| m.id).collect();
                    self.0
                        .attachments(&ids)
                        .await
                        .map(|mut media| GetConversationResponse {
                            messages: rows
                                .into_iter()
                                .map(|m| {
                                    let files = media.remove(&m.id).unwrap_or_default();
                                    message_with(m, Vec::new(), files)
                                })
                                .collect(),
                            next_page_token,
                        })
                }
                Err(e) => Err(e),
            }
        })
    }

    async fn list_inbox(
        &self,
        request: Request<ListInboxRequest>,
    ) -> Result<Response<ListInboxResponse>, Status> {
        call!(self, request, "ListInbox", |caller| {
            let r = request.get_ref();
            self.0
                .inbox(&caller, r.include_done, r.page_size, &r.page_token)
                .await
                .map(|(rows, next_page_token)| ListInboxResponse {
                    messages: rows.into_iter().map(|m| message(m, Vec::new())).collect(),
                    next_page_token,
                })
        })
    }

    async fn mark_inbox_done(
        &self,
        request: Request<MarkInboxDoneRequest>,
    ) -> Result<Response<MarkInboxDoneResponse>, Status> {
        call!(self, request, "MarkInboxDone", |caller| {
            let r = request.get_ref();
            self.0
                .mark_done(&caller, &r.id, r.done)
                .await
                .map(|m| MarkInboxDoneResponse {
                    message: Some(message(m, Vec::new())),
                })
        })
    }

    async fn get_media(
        &self,
        request: Request<GetMediaRequest>,
    ) -> Result<Response<GetMediaResponse>, Status> {
        call!(self, request, "GetMedia", |caller| {
            self.0
                .get_media(&caller, &request.get_ref().id)
                .await
                .map(|mut m| {
                    let data = m.data.take().unwrap_or_default();
                    GetMediaResponse {
                        attachment: Some(attachment(m)),
                        data,
                    }
                })
        })
    }

    async fn cancel_message(
        &self,
        request: Request<CancelMessageRequest>,
    ) -> Result<Response<CancelMessageResponse>, Status> {
        call!(self, request, "CancelMessage", |caller| {
            self.0
                .cancel(&caller, &request.get_ref().id)
                .await
                .map(|m| CancelMessageResponse {
                    message: Some(message(m, Vec::new())),
                })
        })
    }

    async fn reschedule_message(
        &self,
        request: Request<RescheduleMessageRequest>,
    ) -> Result<Response<RescheduleMessageResponse>, Status> {
        call!(self, request, "RescheduleMessage", |caller| {
            let r = request.get_ref();
            self.0
                .reschedule(&caller, &r.id, r.send_at.as_ref(), r.send_at_local.as_ref())
                .await
                .map(|sent| RescheduleMessageResponse {
                    message: Some(message(sent.message, Vec::new())),
                    notes: sent.notes,
                })
        })
    }

    async fn get_usage(
        &self,
        request: Request<GetUsageRequest>,
    ) -> Result<Response<GetUsageResponse>, Status> {
        call!(self, request, "GetUsage", |caller| {
            let r = request.get_ref();
            self.0
                .usage(&caller, &r.from_month, &r.to_month)
                .await
                .map(|rows| GetUsageResponse {
                    rows: rows
                        .into_iter()
                        .map(|u| UsageRow {
                            month: u.month.format("%Y-%m").to_string(),
                            country: u.country,
                            kind: u.kind,
                            encoding: u.encoding,
                            messages: u64::try_from(u.messages).unwrap_or(0),
                            segments: u64::try_from(u.segments).unwrap_or(0),
                        })
                        .collect(),
                })
        })
    }
}

/// `sms.v1.NumbersService`.
#[derive(Clone)]
pub struct NumbersApi(pub Arc<App>);

#[tonic::async_trait]
impl NumbersService for NumbersApi {
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

    async fn get_number(
        &self,
        request: Request<GetNumberRequest>,
    ) -> Result<Response<GetNumberResponse>, Status> {
        call!(self, request, "GetNumber", |caller| {
            self.0
                .get_number(&caller, &request.get_ref().number)
                .await
                .map(|n| GetNumberResponse {
                    number: Some(number(n)),
                })
        })
    }

    async fn release_number(
        &self,
        request: Request<ReleaseNumberRequest>,
    ) -> Result<Response<ReleaseNumberResponse>, Status> {
        call!(self, request, "ReleaseNumber", |caller| {
            self.0
                .release_number(&caller, &request.get_ref().number)
                .await
                .map(|n| ReleaseNumberResponse {
                    number: Some(number(n)),
                })
        })
    }

    async fn create_group(
        &self,
        request: Request<CreateGroupRequest>,
    ) -> Result<Response<CreateGroupResponse>, Status> {
        call!(self, request, "CreateGroup", |caller| {
            self.0
                .create_group(&caller, &request.get_ref().name)
                .await
                .map(|g| CreateGroupResponse {
                    group: Some(group(g)),
                })
        })
    }

    async fn add_group_member(
        &self,
        request: Request<AddGroupMemberRequest>,
    ) -> Result<Response<AddGroupMemberResponse>, Status> {
        call!(self, request, "AddGroupMember", |caller| {
            let r = request.get_ref();
            self.0
                .set_member(&caller, &r.group_id, &r.user_id, true)
                .await
                .map(|g| AddGroupMemberResponse {
                    group: Some(group(g)),
                })
        })
    }

    async fn remove_group_member(
        &self,
        request: Request<RemoveGroupMemberRequest>,
    ) -> Result<Response<RemoveGroupMemberResponse>, Status> {
        call!(self, request, "RemoveGroupMember", |caller| {
            let r = request.get_ref();
            self.0
                .set_member(&caller, &r.group_id, &r.user_id, false)
                .await
                .map(|g| RemoveGroupMemberResponse {
                    group: Some(group(g)),
                })
        })
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        call!(self, request, "ListGroups", |caller| {
            self.0
                .list_groups(&caller)
                .await
                .map(|groups| ListGroupsResponse {
                    groups: groups.into_iter().map(group).collect(),
                })
        })
    }
}

/// `sms.v1.TemplatesService`.
#[derive(Clone)]
pub struct TemplatesApi(pub Arc<App>);

#[tonic::async_trait]
impl TemplatesService for TemplatesApi {
    async fn create_template(
        &self,
        request: Request<CreateTemplateRequest>,
    ) -> Result<Response<CreateTemplateResponse>, Status> {
        call!(self, request, "CreateTemplate", |caller| {
            let r = request.get_ref();
            self.0
                .create_template(&caller, &r.name, &r.body, r.shared)
                .await
                .map(|t| CreateTemplateResponse {
                    template: Some(template(t)),
                })
        })
    }

    async fn update_template(
        &self,
        request: Request<UpdateTemplateRequest>,
    ) -> Result<Response<UpdateTemplateResponse>, Status> {
        call!(self, request, "UpdateTemplate", |caller| {
            let r = request.get_ref();
            self.0
                .update_template(
                    &caller,
                    &r.id,
                    r.name.as_deref(),
                    r.body.as_deref(),
                    r.shared,
                )
                .await
                .map(|t| UpdateTemplateResponse {
                    template: Some(template(t)),
                })
        })
    }

    async fn get_template(
        &self,
        request: Request<GetTemplateRequest>,
    ) -> Result<Response<GetTemplateResponse>, Status> {
        call!(self, request, "GetTemplate", |caller| {
            self.0
                .get_template(&caller, &request.get_ref().id)
                .await
                .map(|t| GetTemplateResponse {
                    template: Some(template(t)),
                })
        })
    }

    async fn list_templates(
        &self,
        request: Request<ListTemplatesRequest>,
    ) -> Result<Response<ListTemplatesResponse>, Status> {
        call!(self, request, "ListTemplates", |caller| {
            self.0
                .list_templates(&caller)
                .await
                .map(|rows| ListTemplatesResponse {
                    templates: rows.into_iter().map(template).collect(),
                })
        })
    }

    async fn delete_template(
        &self,
        request: Request<DeleteTemplateRequest>,
    ) -> Result<Response<DeleteTemplateResponse>, Status> {
        call!(self, request, "DeleteTemplate", |caller| {
            self.0
                .delete_template(&caller, &request.get_ref().id)
                .await
                .map(|()| DeleteTemplateResponse {})
        })
    }

    async fn preview(
        &self,
        request: Request<PreviewRequest>,
    ) -> Result<Response<PreviewResponse>, Status> {
        call!(self, request, "Preview", |caller| {
            self.0.preview(&caller, request.get_ref()).await
        })
    }
}

fn group(g: GroupRow) -> Group {
    Group {
        id: g.id.to_string(),
        name: g.name,
        member_user_ids: g.members,
    }
}

fn template(t: TemplateRow) -> Template {
    Template {
        id: t.id.to_string(),
        name: t.name,
        body: t.body,
        shared: t.shared,
        owner_user_id: t.owner_user_id,
        created_at: Some(timestamp(t.created_at)),
        updated_at: Some(timestamp(t.updated_at)),
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

fn attachment(m: MediaRow) -> Attachment {
    Attachment {
        id: m.id.to_string(),
        file_name: m.file_name,
        content_type: m.content_type,
        size: u64::try_from(m.size).unwrap_or(0),
        state: m.state,
        error: m.error.unwrap_or_default(),
    }
}

fn message(m: MessageRow, history: Vec<HistoryRow>) -> Message {
    message_with(m, history, Vec::new())
}

fn message_with(m: MessageRow, history: Vec<HistoryRow>, media: Vec<MediaRow>) -> Message {
    Message {
        attachments: media.into_iter().map(attachment).collect(),
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
                detail: h.detail.unwrap_or_default(),
                carrier_error_code: h
                    .carrier_error_code
                    .and_then(|c| u32::try_from(c).ok())
                    .unwrap_or(0),
            })
            .collect(),
        lead_id: m.lead_id.unwrap_or_default(),
        contact_id: m.contact_id.unwrap_or_default(),
        send_at: m.send_at.map(timestamp),
        done: m.done,
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
