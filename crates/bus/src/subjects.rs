//! Every subject, stream and durable consumer name, built in one place.
//!
//! Subjects are `{ns}.…`; the namespace lets several deployments, or parallel tests, share one
//! NATS server without seeing each other's events.

use sms_core::Status;

/// Subjects and stream names of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    ns: String,
}

impl Subjects {
    /// Subjects under `ns` (letters, digits, `-` and `_`; validated by the runtime config).
    pub fn new(ns: impl Into<String>) -> Self {
        Subjects { ns: ns.into() }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// `{ns}.msg.accepted.<partition>`: a message to send now, on its sender's dispatch
    /// partition ([`dispatch_partition`]).
    pub fn msg_accepted(&self, partition: u16) -> String {
        format!("{}.msg.accepted.{partition}", self.ns)
    }

    /// `{ns}.msg.accepted.*`: every message to send now.
    pub fn msg_accepted_all(&self) -> String {
        format!("{}.msg.accepted.*", self.ns)
    }

    /// `{ns}.msg.scheduled`: a message to send later.
    pub fn msg_scheduled(&self) -> String {
        format!("{}.msg.scheduled", self.ns)
    }

    /// `{ns}.scheduler.command`: cancel / reschedule requests, answered by one scheduler.
    pub fn scheduler_command(&self) -> String {
        format!("{}.scheduler.command", self.ns)
    }

    /// `{ns}.msg.autoreply`: a keyword answer the composer sends.
    pub fn msg_autoreply(&self) -> String {
        format!("{}.msg.autoreply", self.ns)
    }

    /// `{ns}.msg.optout`: a recipient of a message of ours unsubscribed at the carrier (the
    /// composer says so once it has applied the carrier's failure to that message).
    pub fn msg_optout(&self) -> String {
        format!("{}.msg.optout", self.ns)
    }

    /// `{ns}.msg.inbound`: an inbound message stored on its conversation (for the CRM).
    pub fn msg_inbound(&self) -> String {
        format!("{}.msg.inbound", self.ns)
    }

    /// `{ns}.msg.check`: the composer asks the dispatcher where a message stands at the carrier.
    pub fn msg_check(&self) -> String {
        format!("{}.msg.check", self.ns)
    }

    /// `{ns}.msg.due.<partition>`: a scheduled message whose time has come, on its sender's
    /// dispatch partition.
    pub fn msg_due(&self, partition: u16) -> String {
        format!("{}.msg.due.{partition}", self.ns)
    }

    /// `{ns}.msg.due.*`: every scheduled message whose time has come.
    pub fn msg_due_all(&self) -> String {
        format!("{}.msg.due.*", self.ns)
    }

    /// `{ns}.status.<status>`: a status change.
    pub fn status(&self, status: Status) -> String {
        format!("{}.status.{}", self.ns, status.as_str())
    }

    /// `{ns}.signal.feed`: the event feed was written (core NATS, no payload, may be lost: a
    /// wake-up for the feed's readers, who also look on their own every quarter second).
    pub fn feed_written(&self) -> String {
        format!("{}.signal.feed", self.ns)
    }

    /// `{ns}.status.*`: every status change.
    pub fn status_all(&self) -> String {
        format!("{}.status.*", self.ns)
    }

    /// `{ns}.inbound.received`: a message from a contact.
    pub fn inbound_received(&self) -> String {
        format!("{}.inbound.received", self.ns)
    }

    /// `{ns}.state.<kind>.<org>.<number>`: the current state of one key (compacted: the
    /// stream keeps only the last message of each subject). The organization id is hex-encoded
    /// so that any id is a single subject token.
    pub fn state(&self, kind: StateKind, organization_id: &str, number: &str) -> String {
        let org: String = organization_id
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        let number: String = number
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '+')
            .collect();
        format!("{}.state.{}.{org}.{number}", self.ns, kind.as_str())
    }

    /// `{ns}.state.<kind>.>`: every key of one kind.
    pub fn state_all(&self, kind: StateKind) -> String {
        format!("{}.state.{}.>", self.ns, kind.as_str())
    }

    /// Subjects of the state stream.
    pub fn state_subjects(&self) -> Vec<String> {
        vec![format!("{}.state.>", self.ns)]
    }

    /// Name of the state stream, e.g. `SMS_STATE`.
    pub fn state_stream(&self) -> String {
        format!("{}_STATE", self.stream_prefix())
    }

    /// `{ns}.dlq.<consumer>`: events a consumer gave up on.
    pub fn dead_letter(&self, consumer: &str) -> String {
        format!("{}.dlq.{consumer}", self.ns)
    }

    /// Subjects of the events stream.
    pub fn event_subjects(&self) -> Vec<String> {
        ["msg", "status", "inbound"]
            .iter()
            .map(|family| format!("{}.{family}.>", self.ns))
            .collect()
    }

    /// Subjects of the dead-letter stream.
    pub fn dead_letter_subjects(&self) -> Vec<String> {
        vec![format!("{}.dlq.>", self.ns)]
    }

    /// Name of the events stream, e.g. `SMS_EVENTS`.
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.stream_prefix())
    }

    /// Name of the dead-letter stream, e.g. `SMS_DLQ`.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}_DLQ", self.stream_prefix())
    }

    fn stream_prefix(&self) -> String {
        self.ns
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// Messages to send are spread over this many dispatch partitions by their sender, so that
/// each sender's messages go through one dispatcher replica at a time (the one holding the
/// partition's lease), which can then hold the sender to its rate without asking anyone.
pub const DISPATCH_PARTITIONS: u16 = 32;

/// The dispatch partition of a sender of an organization: FNV-1a over both, stable across
/// processes and versions (it is part of the subjects on the bus).
pub fn dispatch_partition(organization_id: &str, sender: &str) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in organization_id
        .bytes()
        .chain(std::iter::once(0x1f))
        .chain(sender.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    u16::try_from(hash % u64::from(DISPATCH_PARTITIONS)).unwrap_or(0)
}

/// Kinds of compacted state that replicas keep local copies of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// Opt-out per (organization, contact number).
    OptOut,
    /// Whether a number is held per (organization, number).
    Number,
}

impl StateKind {
    /// The subject token.
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::OptOut => "optout",
            StateKind::Number => "number",
        }
    }
}

/// The durable consumers of the platform: which service reads which subject.
///
/// All replicas of a service share the durable consumer, so adding replicas adds throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerKind {
    /// Dispatcher: messages to send now, of one dispatch partition.
    DispatcherAccepted(u16),
    /// Dispatcher: scheduled messages that fell due, of one dispatch partition.
    DispatcherDue(u16),
    /// Dispatcher: the composer's questions about messages whose status stopped moving.
    DispatcherCheck,
    /// Composer: status changes applied to the message store.
    ComposerStatus,
    /// Composer: inbound messages for conversations and inboxes.
    ComposerInbound,
    /// Composer: keyword answers to send.
    ComposerAutoReply,
    /// Scheduler: messages to keep until their time.
    SchedulerScheduled,
    /// Opt-out registry: inbound keywords.
    OptOutInbound,
    /// Opt-out registry: recipients who unsubscribed at the carrier (21610), as the composer
    /// reports them for the messages they belong to.
    OptOutCarrier,
    /// Event feed: opt-out changes (the registry's state), written to the feed.
    FeedOptOut,
}

impl ConsumerKind {
    /// The durable consumer name.
    pub fn durable_name(self) -> String {
        match self {
            ConsumerKind::DispatcherAccepted(p) => format!("dispatcher-accepted-{p:02}"),
            ConsumerKind::DispatcherDue(p) => format!("dispatcher-due-{p:02}"),
            other => other.fixed_name().to_owned(),
        }
    }

    fn fixed_name(self) -> &'static str {
        match self {
            ConsumerKind::DispatcherAccepted(_) => "dispatcher-accepted",
            ConsumerKind::DispatcherDue(_) => "dispatcher-due",
            ConsumerKind::DispatcherCheck => "dispatcher-check",
            ConsumerKind::ComposerStatus => "composer-status",
            ConsumerKind::ComposerInbound => "composer-inbound",
            ConsumerKind::ComposerAutoReply => "composer-autoreply",
            ConsumerKind::SchedulerScheduled => "scheduler-scheduled",
            ConsumerKind::OptOutInbound => "optout-inbound",
            ConsumerKind::OptOutCarrier => "optout-carrier",
            // The name from when the composer wrote these entries: an upgrade goes on from
            // where it was.
            ConsumerKind::FeedOptOut => "composer-optout-feed",
        }
    }

    /// The subject the consumer filters on.
    pub fn filter_subject(self, s: &Subjects) -> String {
        match self {
            ConsumerKind::DispatcherAccepted(p) => s.msg_accepted(p),
            ConsumerKind::DispatcherDue(p) => s.msg_due(p),
            ConsumerKind::DispatcherCheck => s.msg_check(),
            ConsumerKind::ComposerStatus => s.status_all(),
            ConsumerKind::OptOutCarrier => s.msg_optout(),
            ConsumerKind::ComposerInbound | ConsumerKind::OptOutInbound => s.inbound_received(),
            ConsumerKind::SchedulerScheduled => s.msg_scheduled(),
            ConsumerKind::ComposerAutoReply => s.msg_autoreply(),
            ConsumerKind::FeedOptOut => s.state_all(StateKind::OptOut),
        }
    }

    /// Whether it reads the state stream (the latest value per key) rather than the events.
    pub fn on_state(self) -> bool {
        matches!(self, ConsumerKind::FeedOptOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // Part of the subjects on the bus: must never change for a sender.
        assert_eq!(
            dispatch_partition("org-a", "+12015550100"),
            dispatch_partition("org-a", "+12015550100")
        );
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000 {
            let p = dispatch_partition("org-a", &format!("+1201555{i:04}"));
            assert!(p < DISPATCH_PARTITIONS);
            seen.insert(p);
        }
        assert_eq!(
            seen.len(),
            usize::from(DISPATCH_PARTITIONS),
            "every partition gets senders"
        );
    }

    #[test]
    fn names_are_namespaced() {
        let s = Subjects::new("t-42");
        assert_eq!(s.msg_accepted(7), "t-42.msg.accepted.7");
        assert_eq!(
            ConsumerKind::DispatcherDue(3).durable_name(),
            "dispatcher-due-03"
        );
        assert_eq!(
            ConsumerKind::DispatcherAccepted(3).filter_subject(&s),
            "t-42.msg.accepted.3"
        );
        assert_eq!(s.status(Status::Delivered), "t-42.status.delivered");
        assert_eq!(s.events_stream(), "T_42_EVENTS");
        assert_eq!(s.dead_letter("dispatcher-due"), "t-42.dlq.dispatcher-due");
        assert_eq!(
            ConsumerKind::ComposerStatus.filter_subject(&s),
            "t-42.status.*"
        );
        assert_eq!(
            s.state(StateKind::OptOut, "org.a b", "+1 201-555"),
            "t-42.state.optout.6f72672e612062.+1201555"
        );
        assert_eq!(s.state_stream(), "T_42_STATE");
    }
}
