//! The SQL of SMPP's parts, receipts and contacts' message parts (`0004_smpp.sql`).
//!
//! A receipt is matched to the part whose id it quotes, in the form the SMSC answered first,
//! then across radixes (an id answered in hex and quoted in decimal, or the other way round).
//! One that matches nothing yet waits in `smpp_receipts`, and is applied in the transaction
//! that records its part. A message is settled when every part has a final receipt: its status
//! is the worst of theirs.

use prost::Message as _;
use sms_bus::Encoded;
use sms_core::{Reason, Status};
use sms_proto::events::v1::OutboundMessage;
use sms_runtime::outbox::Outbox;
use sms_smpp::SmscId;
use sms_smpp::receipt::MessageState;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::carrier::CarrierRecord;

/// Whether a receipt's state ends the part's life.
pub(crate) fn is_final(state: MessageState) -> bool {
    !matches!(state, MessageState::Enroute | MessageState::Accepted)
}

/// A receipt's content, as stored.
#[derive(Debug, Clone)]
pub(crate) struct ReceiptRow {
    pub state: MessageState,
    pub error: Option<String>,
    pub reason: Option<Reason>,
}

/// Records the parts a message went out as, applies the receipts that came before them, and
/// settles the messages they complete. Returns the status events to publish.
pub(crate) async fn record_parts(
    conn: &mut PgConnection,
    outbox: &Outbox,
    connection: &str,
    message_id: Uuid,
    parts: &[SmscId],
) -> Result<Vec<Encoded>, sqlx::Error> {
    let total = i16::try_from(parts.len()).unwrap_or(i16::MAX);
    let numbers: Vec<i16> = (1..=total).collect();
    let forms: Vec<_> = parts.iter().map(SmscId::forms).collect();
    let texts: Vec<String> = forms.iter().map(|f| f.text.clone()).collect();
    let hexes: Vec<Option<String>> = forms.iter().map(|f| f.hex_value.clone()).collect();
    let decimals: Vec<Option<String>> = forms.iter().map(|f| f.decimal_value.clone()).collect();
    sqlx::query!(
        "INSERT INTO dispatcher.smpp_parts
             (message_id, part, parts, connection, id_text, id_hex, id_decimal)
         SELECT $1, u.part, $2, $3, u.id_text, u.id_hex, u.id_decimal
           FROM UNNEST($4::smallint[], $5::text[], $6::text[], $7::text[])
             AS u(part, id_text, id_hex, id_decimal)
         ON CONFLICT (message_id, part) DO NOTHING",
        message_id,
        total,
        connection,
        &numbers,
        &texts,
        &hexes as &[Option<String>],
        &decimals as &[Option<String>],
    )
    .execute(&mut *conn)
    .await?;
    // Receipts that overtook their submit_sm_resp (on any bind or replica); after the lock a
    // receipt kept concurrently is committed, and one still deciding will see these parts.
    lock_waiting(conn, connection).await?;
    let waiting = sqlx::query!(
        r#"DELETE FROM dispatcher.smpp_receipts r
            USING dispatcher.smpp_parts p
           WHERE p.message_id = $1 AND r.connection = p.connection
             AND (r.id_text = p.id_text OR r.id_decimal = p.id_hex OR r.id_hex = p.id_decimal)
         RETURNING p.part AS "part!", r.state AS "state!", r.error, r.reason"#,
        message_id
    )
    .fetch_all(&mut *conn)
    .await?;
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    for w in &waiting {
        let Some(state) = u8::try_from(w.state).ok().and_then(MessageState::from_code) else {
            continue;
        };
        let row = ReceiptRow {
            state,
            error: w.error.clone(),
            reason: w.reason.as_deref().and_then(Reason::parse),
        };
        apply(conn, message_id, w.part, &row).await?;
    }
    settle(conn, outbox, &[message_id]).await
}

/// Sets a part's receipt, unless it already has a final one.
async fn apply(
    conn: &mut PgConnection,
    message_id: Uuid,
    part: i16,
    r: &ReceiptRow,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE dispatcher.smpp_parts SET state = $3, error = $4, reason = $5
          WHERE message_id = $1 AND part = $2 AND (state IS NULL OR state IN (1, 6))",
        message_id,
        part,
        i16::from(r.state.code()),
        r.error,
        r.reason.map(Reason::as_str),
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// What a receipt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    /// It matched a part (or several, of these messages).
    Matched(Vec<Uuid>),
    /// It matched nothing yet: kept for its part.
    Waiting,
}

/// Applies a receipt to the part whose id it quotes, or keeps it until that part is recorded.
/// Returns what it did and the status events of the messages it settled.
pub(crate) async fn receipt(
    conn: &mut PgConnection,
    outbox: &Outbox,
    connection: &str,
    contact: &str,
    id: &SmscId,
    r: &ReceiptRow,
) -> Result<(Applied, Vec<Encoded>), sqlx::Error> {
    let forms = id.forms();
    let mut parts = matching(conn, connection, &forms).await?;
    if parts.is_empty() {
        // Its part may be committing now: once the lock is ours, it is either visible or its
        // transaction will find this receipt.
        lock_waiting(conn, connection).await?;
        parts = matching(conn, connection, &forms).await?;
    }
    if parts.is_empty() {
        sqlx::query!(
            "INSERT INTO dispatcher.smpp_receipts
                 (connection, id_text, id_hex, id_decimal, state, error, reason, contact)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            connection,
            forms.text,
            forms.hex_value,
            forms.decimal_value,
            i16::from(r.state.code()),
            r.error,
            r.reason.map(Reason::as_str),
            contact,
        )
        .execute(&mut *conn)
        .await?;
        return Ok((Applied::Waiting, Vec::new()));
    }
    // Every part of these messages locked, in one order: receipts for a message's parts
    // applied at once would each see the others still open, and none would settle it.
    let mut messages: Vec<Uuid> = parts.iter().map(|(m, _)| *m).collect();
    messages.sort_unstable();
    messages.dedup();
    sqlx::query!(
        "SELECT message_id FROM dispatcher.smpp_parts WHERE message_id = ANY($1)
          ORDER BY message_id, part FOR UPDATE",
        &messages
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut changed = Vec::new();
    for (message_id, part) in &parts {
        if apply(conn, *message_id, *part, r).await? && !changed.contains(message_id) {
            changed.push(*message_id);
        }
    }
    let events = settle(conn, outbox, &changed).await?;
    Ok((
        Applied::Matched(parts.into_iter().map(|(m, _)| m).collect()),
        events,
    ))
}

/// Serializes keeping a receipt with recording parts, per connection.
async fn lock_waiting(conn: &mut PgConnection, connection: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtext('smpp-receipts:' || $1))",
        connection
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(())
}

/// The parts an id quotes: in the form answered first, then across radixes.
async fn matching(
    conn: &mut PgConnection,
    connection: &str,
    forms: &sms_smpp::id::IdForms,
) -> Result<Vec<(Uuid, i16)>, sqlx::Error> {
    let same = sqlx::query!(
        "SELECT message_id, part FROM dispatcher.smpp_parts
          WHERE connection = $1 AND id_text = $2",
        connection,
        forms.text,
    )
    .fetch_all(&mut *conn)
    .await?;
    if !same.is_empty() {
        return Ok(same.into_iter().map(|p| (p.message_id, p.part)).collect());
    }
    let across = sqlx::query!(
        "SELECT message_id, part FROM dispatcher.smpp_parts
          WHERE connection = $1
            AND ((id_hex IS NOT NULL AND id_hex = $2) OR (id_decimal IS NOT NULL AND id_decimal = $3))",
        connection,
        forms.decimal_value,
        forms.hex_value,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(across.into_iter().map(|p| (p.message_id, p.part)).collect())
}

/// How bad a part's outcome is: the message takes its worst part's.
fn severity(status: Status) -> u8 {
    match status {
        Status::Delivered => 0,
        Status::Undelivered => 1,
        _ => 2,
    }
}

/// The status events of the messages among `ids` whose parts all have a final receipt.
async fn settle(
    conn: &mut PgConnection,
    outbox: &Outbox,
    ids: &[Uuid],
) -> Result<Vec<Encoded>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query!(
        r#"SELECT p.message_id, p.parts, p.state, p.error, p.reason, p.connection,
                  s.organization_id, s.carrier_sid, s.message
             FROM dispatcher.smpp_parts p
             JOIN dispatcher.sends s ON s.message_id = p.message_id
            WHERE p.message_id = ANY($1)
            ORDER BY p.message_id, p.part"#,
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    for id in ids {
        let parts: Vec<_> = rows.iter().filter(|r| r.message_id == *id).collect();
        let Some(first) = parts.first() else { continue };
        if parts.len() != usize::try_from(first.parts).unwrap_or(0) {
            continue;
        }
        let mut worst: Option<(Status, Option<Reason>, Option<u32>)> = None;
        let mut unknown = false;
        for p in &parts {
            let Some(state) = p
                .state
                .and_then(|s| u8::try_from(s).ok())
                .and_then(MessageState::from_code)
                .filter(|s| is_final(*s))
            else {
                // A part still on its way: not settled yet.
                worst = None;
                unknown = true;
                break;
            };
            let reason = p.reason.as_deref().and_then(Reason::parse);
            let Some((status, reason)) = state.ours(reason) else {
                unknown = true;
                continue;
            };
            let code = p.error.as_deref().and_then(|e| e.parse::<u32>().ok());
            if worst.is_none_or(|(w, _, _)| severity(status) > severity(w)) {
                worst = Some((status, reason, code));
            }
        }
        let Some((status, reason, code)) = worst.filter(|_| !unknown) else {
            continue;
        };
        let to = first
            .message
            .as_deref()
            .and_then(|m| OutboundMessage::decode(m).ok())
            .map(|m| m.to)
            .unwrap_or_default();
        let record = CarrierRecord {
            sid: first.carrier_sid.clone().unwrap_or_default(),
            from: String::new(),
            to,
            body: String::new(),
            status: Some(status),
            error_code: code,
            reason: reason.or_else(|| status.is_error().then_some(Reason::UnknownCarrierError)),
            created_at: chrono::Utc::now(),
        };
        if let Some(event) = crate::events::from_record(
            &first.organization_id,
            &id.to_string(),
            &first.connection,
            &record,
        ) {
            events.push(outbox.encode(&event));
        }
    }
    Ok(events)
}

/// How long a contact's message (or part) taken is remembered, so that the SMSC sending it
/// again (our answer lost) does not deliver it twice.
pub(crate) const MO_REPEAT_WINDOW_SECS: f64 = 300.0;

/// Whether this contact's message (or part), named by `key`, is new: `false` when the same was
/// taken within [`MO_REPEAT_WINDOW_SECS`].
pub(crate) async fn mo_first_time(
    conn: &mut PgConnection,
    connection: &str,
    key: &str,
) -> Result<bool, sqlx::Error> {
    let new = sqlx::query_scalar!(
        "INSERT INTO dispatcher.smpp_mo_seen (connection, key) VALUES ($1, $2)
         ON CONFLICT (connection, key) DO UPDATE SET seen_at = now()
            WHERE smpp_mo_seen.seen_at < now() - make_interval(secs => $3)
         RETURNING 1 AS one",
        connection,
        key,
        MO_REPEAT_WINDOW_SECS
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(new.is_some())
}

/// Forgets what was taken before the window.
pub(crate) async fn forget_seen(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM dispatcher.smpp_mo_seen
          WHERE seen_at < now() - make_interval(secs => $1)",
        MO_REPEAT_WINDOW_SECS
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A contact's message part; returns the whole text (and how many parts it came in) once every
/// part is in, removing them.
pub(crate) async fn mo_part(
    conn: &mut PgConnection,
    key: &MoKey<'_>,
    seq: u8,
    text: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query!(
        "INSERT INTO dispatcher.smpp_mo_parts
             (connection, contact, ours, reference, total, seq, text)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING",
        key.connection,
        key.contact,
        key.ours,
        i32::from(key.reference),
        i16::from(key.total),
        i16::from(seq),
        text,
    )
    .execute(&mut *conn)
    .await?;
    let parts = sqlx::query!(
        "SELECT seq, text FROM dispatcher.smpp_mo_parts
          WHERE connection = $1 AND contact = $2 AND ours = $3 AND reference = $4 AND total = $5
          FOR UPDATE",
        key.connection,
        key.contact,
        key.ours,
        i32::from(key.reference),
        i16::from(key.total),
    )
    .fetch_all(&mut *conn)
    .await?;
    let whole = sms_smpp::mo::assemble(
        key.total,
        parts
            .iter()
            .filter_map(|p| u8::try_from(p.seq).ok().map(|s| (s, p.text.as_str()))),
    );
    if whole.is_some() {
        sqlx::query!(
            "DELETE FROM dispatcher.smpp_mo_parts
              WHERE connection = $1 AND contact = $2 AND ours = $3 AND reference = $4 AND total = $5",
            key.connection,
            key.contact,
            key.ours,
            i32::from(key.reference),
            i16::from(key.total),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(whole)
}

/// Which message a contact's part belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MoKey<'a> {
    pub connection: &'a str,
    pub contact: &'a str,
    pub ours: &'a str,
    pub reference: u16,
    pub total: u8,
}

/// A message some of whose parts never came.
#[derive(Debug, Clone)]
pub(crate) struct Incomplete {
    pub connection: String,
    pub contact: String,
    pub ours: String,
    pub total: u8,
    /// The parts that came, in order, with the gaps marked.
    pub text: String,
}

/// Takes the contacts' messages whose parts stopped coming more than `after` ago: what came
/// of each, with `[…]` where a part is missing.
pub(crate) async fn incomplete(
    conn: &mut PgConnection,
    after: std::time::Duration,
) -> Result<Vec<Incomplete>, sqlx::Error> {
    let secs = after.as_secs_f64();
    let rows = sqlx::query!(
        r#"WITH old AS (
               SELECT connection, contact, ours, reference, total
                 FROM dispatcher.smpp_mo_parts
                GROUP BY connection, contact, ours, reference, total
               HAVING max(received_at) < now() - make_interval(secs => $1)
                LIMIT 100)
           DELETE FROM dispatcher.smpp_mo_parts m
            USING old
            WHERE m.connection = old.connection AND m.contact = old.contact AND m.ours = old.ours
              AND m.reference = old.reference AND m.total = old.total
           RETURNING m.connection, m.contact, m.ours, m.reference, m.total, m.seq, m.text"#,
        secs
    )
    .fetch_all(&mut *conn)
    .await?;
    // One message per key, its parts in the order of their numbers.
    let mut out: Vec<Incomplete> = Vec::new();
    let mut keys: Vec<(String, String, String, i32, i16)> = Vec::new();
    for r in &rows {
        let key = (
            r.connection.clone(),
            r.contact.clone(),
            r.ours.clone(),
            r.reference,
            r.total,
        );
        if keys.contains(&key) {
            continue;
        }
        let mut text = String::new();
        for seq in 1..=r.total {
            let part = rows.iter().find(|p| {
                (
                    &p.connection,
                    &p.contact,
                    &p.ours,
                    p.reference,
                    p.total,
                    p.seq,
                ) == (&key.0, &key.1, &key.2, key.3, key.4, seq)
            });
            match part {
                Some(p) => text.push_str(&p.text),
                None => text.push_str("[…]"),
            }
        }
        out.push(Incomplete {
            connection: key.0.clone(),
            contact: key.1.clone(),
            ours: key.2.clone(),
            total: u8::try_from(key.4).unwrap_or(u8::MAX),
            text,
        });
        keys.push(key);
    }
    Ok(out)
}

/// Drops receipts that matched nothing for longer than `after` (ids we never sent, or whose
/// part was never recorded); returns them for the log: (connection, id, contact).
pub(crate) async fn stale_receipts(
    conn: &mut PgConnection,
    after: std::time::Duration,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    let rows = sqlx::query!(
        "DELETE FROM dispatcher.smpp_receipts
          WHERE seq IN (SELECT seq FROM dispatcher.smpp_receipts
                         WHERE received_at < now() - make_interval(secs => $1) LIMIT 1000)
          RETURNING connection, id_text, contact",
        after.as_secs_f64()
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.connection, r.id_text, r.contact))
        .collect())
}
