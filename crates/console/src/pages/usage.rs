//! Usage: segments per month × country × SMS/MMS, as a table and a chart drawn here (SVG).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;
use sms_proto::v1::{GetUsageRequest, MessageKind, UsageRow};

use super::given;
use crate::api::{ApiError, call};
use crate::html::{FormErrors, page};
use crate::session::Signed;
use crate::{AppState, PageResult};

/// `GET /usage` query.
#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    /// `YYYY-MM`.
    from_month: Option<String>,
    /// `YYYY-MM`.
    to_month: Option<String>,
}

/// One line of the table: a month, a country and a kind, over both encodings.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    messages: u64,
    segments: u64,
}

/// `GET /usage`.
pub async fn show(
    State(state): State<AppState>,
    Signed(session): Signed,
    Query(q): Query<UsageQuery>,
) -> PageResult {
    // By default, the last twelve months (UTC).
    let (default_from, default_to) = last_twelve_months();
    let from = given(&q.from_month).map_or(default_from, str::to_owned);
    let to = given(&q.to_month).map_or(default_to, str::to_owned);
    let r = state
        .api
        .messaging()
        .get_usage(call(
            &session,
            GetUsageRequest {
                from_month: from.clone(),
                to_month: to.clone(),
            },
        ))
        .await
        .map_err(ApiError::from);
    let (rows, today, errors) = match r {
        Ok(r) => {
            let r = r.into_inner();
            (r.rows, r.today, FormErrors::default())
        }
        Err(e) if e.code == tonic::Code::InvalidArgument => {
            let field = if e.message.contains(&to) && !to.is_empty() && !e.message.contains(&from) {
                "to_month"
            } else {
                "from_month"
            };
            (Vec::new(), None, FormErrors::field(field, e.message))
        }
        Err(e) => return Err(e.into()),
    };
    let table_rows = totals(&rows);
    let content = html! {
        form.filters method="get" action="/usage" {
            label { span { "From month" }
                input type="month" name="from_month" id="from_month" value=(from) placeholder="2026-01";
                (errors.at("from_month")) }
            label { span { "To month" }
                input type="month" name="to_month" id="to_month" value=(to) placeholder="2026-12";
                (errors.at("to_month")) }
            button type="submit" { "Show" }
        }
        @if let Some(t) = &today {
            p.muted { "Today (" (t.day) "): " b { (t.segments) } " segments"
                @if t.cap > 0 { " of a daily cap of " (t.cap) } "." }
        }
        @if table_rows.is_empty() { p.muted { "No usage in this period." } } @else {
            (chart(&table_rows, &months_between(&from, &to)))
            div.table-wrap { table #usage {
                thead { tr { th { "Month" } th { "Country" } th { "Kind" } th.num { "Messages" } th.num { "Segments" } } }
                tbody { @for ((month, country, kind), t) in &table_rows {
                    tr { td { (month) } td { (country) } td { (kind_label(*kind)) } td.num { (t.messages) } td.num { (t.segments) } }
                } }
            } }
        }
    };
    Ok(page(&session, "/usage", "Usage", content))
}

type Key = (String, String, MessageKind);

/// A kind as the table shows it.
fn kind_label(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Sms => "SMS",
        MessageKind::Mms => "MMS",
        MessageKind::Unspecified => "?",
    }
}

fn totals(rows: &[UsageRow]) -> BTreeMap<Key, Totals> {
    let mut map: BTreeMap<Key, Totals> = BTreeMap::new();
    for r in rows {
        let t = map
            .entry((
                r.month.clone(),
                r.country.clone(),
                MessageKind::try_from(r.message_kind).unwrap_or(MessageKind::Unspecified),
            ))
            .or_default();
        t.messages += r.messages;
        t.segments += r.segments;
    }
    map
}

/// This month and the eleven before it, as `YYYY-MM`.
fn last_twelve_months() -> (String, String) {
    let today = jiff::Timestamp::now().to_string();
    let (year, month) = (&today[..4], &today[5..7]);
    let (year, month): (i32, i32) = (year.parse().unwrap_or(2026), month.parse().unwrap_or(1));
    let first = year * 12 + (month - 1) - 11;
    (
        format!("{:04}-{:02}", first / 12, first % 12 + 1),
        format!("{year:04}-{month:02}"),
    )
}

/// Every month from `from` to `to` (`YYYY-MM`, both included; at most 36), for the chart's
/// slots; empty when either is not a month.
fn months_between(from: &str, to: &str) -> Vec<String> {
    let index = |m: &str| -> Option<i32> {
        let (y, mo) = m.split_once('-')?;
        let (y, mo): (i32, i32) = (y.parse().ok()?, mo.parse().ok()?);
        (1..=12).contains(&mo).then_some(y * 12 + mo - 1)
    };
    match (index(from), index(to)) {
        (Some(a), Some(b)) if a <= b => (a..=b.min(a + 35))
            .map(|i| format!("{:04}-{:02}", i / 12, i % 12 + 1))
            .collect(),
        _ => Vec::new(),
    }
}

/// Segments per month, SMS and MMS stacked; a slot for every month of the period.
fn chart(rows: &BTreeMap<Key, Totals>, period: &[String]) -> Markup {
    let mut months: BTreeMap<&str, (u64, u64)> =
        period.iter().map(|m| (m.as_str(), (0, 0))).collect();
    for ((month, _, kind), t) in rows {
        let m = months.entry(month.as_str()).or_default();
        if *kind == MessageKind::Mms {
            m.1 += t.segments;
        } else {
            m.0 += t.segments;
        }
    }
    let max = months
        .values()
        .map(|(s, m)| s + m)
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, top, bottom, left) = (1000.0_f64, 240.0_f64, 16.0, 28.0, 8.0);
    let plot = height - top - bottom;
    let slot = (width - 2.0 * left) / months.len().max(1) as f64;
    let bar = (slot * 0.6).min(48.0);
    let scale = |v: u64| v as f64 / max as f64 * plot;
    html! {
        div.legend { span.sms { "SMS segments" } span.mms { "MMS segments" } }
        svg.chart viewBox=(format!("0 0 {width} {height}")) role="img"
            aria-label="Segments per month" xmlns="http://www.w3.org/2000/svg" {
            @for (i, (month, (sms, mms))) in months.iter().enumerate() {
                @let x = left + slot * i as f64 + (slot - bar) / 2.0;
                @let h_sms = scale(*sms);
                @let h_mms = scale(*mms);
                @let base = height - bottom;
                rect.sms x=(format!("{x:.1}")) y=(format!("{:.1}", base - h_sms)) width=(format!("{bar:.1}")) height=(format!("{h_sms:.1}")) {
                    title { (month) ": " (sms) " SMS segments" } }
                rect.mms x=(format!("{x:.1}")) y=(format!("{:.1}", base - h_sms - h_mms)) width=(format!("{bar:.1}")) height=(format!("{h_mms:.1}")) {
                    title { (month) ": " (mms) " MMS segments" } }
                text x=(format!("{:.1}", x + bar / 2.0)) y=(format!("{:.1}", height - 10.0)) text-anchor="middle" { (month) }
                @if sms + mms > 0 {
                    text x=(format!("{:.1}", x + bar / 2.0)) y=(format!("{:.1}", base - h_sms - h_mms - 4.0)) text-anchor="middle" { (sms + mms) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(
            months_between("2026-11", "2027-02"),
            ["2026-11", "2026-12", "2027-01", "2027-02"]
        );
        assert!(months_between("2027-02", "2026-11").is_empty());
        assert!(months_between("2026-13", "2027-02").is_empty());
        assert_eq!(months_between("2020-01", "2030-01").len(), 36);
        let (from, to) = last_twelve_months();
        assert_eq!(months_between(&from, &to).len(), 12);
    }
}
