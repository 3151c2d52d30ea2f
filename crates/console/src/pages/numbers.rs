//! Numbers and groups: capabilities, owners, and a warning for every number that cannot text.

use std::collections::HashMap;

use axum::extract::State;
use maud::html;
use sms_proto::v1::{ListGroupsRequest, ListNumbersRequest, NumberKind, NumberSource};

use crate::api::call;
use crate::html::{page, time};
use crate::session::Signed;
use crate::{AppState, PageResult};

/// `GET /numbers`.
pub async fn list(State(state): State<AppState>, Signed(session): Signed) -> PageResult {
    let numbers = state
        .api
        .numbers()
        .list_numbers(call(&session, ListNumbersRequest {}))
        .await?
        .into_inner()
        .numbers;
    let groups = state
        .api
        .numbers()
        .list_groups(call(&session, ListGroupsRequest {}))
        .await?
        .into_inner()
        .groups;
    let group_names: HashMap<&str, &str> = groups
        .iter()
        .map(|g| (g.id.as_str(), g.name.as_str()))
        .collect();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let content = html! {
        @if numbers.is_empty() { p.muted { "No numbers yet: rent one with smsctl numbers rent, or add one." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Number" } th { "Country" } th { "Type" } th { "SMS" } th { "MMS" }
                    th { "Voice" } th { "Owner" } th.hide-narrow { "Source" } th.hide-narrow { "Carrier" } th.num.hide-narrow { "Rate /s" }
                    th.hide-narrow { "Added" } } }
                tbody { @for n in &numbers {
                    @let external = n.kind == NumberKind::External as i32;
                    tr data-number=(n.number) {
                        td { a href=(format!("/conversations?our_number={}", form_urlencoded::byte_serialize(n.number.as_bytes()).collect::<String>())) { (n.number) }
                            @if external { " " span.badge.off { "external" } }
                            @if !n.sms_capable && !external {
                                br; span.warning.no-sms { "⚠ Cannot send SMS: messages from this number will be refused." }
                            }
                        }
                        td { (n.region) }
                        td { (n.number_type) }
                        td { (yes(n.sms_capable)) } td { (yes(n.mms_capable)) } td { (yes(n.voice_capable)) }
                        td {
                            @if !n.owner_user_id.is_empty() { "user " (n.owner_user_id) }
                            @else if !n.owner_group_id.is_empty() {
                                "group " (group_names.get(n.owner_group_id.as_str()).copied().unwrap_or(&n.owner_group_id))
                            }
                        }
                        td.hide-narrow { (source(n.source)) }
                        td.hide-narrow.carrier {
                            @if n.carrier_connection.is_empty() { span.muted { "default" } } @else { (n.carrier_connection) }
                        }
                        td.num.hide-narrow { (n.send_rate) }
                        td.hide-narrow { (time(n.created_at.as_ref())) }
                    }
                } }
            } }
        }
        h2 { "Groups" }
        @if groups.is_empty() { p.muted { "No groups." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Group" } th { "Members" } } }
                tbody { @for g in &groups {
                    tr { td { (g.name) } td { (g.member_user_ids.join(", ")) } }
                } }
            } }
        }
    };
    Ok(page(&session, "/numbers", "Numbers and groups", content))
}

fn source(s: i32) -> &'static str {
    match NumberSource::try_from(s) {
        Ok(NumberSource::Rented) => "rented",
        Ok(NumberSource::Imported) => "imported",
        Ok(NumberSource::Recorded) => "recorded",
        _ => "",
    }
}
