//! `sms.v1.MessagingService`.

use sms_proto::v1::messaging_service_server::MessagingService;
use sms_proto::v1::{
    CancelMessageRequest, CancelMessageResponse, Conversation, DailySegments, ErroredLead,
    GetConversationRequest, GetConversationResponse, GetMediaRequest, GetMediaResponse,
    GetMessageRequest, GetMessageResponse, GetUsageRequest, GetUsageResponse,
    ListConversationsRequest, ListConversationsResponse, ListErroredLeadsRequest,
    ListErroredLeadsResponse, ListInboxRequest, ListInboxResponse, ListMessagesRequest,
    ListMessagesResponse, MarkInboxDoneRequest, MarkInboxDoneResponse, RescheduleMessageRequest,
    RescheduleMessageResponse, SendMessageRequest, SendMessageResponse, UsageRow,
};
use tonic::{Request, Response, Status};

use super::{attachment, call, message, message_with, timestamp};
use crate::error::{MessagesError, SendError};
use crate::fields::{number_line, optional_number};
use crate::messages::MessageQuery;
use crate::send::command::SendCommand;
use sms_core::PhoneNumber;

/// `sms.v1.MessagingService`.
#[derive(Clone)]
pub struct MessagingApi {
    auth: super::Auth,
    sending: crate::send::Sending,
    messages: crate::messages::Messages,
    inbox: crate::inbox::Inbox,
    scheduling: crate::schedule::Scheduling,
}

impl MessagingApi {
    /// The service over its capabilities, its calls authenticated by `auth`.
    pub fn new(
        auth: super::Auth,
        sending: crate::send::Sending,
        messages: crate::messages::Messages,
        inbox: crate::inbox::Inbox,
        scheduling: crate::schedule::Scheduling,
    ) -> Self {
        MessagingApi {
            auth,
            sending,
            messages,
            inbox,
            scheduling,
        }
    }
}

#[tonic::async_trait]
impl MessagingService for MessagingApi {
    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        call!(
            self,
            request,
            "SendMessage",
            crate::error::SendError,
            |caller| {
                let refused = |e: &SendError| {
                    metrics::counter!(sms_runtime::metrics::SENDS_REFUSED, "reason" => e.reason())
                        .increment(1);
                };
                match SendCommand::try_from(request.into_inner()) {
                    Ok(command) => self.sending.send(&caller, command).await,
                    Err(e) => Err(e),
                }
                .inspect_err(refused)
                .map(|sent| SendMessageResponse {
                    message: Some(message_with(sent.message, Vec::new(), sent.attachments)),
                    notes: sent.notes,
                })
            }
        )
    }

    async fn get_message(
        &self,
        request: Request<GetMessageRequest>,
    ) -> Result<Response<GetMessageResponse>, Status> {
        call!(
            self,
            request,
            "GetMessage",
            crate::error::MessagesError,
            |caller| {
                match self.messages.get(&caller, &request.get_ref().id).await {
                    Ok((m, history)) => {
                        self.messages.attachments(&[m.id]).await.map(|mut media| {
                            let files = media.remove(&m.id).unwrap_or_default();
                            GetMessageResponse {
                                message: Some(message_with(m, history, files)),
                            }
                        })
                    }
                    Err(e) => Err(e),
                }
            }
        )
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        call!(
            self,
            request,
            "ListMessages",
            crate::error::MessagesError,
            |caller| {
                self.messages
                    .list(&caller, &message_query(request.get_ref())?)
                    .await
                    .map(|(rows, next_page_token)| ListMessagesResponse {
                        messages: rows.into_iter().map(|m| message(m, Vec::new())).collect(),
                        next_page_token,
                    })
            }
        )
    }

    async fn list_errored_leads(
        &self,
        request: Request<ListErroredLeadsRequest>,
    ) -> Result<Response<ListErroredLeadsResponse>, Status> {
        call!(
            self,
            request,
            "ListErroredLeads",
            crate::error::MessagesError,
            |caller| {
                let r = request.get_ref();
                self.messages
                    .errored_leads(&caller, r.page_size, &r.page_token)
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
            }
        )
    }

    async fn get_conversation(
        &self,
        request: Request<GetConversationRequest>,
    ) -> Result<Response<GetConversationResponse>, Status> {
        call!(
            self,
            request,
            "GetConversation",
            crate::error::MessagesError,
            |caller| {
                let r = request.get_ref();
                let conversation = async {
                    // Both fields' shape first, then the numbers.
                    number_line::<MessagesError>("our_number", &r.our_number)?;
                    number_line::<MessagesError>("contact_number", &r.contact_number)?;
                    let ours = PhoneNumber::parse_valid(&r.our_number, None)
                        .map_err(MessagesError::InvalidNumber)?;
                    let contact = PhoneNumber::parse_valid(&r.contact_number, None)
                        .map_err(MessagesError::InvalidRecipient)?;
                    self.inbox
                        .conversation(&caller, &ours, &contact, r.page_size, &r.page_token)
                        .await
                };
                match conversation.await {
                    Ok((rows, next_page_token)) => {
                        let ids: Vec<sms_core::MessageId> = rows.iter().map(|m| m.id).collect();
                        self.messages.attachments(&ids).await.map(|mut media| {
                            GetConversationResponse {
                                messages: rows
                                    .into_iter()
                                    .map(|m| {
                                        let files = media.remove(&m.id).unwrap_or_default();
                                        message_with(m, Vec::new(), files)
                                    })
                                    .collect(),
                                next_page_token,
                            }
                        })
                    }
                    Err(e) => Err(e),
                }
            }
        )
    }

    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        call!(
            self,
            request,
            "ListConversations",
            crate::error::MessagesError,
            |caller| {
                let r = request.get_ref();
                let listed = async {
                    let ours =
                        optional_number("our_number", &r.our_number, MessagesError::InvalidNumber)?;
                    self.inbox
                        .conversations(&caller, ours.as_ref(), r.page_size, &r.page_token)
                        .await
                };
                listed
                    .await
                    .map(|(rows, next_page_token)| ListConversationsResponse {
                        conversations: rows
                            .into_iter()
                            .map(|(c, m)| Conversation {
                                our_number: c.ours,
                                contact_number: c.contact,
                                messages: u32::try_from(c.messages).unwrap_or(u32::MAX),
                                open_inbound: u32::try_from(c.open_inbound).unwrap_or(u32::MAX),
                                last_message: Some(message(m, Vec::new())),
                            })
                            .collect(),
                        next_page_token,
                    })
            }
        )
    }

    async fn list_inbox(
        &self,
        request: Request<ListInboxRequest>,
    ) -> Result<Response<ListInboxResponse>, Status> {
        call!(
            self,
            request,
            "ListInbox",
            crate::error::MessagesError,
            |caller| {
                let r = request.get_ref();
                self.inbox
                    .inbox(&caller, r.include_done, r.page_size, &r.page_token)
                    .await
                    .map(|(rows, next_page_token)| ListInboxResponse {
                        messages: rows.into_iter().map(|m| message(m, Vec::new())).collect(),
                        next_page_token,
                    })
            }
        )
    }

    async fn mark_inbox_done(
        &self,
        request: Request<MarkInboxDoneRequest>,
    ) -> Result<Response<MarkInboxDoneResponse>, Status> {
        call!(
            self,
            request,
            "MarkInboxDone",
            crate::error::MessagesError,
            |caller| {
                let r = request.get_ref();
                self.inbox
                    .mark_done(&caller, &r.id, r.done)
                    .await
                    .map(|m| MarkInboxDoneResponse {
                        message: Some(message(m, Vec::new())),
                    })
            }
        )
    }

    async fn get_media(
        &self,
        request: Request<GetMediaRequest>,
    ) -> Result<Response<GetMediaResponse>, Status> {
        call!(
            self,
            request,
            "GetMedia",
            crate::error::MessagesError,
            |caller| {
                self.messages
                    .get_media(&caller, &request.get_ref().id)
                    .await
                    .map(|mut m| {
                        let data = m.data.take().unwrap_or_default();
                        GetMediaResponse {
                            attachment: Some(attachment(m)),
                            data,
                        }
                    })
            }
        )
    }

    async fn cancel_message(
        &self,
        request: Request<CancelMessageRequest>,
    ) -> Result<Response<CancelMessageResponse>, Status> {
        call!(
            self,
            request,
            "CancelMessage",
            crate::error::SendError,
            |caller| {
                self.scheduling
                    .cancel(&caller, &request.get_ref().id)
                    .await
                    .map(|m| CancelMessageResponse {
                        message: Some(message(m, Vec::new())),
                    })
            }
        )
    }

    async fn reschedule_message(
        &self,
        request: Request<RescheduleMessageRequest>,
    ) -> Result<Response<RescheduleMessageResponse>, Status> {
        call!(
            self,
            request,
            "RescheduleMessage",
            crate::error::SendError,
            |caller| {
                let r = request.get_ref();
                self.scheduling
                    .reschedule(
                        &caller,
                        &r.id,
                        super::command::when(r.send_at.as_ref(), r.send_at_local.as_ref())?,
                    )
                    .await
                    .map(|sent| RescheduleMessageResponse {
                        message: Some(message_with(sent.message, Vec::new(), sent.attachments)),
                        notes: sent.notes,
                    })
            }
        )
    }

    async fn get_usage(
        &self,
        request: Request<GetUsageRequest>,
    ) -> Result<Response<GetUsageResponse>, Status> {
        call!(
            self,
            request,
            "GetUsage",
            crate::error::MessagesError,
            |caller| {
                let r = request.get_ref();
                match self
                    .messages
                    .usage(&caller, &r.from_month, &r.to_month)
                    .await
                {
                    Err(e) => Err(e),
                    Ok(rows) => self.messages.today(&caller).await.map(|(day, used, cap)| {
                        GetUsageResponse {
                            rows: rows
                                .into_iter()
                                .map(|u| UsageRow {
                                    month: u.month.format("%Y-%m").to_string(),
                                    country: u.country,
                                    kind: u.kind.as_str().to_owned(),
                                    message_kind: match u.kind {
                                        crate::store::MessageKind::Sms => {
                                            sms_proto::v1::MessageKind::Sms
                                        }
                                        crate::store::MessageKind::Mms => {
                                            sms_proto::v1::MessageKind::Mms
                                        }
                                    } as i32,
                                    encoding: u.encoding.as_str().to_owned(),
                                    encoding_type: sms_bus::encoding_to_proto(u.encoding) as i32,
                                    messages: u64::try_from(u.messages).unwrap_or(0),
                                    segments: u64::try_from(u.segments).unwrap_or(0),
                                })
                                .collect(),
                            today: Some(DailySegments {
                                day: day.to_string(),
                                segments: u64::try_from(used).unwrap_or(0),
                                cap: cap.and_then(|c| u64::try_from(c).ok()).unwrap_or(0),
                            }),
                        }
                    }),
                }
            }
        )
    }
}

/// Which messages a page lists, checked once.
fn message_query(req: &ListMessagesRequest) -> Result<MessageQuery, MessagesError> {
    let page_size = crate::fields::page_size(req.page_size, 50);
    let contact_number = optional_number(
        "contact_number",
        &req.contact_number,
        MessagesError::InvalidRecipient,
    )?;
    sms_core::text::check(
        "lead_id",
        &req.lead_id,
        crate::send::command::MAX_CRM_ID,
        sms_core::text::Lines::Single,
    )?;
    let our_number = optional_number("our_number", &req.our_number, MessagesError::InvalidNumber)?;
    Ok(MessageQuery {
        status: match req.status() {
            sms_proto::v1::MessageStatus::Unspecified => None,
            s => sms_bus::status_from_proto(s),
        },
        errors_only: req.errors_only,
        contact_number,
        our_number,
        direction: match req.direction() {
            sms_proto::v1::Direction::Unspecified => None,
            sms_proto::v1::Direction::Outbound => Some(sms_core::Direction::Outbound),
            sms_proto::v1::Direction::Inbound => Some(sms_core::Direction::Inbound),
        },
        lead_id: Some(req.lead_id.trim())
            .filter(|l| !l.is_empty())
            .map(str::to_owned),
        created_after: req.created_after.as_ref().and_then(crate::fields::datetime),
        created_before: req
            .created_before
            .as_ref()
            .and_then(crate::fields::datetime),
        before: crate::fields::decode_page_token(&req.page_token)?,
        page_size,
    })
}
