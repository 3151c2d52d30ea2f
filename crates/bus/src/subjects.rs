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

    /// `{ns}.msg.accepted`: a message to send now.
    pub fn msg_accepted(&self) -> String {
        format!("{}.msg.accepted", self.ns)
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

    /// `{ns}.msg.inbound`: an inbound message stored on its conversation (for the CRM).
    pub fn msg_inbound(&self) -> String {
        format!("{}.msg.inbound", self.ns)
    }

    /// `{ns}.msg.check`: the composer asks the dispatcher where a message stands at the carrier.
    pub fn msg_check(&self) -> String {
        format!("{}.msg.check", self.ns)
    }

    /// `{ns}.msg.due`: a scheduled message whose time has come.
    pub fn msg_due(&self) -> String {
        format!("{}.msg.due", self.ns)
    }

    /// `{ns}.status.<status>`: a status change.
    pub fn status(&self, status: Status) -> String {
        format!("{}.status.{}", self.ns, status.as_str())
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
    /// Dispatcher: messages to send now.
    DispatcherAccepted,
    /// Dispatcher: scheduled messages that fell due.
    DispatcherDue,
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
    /// Opt-out registry: carrier-reported opt-outs (21610) in failure statuses.
    OptOutStatus,
}

impl ConsumerKind {
    /// The durable consumer name.
    pub fn durable_name(self) -> &'static str {
        match self {
            ConsumerKind::DispatcherAccepted => "dispatcher-accepted",
            ConsumerKind::DispatcherDue => "dispatcher-due",
            ConsumerKind::DispatcherCheck => "dispatcher-check",
            ConsumerKind::ComposerStatus => "composer-status",
            ConsumerKind::ComposerInbound => "composer-inbound",
            ConsumerKind::ComposerAutoReply => "composer-autoreply",
            ConsumerKind::SchedulerScheduled => "scheduler-scheduled",
            ConsumerKind::OptOutInbound => "optout-inbound",
            ConsumerKind::OptOutStatus => "optout-status",
        }
    }

    /// The subject the consumer filters on.
    pub fn filter_subject(self, s: &Subjects) -> String {
        match self {
            ConsumerKind::DispatcherAccepted => s.msg_accepted(),
            ConsumerKind::DispatcherDue => s.msg_due(),
            ConsumerKind::DispatcherCheck => s.msg_check(),
            ConsumerKind::ComposerStatus | ConsumerKind::OptOutStatus => s.status_all(),
            ConsumerKind::ComposerInbound | ConsumerKind::OptOutInbound => s.inbound_received(),
            ConsumerKind::SchedulerScheduled => s.msg_scheduled(),
            ConsumerKind::ComposerAutoReply => s.msg_autoreply(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_namespaced() {
        let s = Subjects::new("t-42");
        assert_eq!(s.msg_accepted(), "t-42.msg.accepted");
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
