//! Hostile input, generated per family: every string field of every gRPC request, phone
//! numbers, templates, attachments, webhooks, bus payloads and media URLs. Each case asserts
//! the exact code and reason; none may get `INTERNAL`, none may quote more than a little of a
//! bad value back, and the services keep serving after thousands of them.
//!
//! Each family prints its case count (`cargo nextest run -p sms-e2e hostile --no-capture`).

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use prost::Message as _;
use sms_proto::v1::contacts_service_client::ContactsServiceClient;
use sms_proto::v1::events_service_client::EventsServiceClient;
use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use sms_proto::v1::numbers_service_client::NumbersServiceClient;
use sms_proto::v1::opt_outs_service_client::OptOutsServiceClient;
use sms_proto::v1::settings_service_client::SettingsServiceClient;
use sms_proto::v1::templates_service_client::TemplatesServiceClient;
use sms_proto::v1::webhooks_service_client::WebhooksServiceClient;
use sms_proto::v1::*;
use sms_proto::v1::{
    DeleteContactRequest, GetContactRequest, QuietHours, SetContactRequest, Settings,
    SubscribeRequest, UpdateSettingsRequest,
};
use sms_testkit::{ACCOUNT_SID, AUTH_TOKEN, ORG, Stack, USER, as_caller, as_user};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const OURS: &str = "+12015550100";
const CONTACT: &str = "+12015550123";
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
const PDF: &[u8] = b"%PDF-1.7\n%%EOF\n";

/// The longest message a refusal may carry: a bad value is quoted, never echoed whole.
const MAX_MESSAGE: usize = 400;

/// What a call answered: Ok, or (code, reason, metadata, message).
type Answer = Result<(), (Code, String, HashMap<String, String>, String)>;

fn answer<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Answer {
    r.map(|_| ()).map_err(|s| {
        let info = s.get_details_error_info();
        (
            s.code(),
            info.as_ref().map(|i| i.reason.clone()).unwrap_or_default(),
            info.map(|i| i.metadata).unwrap_or_default(),
            s.message().to_owned(),
        )
    })
}

/// Counts cases and collects every wrong answer, so a family reports all its failures at once.
struct Check {
    family: &'static str,
    cases: usize,
    wrong: Vec<String>,
}

impl Check {
    fn new(family: &'static str) -> Self {
        Check {
            family,
            cases: 0,
            wrong: Vec::new(),
        }
    }

    /// The call was refused with `code` and `reason` (and, when given, metadata `field`).
    fn refused(
        &mut self,
        label: &str,
        got: &Answer,
        code: Code,
        reason: &str,
        field: Option<&str>,
    ) {
        self.cases += 1;
        match got {
            Err((c, r, meta, message)) => {
                let field_ok =
                    field.is_none_or(|f| meta.get("field").map(String::as_str) == Some(f));
                if *c != code || r != reason || !field_ok {
                    self.wrong.push(format!(
                        "{label}: expected {code:?}/{reason}{}, got {c:?}/{r} {meta:?} {message:?}",
                        field.map(|f| format!(" field={f}")).unwrap_or_default()
                    ));
                } else if message.len() > MAX_MESSAGE {
                    self.wrong
                        .push(format!("{label}: a {}-byte message", message.len()));
                }
            }
            Ok(()) => self
                .wrong
                .push(format!("{label}: accepted, expected {reason}")),
        }
    }

    /// Whatever the answer, it is not a field error and not INTERNAL.
    fn not_a_field_error(&mut self, label: &str, got: &Answer) {
        self.cases += 1;
        if let Err((c, r, _, m)) = got
            && (matches!(r.as_str(), "FIELD_TOO_LONG" | "INVALID_CHARACTER")
                || *c == Code::Internal
                || m.len() > MAX_MESSAGE)
        {
            self.wrong.push(format!("{label}: {c:?}/{r} {m:?}"));
        }
    }

    fn raw(&mut self, label: &str, ok: bool, what: impl std::fmt::Display) {
        self.cases += 1;
        if !ok {
            self.wrong.push(format!("{label}: {what}"));
        }
    }

    fn finish(self, at_least: usize) -> usize {
        eprintln!("hostile input, {}: {} cases", self.family, self.cases);
        assert!(
            self.wrong.is_empty(),
            "{} of {} {} cases wrong:\n{}",
            self.wrong.len(),
            self.cases,
            self.family,
            self.wrong
                .iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(self.cases >= at_least, "{} cases", self.cases);
        self.cases
    }
}

struct Clients {
    messaging: MessagingServiceClient<Channel>,
    numbers: NumbersServiceClient<Channel>,
    templates: TemplatesServiceClient<Channel>,
    opt_outs: OptOutsServiceClient<Channel>,
    settings: SettingsServiceClient<Channel>,
    contacts: ContactsServiceClient<Channel>,
    events: EventsServiceClient<Channel>,
    webhooks: WebhooksServiceClient<Channel>,
}

async fn clients(stack: &Stack) -> Clients {
    Clients {
        messaging: stack.messaging().await,
        numbers: stack.numbers().await,
        templates: stack.templates().await,
        opt_outs: stack.opt_outs().await,
        settings: stack.settings().await,
        contacts: stack.contacts().await,
        events: EventsServiceClient::new(stack.channel().await),
        webhooks: stack.webhooks().await,
    }
}

/// A field of a request, its limit and what kind of text it holds.
struct Field {
    /// `Rpc.field`, naming the case.
    rpc: &'static str,
    /// The field as the refusal names it.
    name: &'static str,
    /// Its length limit, and the reason a longer value gets; `None`: no length of its own.
    long: Option<(usize, &'static str)>,
    /// Line breaks and tabs are text in it.
    multi: bool,
}

const fn field(rpc: &'static str, name: &'static str, max: usize, multi: bool) -> Field {
    Field {
        rpc,
        name,
        long: Some((max, "FIELD_TOO_LONG")),
        multi,
    }
}

const FIELDS: &[Field] = &[
    field("SendMessage", "to", 64, false),
    field("SendMessage", "from", 64, false),
    Field {
        rpc: "SendMessage",
        name: "body",
        long: Some((1000, "BODY_TOO_LONG")),
        multi: true,
    },
    field("SendMessage", "lead_id", 255, false),
    field("SendMessage", "contact_id", 255, false),
    field("SendMessage", "idempotency_key", 255, false),
    field("SendMessage", "template_id", 64, false),
    field("SendMessage", "send_at_local.date_time", 64, false),
    field("SendMessage", "send_at_local.time_zone", 64, false),
    field("SendMessage", "attachments.file_name", 255, false),
    field("SendMessage", "attachments.content_type", 255, false),
    field("SendMessage", "attachments.url", 2048, false),
    field("SendMessage", "context.lead.name", 10_000, true),
    field(
        "SendMessage",
        "context.lead.primary_address.city",
        10_000,
        true,
    ),
    field("SendMessage", "context.contact.first_name", 10_000, true),
    field("SendMessage", "context.user.email", 10_000, true),
    field("SendMessage", "context.organization.name", 10_000, true),
    field("SendMessage", "context.lead.custom", 10_000, true),
    field("SendMessage", "context.contact.custom", 200, false),
    field("GetMessage", "id", 64, false),
    field("CancelMessage", "id", 64, false),
    field("RescheduleMessage", "id", 64, false),
    field("RescheduleMessage", "send_at_local.time_zone", 64, false),
    field("MarkInboxDone", "id", 64, false),
    field("GetMedia", "id", 64, false),
    field("ListMessages", "contact_number", 64, false),
    field("ListMessages", "our_number", 64, false),
    field("ListConversations", "our_number", 64, false),
    field("ListConversations", "page_token", 512, false),
    field("ListMessages", "lead_id", 255, false),
    field("ListMessages", "page_token", 512, false),
    field("ListErroredLeads", "page_token", 512, false),
    field("ListInbox", "page_token", 512, false),
    field("GetUsage", "from_month", 16, false),
    field("GetUsage", "to_month", 16, false),
    field("GetConversation", "our_number", 64, false),
    field("GetConversation", "contact_number", 64, false),
    field("GetConversation", "page_token", 512, false),
    field("AddNumber", "number", 64, false),
    field("AddNumber", "owner_user_id", 128, false),
    field("AddNumber", "owner_group_id", 64, false),
    field("AddNumber", "carrier_connection", 32, false),
    field("SetNumberCarrier", "number", 64, false),
    field("SetNumberCarrier", "carrier_connection", 32, false),
    field("GetNumber", "number", 64, false),
    field("SearchAvailableNumbers", "country", 8, false),
    field("SearchAvailableNumbers", "area_code", 16, false),
    field("SearchAvailableNumbers", "contains", 32, false),
    field("RentNumber", "number", 64, false),
    field("RentNumber", "owner_user_id", 128, false),
    field("RentNumber", "owner_group_id", 64, false),
    field("ImportNumber", "number", 64, false),
    field("ImportNumber", "owner_user_id", 128, false),
    field("ImportNumber", "owner_group_id", 64, false),
    field("ReleaseNumber", "number", 64, false),
    field("CreateGroup", "name", 200, false),
    field("AddGroupMember", "group_id", 64, false),
    field("AddGroupMember", "user_id", 128, false),
    field("RemoveGroupMember", "group_id", 64, false),
    field("RemoveGroupMember", "user_id", 128, false),
    field("CreateTemplate", "name", 200, false),
    Field {
        rpc: "CreateTemplate",
        name: "body",
        long: Some((10_000, "TEMPLATE_TOO_LONG")),
        multi: true,
    },
    field("UpdateTemplate", "id", 64, false),
    field("UpdateTemplate", "name", 200, false),
    Field {
        rpc: "UpdateTemplate",
        name: "body",
        long: Some((10_000, "TEMPLATE_TOO_LONG")),
        multi: true,
    },
    field("GetTemplate", "id", 64, false),
    field("DeleteTemplate", "id", 64, false),
    field("Preview", "template_id", 64, false),
    Field {
        rpc: "Preview",
        name: "body",
        long: Some((10_000, "TEMPLATE_TOO_LONG")),
        multi: true,
    },
    field("Preview", "context.contact.first_name", 10_000, true),
    field("CheckOptOut", "contact_number", 64, false),
    field("ListOptOuts", "page_token", 64, false),
    field("AddOptOut", "contact_number", 64, false),
    field("AddOptOut", "reason", 500, true),
    field("RemoveOptOut", "contact_number", 64, false),
    field("RemoveOptOut", "reason", 500, true),
    field("SetReplies", "help_text", 1000, true),
    field("SetReplies", "opt_out_confirmation", 1000, true),
    field("SetContact", "contact_number", 64, false),
    field("SetContact", "lead_id", 255, false),
    field("SetContact", "contact_id", 255, false),
    field("GetContact", "contact_number", 64, false),
    field("DeleteContact", "contact_number", 64, false),
    field("Subscribe", "cursor", 128, false),
    field("CreateWebhookEndpoint", "url", 2048, false),
    field("CreateWebhookEndpoint", "description", 200, false),
    field("SetWebhookEndpointEnabled", "endpoint_id", 64, false),
    field("DeleteWebhookEndpoint", "endpoint_id", 64, false),
    field("RotateWebhookSecret", "endpoint_id", 64, false),
    field("ListWebhookAttempts", "endpoint_id", 64, false),
    field("ListWebhookAttempts", "event_id", 200, false),
    field("ListWebhookAttempts", "page_token", 512, false),
    field("ReplayWebhookEvents", "endpoint_id", 64, false),
    field("ReplayWebhookEvents", "event_id", 200, false),
    field("UpdateSettings", "quiet_hours.start", 16, false),
    field("UpdateSettings", "quiet_hours.end", 16, false),
    field("UpdateSettings", "quiet_hours.days", 16, false),
];

fn context_with(path: &str, value: &str) -> TemplateContext {
    let mut c = TemplateContext::default();
    match path {
        "context.lead.name" => c.lead.get_or_insert_default().name = value.into(),
        "context.lead.primary_address.city" => {
            c.lead
                .get_or_insert_default()
                .primary_address
                .get_or_insert_default()
                .city = value.into()
        }
        "context.contact.first_name" => c.contact.get_or_insert_default().first_name = value.into(),
        "context.user.email" => c.user.get_or_insert_default().email = value.into(),
        "context.organization.name" => c.organization.get_or_insert_default().name = value.into(),
        "context.lead.custom" => {
            c.lead
                .get_or_insert_default()
                .custom
                .insert("Deal Size".into(), value.into());
        }
        // The key of a custom field.
        "context.contact.custom" => {
            c.contact
                .get_or_insert_default()
                .custom
                .insert(value.into(), "x".into());
        }
        other => panic!("no context field {other}"),
    }
    c
}

fn attachment(file_name: &str, content_type: &str, url: &str) -> NewAttachment {
    NewAttachment {
        file_name: file_name.into(),
        content_type: content_type.into(),
        data: if url.is_empty() {
            JPEG.to_vec()
        } else {
            Vec::new()
        },
        url: url.into(),
    }
}

/// Calls `rpc` with `value` in field `name`, every other field valid.
async fn call(c: &mut Clients, rpc: &str, name: &str, value: &str) -> Answer {
    let v = value.to_owned();
    let base = || SendMessageRequest {
        to: CONTACT.into(),
        from: OURS.into(),
        body: "hello".into(),
        ..Default::default()
    };
    let id = uuid::Uuid::now_v7().to_string();
    match (rpc, name) {
        ("SendMessage", _) => {
            let mut r = base();
            match name {
                "to" => r.to = v,
                "from" => r.from = v,
                "body" => r.body = v,
                "lead_id" => r.lead_id = v,
                "contact_id" => r.contact_id = v,
                "idempotency_key" => r.idempotency_key = v,
                "template_id" => {
                    r.body.clear();
                    r.template_id = v;
                }
                "send_at_local.date_time" => {
                    r.send_at_local = Some(LocalDateTime {
                        date_time: v,
                        time_zone: "America/New_York".into(),
                    })
                }
                "send_at_local.time_zone" => {
                    r.send_at_local = Some(LocalDateTime {
                        date_time: "2031-01-02T09:00".into(),
                        time_zone: v,
                    })
                }
                "attachments.file_name" => r.attachments = vec![attachment(&v, "image/jpeg", "")],
                "attachments.content_type" => r.attachments = vec![attachment("a.jpg", &v, "")],
                "attachments.url" => r.attachments = vec![attachment("a.jpg", "image/jpeg", &v)],
                context => r.context = Some(context_with(context, &v)),
            }
            answer(c.messaging.send_message(as_user(r)).await)
        }
        ("GetMessage", _) => answer(
            c.messaging
                .get_message(as_user(GetMessageRequest { id: v }))
                .await,
        ),
        ("CancelMessage", _) => answer(
            c.messaging
                .cancel_message(as_user(CancelMessageRequest { id: v }))
                .await,
        ),
        ("RescheduleMessage", "id") => answer(
            c.messaging
                .reschedule_message(as_user(RescheduleMessageRequest {
                    id: v,
                    ..Default::default()
                }))
                .await,
        ),
        ("RescheduleMessage", _) => answer(
            c.messaging
                .reschedule_message(as_user(RescheduleMessageRequest {
                    id,
                    send_at_local: Some(LocalDateTime {
                        date_time: "2031-01-02T09:00".into(),
                        time_zone: v,
                    }),
                    ..Default::default()
                }))
                .await,
        ),
        ("MarkInboxDone", _) => answer(
            c.messaging
                .mark_inbox_done(as_user(MarkInboxDoneRequest { id: v, done: true }))
                .await,
        ),
        ("GetMedia", _) => answer(
            c.messaging
                .get_media(as_user(GetMediaRequest { id: v }))
                .await,
        ),
        ("ListMessages", _) => {
            let mut r = ListMessagesRequest::default();
            match name {
                "contact_number" => r.contact_number = v,
                "our_number" => r.our_number = v,
                "lead_id" => r.lead_id = v,
                _ => r.page_token = v,
            }
            answer(c.messaging.list_messages(as_user(r)).await)
        }
        ("ListConversations", _) => {
            let mut r = ListConversationsRequest::default();
            match name {
                "our_number" => r.our_number = v,
                _ => r.page_token = v,
            }
            answer(c.messaging.list_conversations(as_user(r)).await)
        }
        ("ListErroredLeads", _) => answer(
            c.messaging
                .list_errored_leads(as_user(ListErroredLeadsRequest {
                    page_token: v,
                    ..Default::default()
                }))
                .await,
        ),
        ("ListInbox", _) => answer(
            c.messaging
                .list_inbox(as_user(ListInboxRequest {
                    page_token: v,
                    ..Default::default()
                }))
                .await,
        ),
        ("GetUsage", _) => {
            let mut r = GetUsageRequest::default();
            if name == "from_month" {
                r.from_month = v;
            } else {
                r.to_month = v;
            }
            answer(c.messaging.get_usage(as_user(r)).await)
        }
        ("GetConversation", _) => {
            let mut r = GetConversationRequest {
                our_number: OURS.into(),
                contact_number: CONTACT.into(),
                ..Default::default()
            };
            match name {
                "our_number" => r.our_number = v,
                "contact_number" => r.contact_number = v,
                _ => r.page_token = v,
            }
            answer(c.messaging.get_conversation(as_user(r)).await)
        }
        ("AddNumber", _) => {
            let mut r = AddNumberRequest {
                number: "+12015550177".into(),
                owner: Some(add_number_request::Owner::OwnerUserId(USER.into())),
                ..Default::default()
            };
            match name {
                "number" => r.number = v,
                "owner_user_id" => r.owner = Some(add_number_request::Owner::OwnerUserId(v)),
                "carrier_connection" => r.carrier_connection = v,
                _ => r.owner = Some(add_number_request::Owner::OwnerGroupId(v)),
            }
            answer(c.numbers.add_number(as_user(r)).await)
        }
        ("SetNumberCarrier", _) => {
            let mut r = sms_proto::v1::SetNumberCarrierRequest {
                number: OURS.into(),
                carrier_connection: String::new(),
            };
            match name {
                "number" => r.number = v,
                _ => r.carrier_connection = v,
            }
            answer(c.numbers.set_number_carrier(as_user(r)).await)
        }
        ("SearchAvailableNumbers", _) => {
            let mut r = SearchAvailableNumbersRequest {
                country: "US".into(),
                ..Default::default()
            };
            match name {
                "country" => r.country = v,
                "area_code" => r.area_code = v,
                _ => r.contains = v,
            }
            answer(c.numbers.search_available_numbers(as_user(r)).await)
        }
        ("RentNumber", _) => {
            // Not for sale at the simulator: nothing is ever bought here.
            let mut r = RentNumberRequest {
                number: "+12015550177".into(),
                owner: Some(rent_number_request::Owner::OwnerUserId(USER.into())),
                allow_voice_only: false,
            };
            match name {
                "number" => r.number = v,
                "owner_user_id" => r.owner = Some(rent_number_request::Owner::OwnerUserId(v)),
                _ => r.owner = Some(rent_number_request::Owner::OwnerGroupId(v)),
            }
            answer(c.numbers.rent_number(as_user(r)).await)
        }
        ("ImportNumber", _) => {
            let mut r = ImportNumberRequest {
                number: "+12015550177".into(),
                owner: Some(import_number_request::Owner::OwnerUserId(USER.into())),
            };
            match name {
                "number" => r.number = v,
                "owner_user_id" => r.owner = Some(import_number_request::Owner::OwnerUserId(v)),
                _ => r.owner = Some(import_number_request::Owner::OwnerGroupId(v)),
            }
            answer(c.numbers.import_number(as_user(r)).await)
        }
        ("GetNumber", _) => answer(
            c.numbers
                .get_number(as_user(GetNumberRequest { number: v }))
                .await,
        ),
        ("ReleaseNumber", _) => answer(
            c.numbers
                .release_number(as_user(ReleaseNumberRequest { number: v }))
                .await,
        ),
        ("CreateGroup", _) => answer(
            c.numbers
                .create_group(as_user(CreateGroupRequest { name: v }))
                .await,
        ),
        ("AddGroupMember", _) => {
            let (group_id, user_id) = if name == "group_id" {
                (v, "u".into())
            } else {
                (id, v)
            };
            answer(
                c.numbers
                    .add_group_member(as_user(AddGroupMemberRequest { group_id, user_id }))
                    .await,
            )
        }
        ("RemoveGroupMember", _) => {
            let (group_id, user_id) = if name == "group_id" {
                (v, "u".into())
            } else {
                (id, v)
            };
            answer(
                c.numbers
                    .remove_group_member(as_user(RemoveGroupMemberRequest { group_id, user_id }))
                    .await,
            )
        }
        ("CreateTemplate", _) => {
            let mut r = CreateTemplateRequest {
                name: "t".into(),
                body: "Hi".into(),
                shared: false,
            };
            if name == "name" {
                r.name = v;
            } else {
                r.body = v;
            }
            answer(c.templates.create_template(as_user(r)).await)
        }
        ("UpdateTemplate", _) => {
            let mut r = UpdateTemplateRequest {
                id,
                ..Default::default()
            };
            match name {
                "id" => r.id = v,
                "name" => r.name = Some(v),
                _ => r.body = Some(v),
            }
            answer(c.templates.update_template(as_user(r)).await)
        }
        ("GetTemplate", _) => answer(
            c.templates
                .get_template(as_user(GetTemplateRequest { id: v }))
                .await,
        ),
        ("DeleteTemplate", _) => answer(
            c.templates
                .delete_template(as_user(DeleteTemplateRequest { id: v }))
                .await,
        ),
        ("Preview", _) => {
            let r = match name {
                "template_id" => PreviewRequest {
                    source: Some(preview_request::Source::TemplateId(v)),
                    context: None,
                },
                "body" => PreviewRequest {
                    source: Some(preview_request::Source::Body(v)),
                    context: None,
                },
                context => PreviewRequest {
                    source: Some(preview_request::Source::Body("Hi".into())),
                    context: Some(context_with(context, &v)),
                },
            };
            answer(c.templates.preview(as_user(r)).await)
        }
        ("CheckOptOut", _) => answer(
            c.opt_outs
                .check_opt_out(as_user(CheckOptOutRequest { contact_number: v }))
                .await,
        ),
        ("ListOptOuts", _) => answer(
            c.opt_outs
                .list_opt_outs(as_user(ListOptOutsRequest {
                    page_token: v,
                    ..Default::default()
                }))
                .await,
        ),
        ("AddOptOut", _) | ("RemoveOptOut", _) => {
            let (contact_number, reason) = if name == "reason" {
                (CONTACT.to_owned(), v)
            } else {
                (v, "asked".to_owned())
            };
            if rpc == "AddOptOut" {
                answer(
                    c.opt_outs
                        .add_opt_out(as_user(AddOptOutRequest {
                            contact_number,
                            reason,
                        }))
                        .await,
                )
            } else {
                answer(
                    c.opt_outs
                        .remove_opt_out(as_user(RemoveOptOutRequest {
                            contact_number,
                            reason,
                        }))
                        .await,
                )
            }
        }
        ("SetReplies", _) => {
            let mut r = SetRepliesRequest::default();
            if name == "help_text" {
                r.help_text = v;
            } else {
                r.opt_out_confirmation = v;
            }
            answer(c.opt_outs.set_replies(as_user(r)).await)
        }
        ("Subscribe", _) => answer(
            c.events
                .subscribe(as_user(SubscribeRequest {
                    cursor: v,
                    from_start: false,
                }))
                .await,
        ),
        ("SetContact", _) => {
            let mut r = SetContactRequest {
                contact_number: CONTACT.into(),
                lead_id: "lead".into(),
                contact_id: String::new(),
            };
            match name {
                "contact_number" => r.contact_number = v,
                "lead_id" => r.lead_id = v,
                _ => r.contact_id = v,
            }
            answer(c.contacts.set_contact(as_user(r)).await)
        }
        ("GetContact", _) => answer(
            c.contacts
                .get_contact(as_user(GetContactRequest { contact_number: v }))
                .await,
        ),
        ("DeleteContact", _) => answer(
            c.contacts
                .delete_contact(as_user(DeleteContactRequest { contact_number: v }))
                .await,
        ),
        ("UpdateSettings", _) => {
            let mut q = QuietHours::default();
            match name {
                "quiet_hours.start" => q.start = v,
                "quiet_hours.end" => q.end = v,
                _ => q.days = vec![v],
            }
            answer(
                c.settings
                    .update_settings(as_user(UpdateSettingsRequest {
                        settings: Some(Settings {
                            quiet_hours: Some(q),
                            daily_segment_cap: 0,
                        }),
                    }))
                    .await,
            )
        }
        ("CreateWebhookEndpoint", _) => {
            let mut r = sms_proto::v1::CreateWebhookEndpointRequest {
                url: "https://example.com/hook".into(),
                ..Default::default()
            };
            if name == "url" {
                r.url = v;
            } else {
                r.description = v;
            }
            answer(c.webhooks.create_webhook_endpoint(as_user(r)).await)
        }
        ("SetWebhookEndpointEnabled", _) => answer(
            c.webhooks
                .set_webhook_endpoint_enabled(as_user(
                    sms_proto::v1::SetWebhookEndpointEnabledRequest {
                        endpoint_id: v,
                        enabled: true,
                    },
                ))
                .await,
        ),
        ("DeleteWebhookEndpoint", _) => answer(
            c.webhooks
                .delete_webhook_endpoint(as_user(sms_proto::v1::DeleteWebhookEndpointRequest {
                    endpoint_id: v,
                }))
                .await,
        ),
        ("RotateWebhookSecret", _) => answer(
            c.webhooks
                .rotate_webhook_secret(as_user(sms_proto::v1::RotateWebhookSecretRequest {
                    endpoint_id: v,
                }))
                .await,
        ),
        ("ListWebhookAttempts", _) => {
            let mut r = sms_proto::v1::ListWebhookAttemptsRequest {
                endpoint_id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            };
            match name {
                "endpoint_id" => r.endpoint_id = v,
                "event_id" => r.event_id = v,
                _ => r.page_token = v,
            }
            answer(c.webhooks.list_webhook_attempts(as_user(r)).await)
        }
        ("ReplayWebhookEvents", _) => {
            let mut r = sms_proto::v1::ReplayWebhookEventsRequest {
                endpoint_id: uuid::Uuid::now_v7().to_string(),
                event_id: "event".into(),
                all_failed: false,
            };
            if name == "endpoint_id" {
                r.endpoint_id = v;
            } else {
                r.event_id = v;
            }
            answer(c.webhooks.replay_webhook_events(as_user(r)).await)
        }
        other => panic!("no call for {other:?}"),
    }
}

/// Characters no field may hold (and, for single-line fields, line breaks and tabs too).
fn forbidden(multi: bool) -> Vec<char> {
    let mut out: Vec<char> = (0u32..0x20)
        .chain([0x7f])
        .chain(0x80..0xa0)
        .chain([0xfffe, 0xffff, 0x1_fffe, 0x10_ffff])
        .filter_map(char::from_u32)
        .collect();
    if multi {
        out.retain(|c| !matches!(c, '\n' | '\r' | '\t'));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_field_is_bounded_and_refuses_control_characters() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut c = clients(&stack).await;
    let mut check = Check::new("gRPC fields");
    for f in FIELDS {
        let label = |what: &str| format!("{}.{} {what}", f.rpc, f.name);
        for ch in forbidden(f.multi) {
            let positions: &[usize] = if ch == '\0' { &[0, 1, 2] } else { &[1] };
            for &at in positions {
                let value = match at {
                    0 => format!("{ch}abc"),
                    1 => format!("ab{ch}c"),
                    _ => format!("abc{ch}"),
                };
                let got = call(&mut c, f.rpc, f.name, &value).await;
                check.refused(
                    &label(&format!("U+{:04X} at {at}", ch as u32)),
                    &got,
                    Code::InvalidArgument,
                    "INVALID_CHARACTER",
                    Some(f.name),
                );
            }
        }
        if let Some((max, reason)) = f.long {
            for length in [max + 1, max * 2, 100_000.max(max + 1)] {
                let got = call(&mut c, f.rpc, f.name, &"é".repeat(length)).await;
                let field = (reason == "FIELD_TOO_LONG").then_some(f.name);
                check.refused(
                    &label(&format!("{length} characters")),
                    &got,
                    Code::InvalidArgument,
                    reason,
                    field,
                );
                if let Err((_, _, meta, _)) = &got
                    && reason == "FIELD_TOO_LONG"
                {
                    check.raw(
                        &label("limit"),
                        meta.get("limit") == Some(&max.to_string()),
                        format!("{meta:?}"),
                    );
                }
            }
            // At the limit, and with the characters a field may hold: no field error.
            let edge = if f.multi {
                format!("{}\n\t\r", "a".repeat(max - 3))
            } else {
                "a".repeat(max)
            };
            let got = call(&mut c, f.rpc, f.name, &edge).await;
            check.not_a_field_error(&label("at the limit"), &got);
        }
    }
    // The metadata ids, too long (their characters are HTTP/2's to refuse).
    for (key, max) in [("x-organization-id", 128), ("x-user-id", 128)] {
        for length in [max + 1, 4 * max] {
            let long = "o".repeat(length);
            let (org, user) = if key == "x-organization-id" {
                (long.as_str(), USER)
            } else {
                (ORG, long.as_str())
            };
            let got = answer(
                c.messaging
                    .list_messages(as_caller(ListMessagesRequest::default(), org, user))
                    .await,
            );
            check.refused(
                &format!("{key} {length}"),
                &got,
                Code::InvalidArgument,
                "FIELD_TOO_LONG",
                Some(key),
            );
            let got = answer(
                c.opt_outs
                    .list_opt_outs(as_caller(ListOptOutsRequest::default(), org, user))
                    .await,
            );
            check.refused(
                &format!("registry {key} {length}"),
                &got,
                Code::InvalidArgument,
                "FIELD_TOO_LONG",
                Some(key),
            );
        }
    }
    // The role the calling system says: anything but member or admin is refused by name,
    // by the composer and the registry alike, and never taken for either.
    let long_role = "a".repeat(129);
    for (value, reason) in [
        ("root", "INVALID_ROLE"),
        ("Admin", "INVALID_ROLE"),
        ("administrator", "INVALID_ROLE"),
        ("admin,member", "INVALID_ROLE"),
        ("-1", "INVALID_ROLE"),
        (long_role.as_str(), "FIELD_TOO_LONG"),
    ] {
        fn with_role<T>(mut r: tonic::Request<T>, value: &str) -> tonic::Request<T> {
            r.metadata_mut()
                .insert("x-user-role", value.parse().unwrap());
            r
        }
        let got = answer(
            c.messaging
                .list_messages(with_role(
                    sms_testkit::as_member(ListMessagesRequest::default(), ORG, USER),
                    value,
                ))
                .await,
        );
        check.refused(
            &format!("x-user-role {value:.20}"),
            &got,
            Code::InvalidArgument,
            reason,
            Some("x-user-role"),
        );
        let got = answer(
            c.opt_outs
                .list_opt_outs(with_role(
                    sms_testkit::as_member(ListOptOutsRequest::default(), ORG, USER),
                    value,
                ))
                .await,
        );
        check.refused(
            &format!("registry x-user-role {value:.20}"),
            &got,
            Code::InvalidArgument,
            reason,
            Some("x-user-role"),
        );
    }
    check.finish(3000);
    // Still serving.
    assert!(
        c.messaging
            .list_messages(as_user(ListMessagesRequest::default()))
            .await
            .is_ok()
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_typed_wrong_get_the_reason_that_says_why() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut c = clients(&stack).await;
    let mut check = Check::new("phone numbers");
    let send = |to: String, from: &str| SendMessageRequest {
        to,
        from: from.into(),
        body: "hi".into(),
        ..Default::default()
    };
    let typed = [
        "+12015550123",
        "(201) 555-0123",
        "+1 201-555-0123",
        "2015550123",
    ];
    // A letter anywhere (a typo for a digit, or a vanity number): never converted.
    for number in typed {
        for (i, _) in number.char_indices().skip(1) {
            for letter in ['O', 'l', 'I', 'S', 'B', 'x', 'é', 'Ω'] {
                let mut wrong = number.to_owned();
                wrong.insert(i, letter);
                let got = answer(
                    c.messaging
                        .send_message(as_user(send(wrong.clone(), OURS)))
                        .await,
                );
                // `x` before digits at the end reads as an extension; both are refused.
                check.refused(
                    &format!("to {wrong:?}"),
                    &got,
                    Code::InvalidArgument,
                    "INVALID_RECIPIENT",
                    None,
                );
            }
        }
    }
    // Extensions, pauses and service codes.
    for suffix in [
        " x12",
        " ext. 12",
        " ext 12",
        "#12",
        ";ext=12",
        ",,12",
        ";12",
        " extension 7",
    ] {
        for number in typed {
            let wrong = format!("{number}{suffix}");
            let got = answer(
                c.messaging
                    .send_message(as_user(send(wrong.clone(), OURS)))
                    .await,
            );
            check.refused(
                &format!("to {wrong:?}"),
                &got,
                Code::InvalidArgument,
                "INVALID_RECIPIENT",
                None,
            );
        }
    }
    for ch in [
        '*', '@', '!', '$', '%', '&', '=', '?', '<', '>', '"', '\'', '{', '}', '|', '^', '`', '_',
    ] {
        let wrong = format!("+1201555{ch}0123");
        let got = answer(
            c.messaging
                .send_message(as_user(send(wrong.clone(), OURS)))
                .await,
        );
        check.refused(
            &format!("to {wrong:?}"),
            &got,
            Code::InvalidArgument,
            "INVALID_RECIPIENT",
            None,
        );
    }
    // Numbers that are numbers, but not ones we may text from a US number.
    let cases: &[(&str, &str)] = &[
        ("+819012345678", "UNSUPPORTED_COUNTRY"),
        ("+8613800138000", "UNSUPPORTED_COUNTRY"),
        ("+919876543210", "UNSUPPORTED_COUNTRY"),
        ("+5511987654321", "UNSUPPORTED_COUNTRY"),
        ("+447400123456", "INTERNATIONAL_NOT_ALLOWED"),
        ("+4915112345678", "INTERNATIONAL_NOT_ALLOWED"),
        ("+33612345678", "INTERNATIONAL_NOT_ALLOWED"),
        ("+61412345678", "INTERNATIONAL_NOT_ALLOWED"),
        ("+442079460018", "RECIPIENT_NOT_SMS_CAPABLE"),
        ("+1 555 0000", "INVALID_RECIPIENT"),
        ("+1 201 555 01234", "INVALID_RECIPIENT"),
        ("+999 123 456", "INVALID_RECIPIENT"),
        ("0049 151", "INVALID_RECIPIENT"),
        ("", "INVALID_RECIPIENT"),
        ("+", "INVALID_RECIPIENT"),
        ("++12015550123", "INVALID_RECIPIENT"),
    ];
    for (to, reason) in cases {
        for from in [OURS, ""] {
            let got = answer(
                c.messaging
                    .send_message(as_user(send((*to).into(), from)))
                    .await,
            );
            // Without a sender, another country's number finds none of the user's numbers.
            let (code, reason) = if from.is_empty() && *reason == "INTERNATIONAL_NOT_ALLOWED" {
                (Code::FailedPrecondition, "NO_SENDER_AVAILABLE")
            } else {
                (Code::InvalidArgument, *reason)
            };
            check.refused(
                &format!("to {to:?} from {from:?}"),
                &got,
                code,
                reason,
                None,
            );
        }
    }
    // A national number needs the sender's country; a German one read with it is refused.
    let got = answer(
        c.messaging
            .send_message(as_user(send("(201) 555-0123".into(), "")))
            .await,
    );
    check.refused(
        "national without a sender",
        &got,
        Code::InvalidArgument,
        "INVALID_RECIPIENT",
        None,
    );
    // International form keeps its digits with a US sender: +49 is another country.
    let got = answer(
        c.messaging
            .send_message(as_user(send("+49 151 12345678".into(), OURS)))
            .await,
    );
    check.refused(
        "+49 with a US sender",
        &got,
        Code::InvalidArgument,
        "INTERNATIONAL_NOT_ALLOWED",
        None,
    );
    // Senders.
    for (from, code, reason) in [
        ("+1201555O100", Code::InvalidArgument, "INVALID_SENDER"),
        ("2015550100", Code::InvalidArgument, "INVALID_SENDER"),
        ("+12015550100 x1", Code::InvalidArgument, "INVALID_SENDER"),
        ("+12015550199", Code::FailedPrecondition, "UNKNOWN_SENDER"),
    ] {
        let got = answer(
            c.messaging
                .send_message(as_user(send(CONTACT.into(), from)))
                .await,
        );
        check.refused(&format!("from {from:?}"), &got, code, reason, None);
    }
    // Adding numbers: the same rules of reading.
    for (number, reason) in [
        ("+1201555O177", "INVALID_NUMBER"),
        ("+12015550177 ext 2", "INVALID_NUMBER"),
        ("2015550177", "INVALID_NUMBER"),
        ("+1 555 0000", "INVALID_NUMBER"),
    ] {
        let got = answer(
            c.numbers
                .add_number(as_user(AddNumberRequest {
                    number: number.into(),
                    owner: Some(add_number_request::Owner::OwnerUserId(USER.into())),
                    ..Default::default()
                }))
                .await,
        );
        check.refused(
            &format!("add {number:?}"),
            &got,
            Code::InvalidArgument,
            reason,
            None,
        );
    }
    check.finish(300);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_that_do_not_parse_say_what_and_where() {
    let stack = Stack::start().await;
    let mut c = clients(&stack).await;
    let mut check = Check::new("templates");
    let create = |body: String| CreateTemplateRequest {
        name: "t".into(),
        body,
        shared: false,
    };
    let known = [
        "contact.first_name",
        "lead.name",
        "user.full_name",
        "lead.custom[\"Deal\"]",
    ];
    let mut cases: Vec<(String, &str)> = Vec::new();
    for prefix in ["", "Hi ", "Hi {{ contact.first_name }}, ", "line\nbreak "] {
        for tag in known {
            cases.push((format!("{prefix}{{{{ {tag}"), "TEMPLATE_UNCLOSED_TAG"));
            cases.push((format!("{prefix}{{{{ {tag} }}"), "TEMPLATE_UNCLOSED_TAG"));
        }
        for empty in ["{{}}", "{{ }}", "{{\t}}", "{{   \n }}"] {
            cases.push((format!("{prefix}{empty}"), "TEMPLATE_EMPTY_TAG"));
        }
        for unknown in [
            "nickname",
            "contact.nickname",
            "lead.owner",
            "user.salary",
            "contact.first_name.upper",
            "lead.primary_address.planet",
            "organization.ceo",
            "contact",
            "lead.custom",
        ] {
            cases.push((
                format!("{prefix}{{{{ {unknown} }}}}"),
                "TEMPLATE_UNKNOWN_TAG",
            ));
        }
        for malformed in [
            "contact..first_name",
            "contact.",
            ".contact",
            "contact.first_name | upcase",
            "contact.first_name + 1",
            "lead.custom[Deal]",
            "lead.custom[\"\"]",
            "lead.custom[\"Deal\"",
            "lead.custom[\"Deal]",
            "contact first_name",
            "contact.first-name",
            "contact.first_name()",
            "'quoted'",
        ] {
            cases.push((
                format!("{prefix}{{{{ {malformed} }}}}"),
                "TEMPLATE_MALFORMED_TAG",
            ));
        }
    }
    for length in [10_001, 20_000, 50_000] {
        cases.push(("x".repeat(length), "TEMPLATE_TOO_LONG"));
    }
    for (body, reason) in &cases {
        let got = answer(
            c.templates
                .create_template(as_user(create(body.clone())))
                .await,
        );
        check.refused(
            &format!("create {body:?}"),
            &got,
            Code::InvalidArgument,
            reason,
            None,
        );
        // The same source previewed, or sent as a body through Preview, fails the same way.
        let got = answer(
            c.templates
                .preview(as_user(PreviewRequest {
                    source: Some(preview_request::Source::Body(body.clone())),
                    context: None,
                }))
                .await,
        );
        check.refused(
            &format!("preview {body:?}"),
            &got,
            Code::InvalidArgument,
            reason,
            None,
        );
    }
    // Errors name the line and column of the tag.
    let got = answer(
        c.templates
            .create_template(as_user(create("one\ntwo {{ nope }}".into())))
            .await,
    );
    if let Err((_, _, meta, _)) = &got {
        check.raw(
            "position",
            meta.get("line").map(String::as_str) == Some("2")
                && meta.get("column").map(String::as_str) == Some("5"),
            format!("{meta:?}"),
        );
    }
    check.finish(250);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_out_of_bounds_or_of_the_wrong_kind_are_refused_with_the_rule() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut c = clients(&stack).await;
    let mut check = Check::new("attachments");
    let with = |attachments: Vec<NewAttachment>| SendMessageRequest {
        attachments,
        ..SendMessageRequest {
            to: CONTACT.into(),
            from: OURS.into(),
            body: "files".into(),
            ..Default::default()
        }
    };
    let file = |content_type: &str, data: Vec<u8>| NewAttachment {
        file_name: "f".into(),
        content_type: content_type.into(),
        data,
        url: String::new(),
    };
    let html = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>".to_vec();
    // An executable's header, long enough for the sniffer to know one.
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
    elf.resize(128, 0);
    let zip = b"PK\x03\x04\x14\0\0\0\x08\0".to_vec();
    let samples = [
        JPEG.to_vec(),
        html.clone(),
        elf.clone(),
        zip.clone(),
        b"plain".to_vec(),
    ];
    for declared in [
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "application/javascript",
        "text/javascript",
        "application/x-sh",
        "application/zip",
        "application/gzip",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/x-msdownload",
        "application/vnd.microsoft.portable-executable",
        "application/x-executable",
        "application/octet-stream",
        "application/msword",
        "application/vnd.ms-excel",
        "application/json",
        "text/xml",
        "application/x-httpd-php",
        "",
        "garbage",
    ] {
        for data in &samples {
            let got = answer(
                c.messaging
                    .send_message(as_user(with(vec![file(declared, data.clone())])))
                    .await,
            );
            check.refused(
                &format!("{declared:?} with {} bytes", data.len()),
                &got,
                Code::InvalidArgument,
                "MEDIA_TYPE_NOT_ALLOWED",
                None,
            );
        }
    }
    // Declared as something allowed, the bytes are something else.
    for (declared, data, reason) in [
        ("image/png", JPEG.to_vec(), "MEDIA_TYPE_MISMATCH"),
        ("image/jpeg", PNG.to_vec(), "MEDIA_TYPE_MISMATCH"),
        ("application/pdf", JPEG.to_vec(), "MEDIA_TYPE_MISMATCH"),
        ("image/jpeg", PDF.to_vec(), "MEDIA_TYPE_MISMATCH"),
        ("image/png", elf.clone(), "MEDIA_TYPE_NOT_ALLOWED"),
        ("image/png", zip.clone(), "MEDIA_TYPE_NOT_ALLOWED"),
        ("text/plain", elf.clone(), "MEDIA_TYPE_NOT_ALLOWED"),
        ("text/plain", html.clone(), "MEDIA_TYPE_NOT_ALLOWED"),
        (
            "text/plain",
            b"\x01\x02\x03 binary".to_vec(),
            "UNRECOGNIZED_MEDIA",
        ),
        ("text/plain", b"\xff\xfe\xfd".to_vec(), "UNRECOGNIZED_MEDIA"),
        ("text/vcard", b"nul\0inside".to_vec(), "UNRECOGNIZED_MEDIA"),
        ("image/png", Vec::new(), "EMPTY_ATTACHMENT"),
        ("image/png", b"not a png".to_vec(), "UNRECOGNIZED_MEDIA"),
    ] {
        let got = answer(
            c.messaging
                .send_message(as_user(with(vec![file(declared, data.clone())])))
                .await,
        );
        check.refused(
            &format!("{declared} with {data:?}"),
            &got,
            Code::InvalidArgument,
            reason,
            None,
        );
    }
    // Counts and sizes at their limits.
    for count in 11..=20 {
        let files = (0..count)
            .map(|_| file("image/jpeg", JPEG.to_vec()))
            .collect();
        let got = answer(c.messaging.send_message(as_user(with(files))).await);
        check.refused(
            &format!("{count} files"),
            &got,
            Code::InvalidArgument,
            "TOO_MANY_ATTACHMENTS",
            None,
        );
    }
    let sized = |head: &[u8], size: usize| {
        let mut v = head.to_vec();
        v.resize(size, 0);
        v
    };
    for extra in [1usize, 2, 1000] {
        let images = (0..5)
            .map(|i| {
                let each = sms_core::mms::MAX_IMAGE_TOTAL_BYTES as usize / 5;
                file(
                    "image/png",
                    sized(PNG, each + if i == 0 { extra } else { 0 }),
                )
            })
            .collect();
        let got = answer(c.messaging.send_message(as_user(with(images))).await);
        check.refused(
            &format!("images +{extra}"),
            &got,
            Code::InvalidArgument,
            "IMAGES_TOO_LARGE",
            None,
        );
        let mixed = vec![
            file(
                "application/pdf",
                sized(
                    PDF,
                    sms_core::mms::MAX_MIXED_TOTAL_BYTES as usize - 100 + extra,
                ),
            ),
            file("image/jpeg", sized(JPEG, 100)),
        ];
        let got = answer(c.messaging.send_message(as_user(with(mixed))).await);
        check.refused(
            &format!("mixed +{extra}"),
            &got,
            Code::InvalidArgument,
            "ATTACHMENTS_TOO_LARGE",
            None,
        );
    }
    check.finish(120);
    stack.shutdown().await;
}

/// A form signed as Twilio signs it for `url`.
fn signed(url: &str, params: &[(&str, &str)]) -> String {
    sms_testkit::twilio_signature(AUTH_TOKEN, url, params)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_that_are_not_what_a_carrier_sends_are_refused_and_say_why() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut check = Check::new("webhooks");
    let incoming = format!("{}/webhooks/twilio/incoming", stack.inbound_url);
    let mid = uuid::Uuid::now_v7().to_string();
    let status = format!(
        "{}/webhooks/twilio/status?org={ORG}&mid={mid}",
        stack.inbound_url
    );
    let sm = "SM0123456789abcdef0123456789abcdef";
    let base_in: Vec<(&str, String)> = vec![
        ("MessageSid", sm.into()),
        ("AccountSid", ACCOUNT_SID.into()),
        ("From", CONTACT.into()),
        ("To", OURS.into()),
        ("Body", "hi".into()),
    ];
    let base_status: Vec<(&str, String)> = vec![
        ("MessageSid", sm.into()),
        ("AccountSid", ACCOUNT_SID.into()),
        ("MessageStatus", "delivered".into()),
        ("From", OURS.into()),
        ("To", CONTACT.into()),
    ];
    async fn post(url: &str, params: &[(&str, String)], sign: bool) -> (u16, String) {
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let sig = signed(url, &pairs);
        sms_testkit::post_form(url, &pairs, sign.then_some(sig.as_str())).await
    }
    fn expect(check: &mut Check, label: String, got: (u16, String), code: u16, says: &str) {
        check.raw(
            &label,
            got.0 == code && got.1.contains(says) && got.1.len() <= MAX_MESSAGE,
            format!("expected {code} saying {says:?}, got {got:?}"),
        );
    }
    for (url, base, required) in [
        (
            &incoming,
            &base_in,
            &["MessageSid", "AccountSid", "From", "To"][..],
        ),
        (
            &status,
            &base_status,
            &["MessageSid", "AccountSid", "MessageStatus"][..],
        ),
    ] {
        // Each required field missing, or empty.
        for name in required {
            let mut p = base.clone();
            p.retain(|(k, _)| k != name);
            // Without AccountSid no token can check the signature: 403, as for any forgery.
            let code = if *name == "AccountSid" { 403 } else { 400 };
            let says = if code == 403 {
                "Signature".to_owned()
            } else {
                format!("{name} is required")
            };
            expect(
                &mut check,
                format!("{url} without {name}"),
                post(url, &p, true).await,
                code,
                &says,
            );
        }
        // Sids of the wrong shape: every position of a good one spoilt, and wrong lengths.
        let mut bad_sids: Vec<String> = vec![
            "SM1".into(),
            "XX0123456789abcdef0123456789abcdef".into(),
            "SM0123456789abcdef0123456789abcdef0".into(),
            "sm0123456789abcdef0123456789abcdef".into(),
            "AC0123456789abcdef0123456789abcdef".into(),
        ];
        for i in 2..sm.len() {
            for spoil in ['!', ' ', '\u{0}', 'é', '-'] {
                let mut chars: Vec<char> = sm.chars().collect();
                chars[i] = spoil;
                bad_sids.push(chars.into_iter().collect());
            }
        }
        for bad in &bad_sids {
            let mut p = base.clone();
            p[0].1 = bad.clone();
            expect(
                &mut check,
                format!("{url} sid {bad:?}"),
                post(url, &p, true).await,
                400,
                "MessageSid is invalid",
            );
        }
        // Numbers too long or with control characters.
        let mut bad_numbers: Vec<(&str, String)> = vec![
            ("From", "9".repeat(65)),
            ("To", "9".repeat(1000)),
            ("From", "+1\u{1b}[31m".into()),
        ];
        for ch in forbidden(false) {
            bad_numbers.push(("From", format!("+1201555{ch}0123")));
            bad_numbers.push(("To", format!("+1201555{ch}0100")));
        }
        for (name, bad) in bad_numbers {
            let mut p = base.clone();
            for (k, v) in p.iter_mut() {
                if *k == name {
                    *v = bad.clone();
                }
            }
            expect(
                &mut check,
                format!("{url} {name}={bad:?}"),
                post(url, &p, true).await,
                400,
                name,
            );
        }
        // Forged, unsigned, or signed for another URL or with another token.
        expect(
            &mut check,
            format!("{url} unsigned"),
            post(url, base, false).await,
            403,
            "Signature",
        );
        let pairs: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for sig in [
            sms_testkit::twilio_signature("another-token", url, &pairs),
            sms_testkit::twilio_signature(AUTH_TOKEN, "https://elsewhere.example/hook", &pairs),
            "not base64 at all".into(),
            String::new(),
        ] {
            let got = sms_testkit::post_form(url, &pairs, Some(&sig)).await;
            expect(
                &mut check,
                format!("{url} signature {sig:?}"),
                got,
                403,
                "Signature",
            );
        }
        // Tampered after signing.
        let sig = signed(url, &pairs);
        let mut tampered = pairs.clone();
        tampered.push(("Extra", "x"));
        let got = sms_testkit::post_form(url, &tampered, Some(&sig)).await;
        expect(&mut check, format!("{url} tampered"), got, 403, "Signature");
        // Not a form.
        let client = reqwest::Client::new();
        for (content_type, body) in [
            ("application/json", b"{\"MessageSid\":\"SM1\"}".to_vec()),
            ("text/plain", b"hello".to_vec()),
            ("", Vec::new()),
        ] {
            let mut r = client.post(url.as_str()).body(body);
            if !content_type.is_empty() {
                r = r.header("content-type", content_type);
            }
            let resp = r.send().await.unwrap();
            let got = (resp.status().as_u16(), resp.text().await.unwrap());
            expect(
                &mut check,
                format!("{url} as {content_type:?}"),
                got,
                415,
                "form",
            );
        }
        let resp = client
            .post(url.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(b"MessageSid=%FF%FE\xff\xfe".to_vec())
            .send()
            .await
            .unwrap();
        let got = (resp.status().as_u16(), resp.text().await.unwrap());
        expect(&mut check, format!("{url} not UTF-8"), got, 400, "UTF-8");
        let big = "x".repeat(70 * 1024);
        let mut p = base.clone();
        p.push(("Big", big));
        let got = post(url, &p, true).await;
        expect(&mut check, format!("{url} 70 KiB"), got, 413, "");
    }
    // Incoming only: media and segment counts.
    for (name, bad, says) in [
        ("NumMedia", "11", "NumMedia"),
        ("NumMedia", "-1", "NumMedia"),
        ("NumMedia", "ten", "NumMedia"),
        ("NumMedia", "99999999999999999999", "NumMedia"),
        ("NumSegments", "x", "NumSegments"),
        ("NumSegments", "-3", "NumSegments"),
    ] {
        let mut p = base_in.clone();
        p.push((name, bad.into()));
        expect(
            &mut check,
            format!("incoming {name}={bad}"),
            post(&incoming, &p, true).await,
            400,
            says,
        );
    }
    for (url, ctype) in [
        ("x".repeat(2049), "image/png".to_owned()),
        (
            "https://api.twilio.com/\u{0}".to_owned(),
            "image/png".into(),
        ),
        ("https://api.twilio.com/m".to_owned(), "t".repeat(256)),
    ] {
        let mut p = base_in.clone();
        p.extend([
            ("NumMedia", "1".to_owned()),
            ("MediaUrl0", url),
            ("MediaContentType0", ctype),
        ]);
        expect(
            &mut check,
            "incoming bad media".into(),
            post(&incoming, &p, true).await,
            400,
            "Media",
        );
    }
    // Status only: error codes, the callback URL's org and mid.
    for bad in ["x", "-1", "3.5", "99999999999"] {
        let mut p = base_status.clone();
        p.push(("ErrorCode", bad.into()));
        expect(
            &mut check,
            format!("ErrorCode {bad}"),
            post(&status, &p, true).await,
            400,
            "ErrorCode",
        );
    }
    for query in [
        String::new(),
        format!("?org={ORG}"),
        format!("?mid={mid}"),
        format!("?org={ORG}&mid=not-a-uuid"),
        format!("?org={ORG}&mid={}", "9".repeat(500)),
        format!("?org=%00&mid={mid}"),
        format!("?org={}&mid={mid}", "o".repeat(129)),
        "?%ff%fe".to_owned(),
    ] {
        let url = format!("{}/webhooks/twilio/status{query}", stack.inbound_url);
        let got = post(&url, &base_status, true).await;
        expect(&mut check, format!("status URL {query:?}"), got, 400, "");
    }
    // Well formed, unusual, acknowledged: statuses we do not track, short codes, a number we
    // do not hold, and text that needs replacing (stored, see edges.rs).
    for s in ["queued", "accepted", "canceled", "sparkling", "receiving"] {
        let mut p = base_status.clone();
        p[2].1 = s.into();
        expect(
            &mut check,
            format!("status {s}"),
            post(&status, &p, true).await,
            200,
            "",
        );
    }
    for (from, to) in [("55555", OURS), ("123456", OURS), (CONTACT, "+12015550999")] {
        let mut p = base_in.clone();
        p[2].1 = from.into();
        p[3].1 = to.into();
        p[0].1 = format!("SM{}", uuid::Uuid::new_v4().simple());
        expect(
            &mut check,
            format!("incoming {from}->{to}"),
            post(&incoming, &p, true).await,
            200,
            "Response",
        );
    }
    for body in [
        "\u{0}",
        "a\u{0}b\u{1}c",
        "\u{7f}\u{9f}",
        &"\u{0}".repeat(1000),
    ] {
        let mut p = base_in.clone();
        p[4].1 = body.to_owned();
        p[0].1 = format!("SM{}", uuid::Uuid::new_v4().simple());
        expect(
            &mut check,
            format!("body {body:?}"),
            post(&incoming, &p, true).await,
            200,
            "Response",
        );
    }
    check.finish(120);
    stack.shutdown().await;
}

/// (subject, type header, payload, the consumers that must dead-letter it, what they say).
type BusCase = (
    String,
    Option<&'static str>,
    Vec<u8>,
    Vec<sms_bus::ConsumerKind>,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_payloads_of_the_wrong_type_or_shape_are_dead_lettered_and_send_nothing() {
    use sms_bus::ConsumerKind;
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut check = Check::new("bus payloads");
    let client = stack.bus.client().clone();
    let mut dlq = client
        .subscribe(format!("{}.dlq.>", stack.namespace))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let subjects = stack.bus.subjects().clone();
    let outbound = |from: &str, to: &str, body: &str| sms_proto::events::v1::OutboundMessage {
        message_id: uuid::Uuid::now_v7().to_string(),
        organization_id: ORG.into(),
        from: from.into(),
        to: to.into(),
        body: body.into(),
        ..Default::default()
    };
    let accepted =
        |m: sms_proto::events::v1::OutboundMessage| sms_proto::events::v1::MessageAccepted {
            meta: Some(sms_bus::meta(sms_bus::new_event_id(), ORG, &m.message_id)),
            message: Some(m),
        };
    // (subject, type header, payload, the consumers that must dead-letter it, what they say)
    let mut cases: Vec<BusCase> = Vec::new();
    // Messages to send travel on their sender's dispatch partition.
    let partition = sms_bus::dispatch_partition(ORG, OURS);
    let consumers_of = |subject: &str| -> Vec<ConsumerKind> {
        if subject.contains(".msg.accepted.") {
            vec![ConsumerKind::DispatcherAccepted(partition)]
        } else if subject.contains(".msg.due.") {
            vec![ConsumerKind::DispatcherDue(partition)]
        } else if subject.ends_with(".msg.scheduled") {
            vec![ConsumerKind::SchedulerScheduled]
        } else if subject.ends_with(".msg.autoreply") {
            vec![ConsumerKind::ComposerAutoReply]
        } else if subject.ends_with(".msg.optout") {
            vec![ConsumerKind::OptOutCarrier]
        } else if subject.ends_with(".inbound.received") {
            vec![ConsumerKind::ComposerInbound, ConsumerKind::OptOutInbound]
        } else {
            vec![ConsumerKind::ComposerStatus]
        }
    };
    let typed = [
        (
            subjects.msg_accepted(partition),
            "sms.events.v1.MessageAccepted",
        ),
        (subjects.msg_due(partition), "sms.events.v1.MessageDue"),
        (subjects.msg_scheduled(), "sms.events.v1.MessageScheduled"),
        (subjects.msg_autoreply(), "sms.events.v1.AutoReply"),
        (subjects.msg_optout(), "sms.events.v1.CarrierOptOut"),
        (subjects.inbound_received(), "sms.events.v1.InboundReceived"),
        (
            subjects.status(sms_core::Status::Delivered),
            "sms.events.v1.StatusChanged",
        ),
    ];
    // A valid MessageAccepted is a valid MessageDue, StatusChanged, ... to protobuf: only the
    // type header tells them apart.
    let valid_accepted = accepted(outbound(OURS, CONTACT, "hi")).encode_to_vec();
    for (subject, right) in &typed {
        for wrong in [
            None,
            Some("sms.events.v1.MessageAccepted"),
            Some("sms.events.v1.OptOutChanged"),
            Some("sms.v1.Message"),
            Some("garbage type"),
        ] {
            if wrong == Some(*right) {
                continue;
            }
            let says = if wrong.is_none() {
                "no Sms-Event-Type header"
            } else {
                "event type"
            };
            cases.push((
                subject.clone(),
                wrong,
                valid_accepted.clone(),
                consumers_of(subject),
                says,
            ));
        }
        // The right type, bytes that are not one.
        for garbage in [vec![0xff, 0xff, 0xff], vec![0x0a, 0xff], vec![0x08, 0x01]] {
            cases.push((
                subject.clone(),
                Some(*right),
                garbage,
                consumers_of(subject),
                "cannot decode",
            ));
        }
    }
    // Right type and shape, wrong content: the dispatcher checks again and never calls the
    // carrier.
    let mut published_ids = Vec::new();
    for (i, (subject, header, payload, consumers, _)) in cases.iter().enumerate() {
        let mut headers = async_nats::HeaderMap::new();
        let id = format!("hostile-{i}");
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert("Hostile-Case", id.as_str());
        if let Some(h) = header {
            headers.insert(sms_bus::EVENT_TYPE_HEADER, *h);
        }
        stack
            .bus
            .jetstream()
            .publish_with_headers(subject.clone(), headers, payload.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
        published_ids.push((id, consumers.clone()));
    }
    let expected: usize = cases.iter().map(|c| c.3.len()).sum();
    let mut got: HashMap<(String, String), String> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got.len() < expected && std::time::Instant::now() < deadline {
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), dlq.next()).await else {
            continue;
        };
        let h = m.headers.unwrap_or_default();
        let case = h
            .get("Hostile-Case")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let consumer = h
            .get(sms_bus::DLQ_CONSUMER_HEADER)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let reason = h
            .get(sms_bus::DLQ_REASON_HEADER)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        got.insert((case, consumer), reason);
    }
    for (i, (subject, header, _, consumers, says)) in cases.iter().enumerate() {
        for consumer in consumers {
            let key = (format!("hostile-{i}"), consumer.durable_name().to_owned());
            let reason = got.get(&key);
            check.raw(
                &format!("{subject} {header:?} at {}", consumer.durable_name()),
                reason.is_some_and(|r| r.contains(says) && r.len() <= MAX_MESSAGE),
                format!("dead letter {reason:?}, expected {says:?}"),
            );
        }
    }
    // Valid events whose message breaks the rules: failed by the dispatcher, never sent.
    let bad = [
        outbound(OURS, "+447400123456", "to another country"),
        outbound("+1201555O100", CONTACT, "bad sender"),
        outbound(OURS, CONTACT, "nul\u{0}inside"),
        outbound(OURS, CONTACT, &"x".repeat(1001)),
        outbound(OURS, CONTACT, ""),
        outbound(OURS, "+442079460018", "a landline"),
    ];
    for m in &bad {
        stack
            .bus
            .publish_durably(&accepted(m.clone()))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    check.raw(
        "no carrier call",
        stack.sim.requests().is_empty(),
        format!("{:?}", stack.sim.requests()),
    );
    check.finish(50);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_urls_that_lead_inside_are_never_fetched() {
    let stack = Stack::start().await;
    stack.add_number(OURS).await;
    let mut c = clients(&stack).await;
    let mut check = Check::new("media URLs");
    let by_url = |url: String| SendMessageRequest {
        to: CONTACT.into(),
        from: OURS.into(),
        body: "see attached".into(),
        attachments: vec![NewAttachment {
            file_name: "x.jpg".into(),
            content_type: "image/jpeg".into(),
            data: Vec::new(),
            url,
        }],
        ..Default::default()
    };
    let mut hosts: Vec<String> = Vec::new();
    // Addresses in every refused range, and the ways of writing them.
    for a in [
        "127.0.0.1",
        "127.1.2.3",
        "127.255.255.254",
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.20.1.1",
        "172.31.255.255",
        "192.168.0.1",
        "192.168.255.255",
        "169.254.169.254",
        "169.254.0.1",
        "100.64.0.1",
        "100.100.100.100",
        "100.127.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "198.18.0.1",
        "198.19.255.255",
        "192.0.0.1",
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.1",
        "240.0.0.1",
    ] {
        hosts.push(a.to_owned());
        let ip: std::net::Ipv4Addr = a.parse().unwrap();
        let n = u32::from(ip);
        hosts.push(n.to_string());
        hosts.push(format!("0x{n:x}"));
        let [o1, o2, o3, o4] = ip.octets();
        hosts.push(format!("0{o1:o}.0{o2:o}.0{o3:o}.0{o4:o}"));
        hosts.push(format!("[::ffff:{a}]"));
    }
    hosts.extend(
        [
            "127.1",
            "10.1",
            "[::1]",
            "[::]",
            "[0:0:0:0:0:0:0:1]",
            "[::ffff:7f00:1]",
            "[fe80::1]",
            "[fe80::1%25eth0]",
            "[fc00::1]",
            "[fd12:3456::1]",
            "[ff02::1]",
            "[64:ff9b::a00:1]",
            "[::127.0.0.1]",
            "localhost",
            "LOCALHOST",
            "localhost.",
        ]
        .map(str::to_owned),
    );
    let mut urls: Vec<String> = Vec::new();
    for host in &hosts {
        urls.push(format!("https://{host}/x.jpg"));
        urls.push(format!("http://{host}:8080/x.jpg"));
    }
    for url in [
        "ftp://example.com/x.jpg",
        "file:///etc/passwd",
        "gopher://example.com/",
        "data:image/jpeg;base64,AAAA",
        "javascript:alert(1)",
        "https://user:pass@example.com/x.jpg",
        "https://",
        "https:///x.jpg",
        "//example.com/x.jpg",
        "x.jpg",
        "https://exa mple.com/x.jpg",
    ] {
        urls.push(url.to_owned());
    }
    for url in &urls {
        let got = answer(c.messaging.send_message(as_user(by_url(url.clone()))).await);
        check.refused(url, &got, Code::InvalidArgument, "MEDIA_FETCH_FAILED", None);
    }
    let got = answer(
        c.messaging
            .send_message(as_user(by_url(format!(
                "https://example.com/{}",
                "a".repeat(2100)
            ))))
            .await,
    );
    check.refused(
        "2,100 characters",
        &got,
        Code::InvalidArgument,
        "FIELD_TOO_LONG",
        Some("attachments.url"),
    );
    check.raw(
        "nothing sent",
        stack.sim.requests().is_empty(),
        "a carrier call",
    );
    check.finish(250);
    stack.shutdown().await;
}
