//! What each service may do on NATS: the subjects it publishes, the JetStream API calls of its
//! own streams and consumers, and what it subscribes to. Built from the same [`Subjects`] and
//! [`ConsumerKind`]s the services use, so the deploy configuration (`deploy/nats.yaml`'s
//! `users.conf`, checked against [`authorization`] by a test) cannot drift from the code.
//!
//! Anything not listed is denied by the server: a compromised inbound receiver cannot publish
//! `msg.accepted` (and have the dispatcher text someone), a dispatcher cannot forge opt-outs.

use crate::subjects::{ConsumerKind, DISPATCH_PARTITIONS, StateKind, Subjects};

/// A service of the platform, each with a NATS user of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The gRPC front door.
    Composer,
    /// Sends through the carrier.
    Dispatcher,
    /// Carrier webhooks.
    Inbound,
    /// Sends scheduled messages when they fall due.
    Scheduler,
    /// The opt-out registry.
    OptOut,
    /// The event feed and webhook delivery.
    Feed,
}

/// A user's permissions, as nats-server's `permissions` block says them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
    /// Whether it may answer requests sent to it (publish once to each reply subject).
    pub allow_responses: bool,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 6] = [
        Service::Composer,
        Service::Dispatcher,
        Service::Inbound,
        Service::Scheduler,
        Service::OptOut,
        Service::Feed,
    ];

    /// Its name: the NATS user's name too.
    pub fn name(self) -> &'static str {
        match self {
            Service::Composer => "composer",
            Service::Dispatcher => "dispatcher",
            Service::Inbound => "inbound",
            Service::Scheduler => "scheduler",
            Service::OptOut => "optout",
            Service::Feed => "feed",
        }
    }

    /// The durable consumers it reads.
    pub fn consumers(self) -> Vec<ConsumerKind> {
        match self {
            Service::Composer => vec![
                ConsumerKind::ComposerStatus,
                ConsumerKind::ComposerInbound,
                ConsumerKind::ComposerAutoReply,
            ],
            Service::Dispatcher => (0..DISPATCH_PARTITIONS)
                .flat_map(|p| {
                    [
                        ConsumerKind::DispatcherAccepted(p),
                        ConsumerKind::DispatcherDue(p),
                    ]
                })
                .chain([ConsumerKind::DispatcherCheck])
                .collect(),
            Service::Inbound => Vec::new(),
            Service::Scheduler => vec![ConsumerKind::SchedulerScheduled],
            Service::OptOut => vec![ConsumerKind::OptOutInbound, ConsumerKind::OptOutCarrier],
            Service::Feed => vec![ConsumerKind::FeedOptOut],
        }
    }

    /// The event subjects it publishes (its events, and the requests it sends).
    pub fn publishes(self, s: &Subjects) -> Vec<String> {
        let statuses = s.status_all();
        match self {
            Service::Composer => vec![
                s.msg_accepted_all(),
                s.msg_scheduled(),
                s.msg_check(),
                s.msg_inbound(),
                s.msg_optout(),
                statuses,
                s.state_all(StateKind::Number),
                s.scheduler_command(),
                s.feed_written(),
            ],
            Service::Dispatcher => vec![statuses],
            Service::Inbound => vec![s.inbound_received(), statuses],
            Service::Scheduler => vec![s.msg_due_all(), statuses],
            Service::OptOut => vec![s.state_all(StateKind::OptOut), s.msg_autoreply()],
            Service::Feed => vec![s.feed_written()],
        }
    }

    /// Whether it keeps a copy of the state stream (released numbers, opt-outs).
    fn reads_state(self) -> bool {
        !matches!(self, Service::Scheduler | Service::OptOut | Service::Feed)
    }

    /// Everything it may do in namespace `s`.
    pub fn permissions(self, s: &Subjects) -> Permissions {
        let api = "$JS.API";
        let mut publish = self.publishes(s);
        // Its durable consumers' dead letters.
        let consumers = self.consumers();
        publish.extend(consumers.iter().map(|c| s.dead_letter(&c.durable_name())));
        // Making sure the streams exist (every service does at start-up).
        for stream in [s.events_stream(), s.dead_letter_stream(), s.state_stream()] {
            publish.push(format!("{api}.STREAM.INFO.{stream}"));
            publish.push(format!("{api}.STREAM.CREATE.{stream}"));
        }
        // Its durable consumers, each by name (a `*` matches whole tokens only): set-up, pulls
        // and acknowledgements.
        for c in &consumers {
            let stream = if c.on_state() {
                s.state_stream()
            } else {
                s.events_stream()
            };
            let durable = c.durable_name();
            publish.push(format!("{api}.CONSUMER.INFO.{stream}.{durable}"));
            publish.push(format!("{api}.CONSUMER.CREATE.{stream}.{durable}"));
            publish.push(format!("{api}.CONSUMER.CREATE.{stream}.{durable}.>"));
            publish.push(format!("{api}.CONSUMER.DURABLE.CREATE.{stream}.{durable}"));
            publish.push(format!("{api}.CONSUMER.MSG.NEXT.{stream}.{durable}"));
            publish.push(format!("$JS.ACK.{stream}.{durable}.>"));
        }
        // Ordered (ephemeral) consumers replaying the state stream.
        if self.reads_state() {
            let state = s.state_stream();
            for op in ["CREATE", "INFO", "DELETE", "MSG.NEXT"] {
                publish.push(format!("{api}.CONSUMER.{op}.{state}.*"));
            }
            publish.push(format!("{api}.CONSUMER.CREATE.{state}.*.>"));
            // Without a name: how clients create ephemeral consumers on servers before 2.9.
            publish.push(format!("{api}.CONSUMER.CREATE.{state}"));
            publish.push(format!("$JS.ACK.{state}.*.>"));
        }
        let mut subscribe = vec!["_INBOX.>".to_owned()];
        if self == Service::Scheduler {
            subscribe.push(s.scheduler_command());
        }
        // The feed's wake-up: its readers are in both (the composer answers the feed's calls
        // too).
        if matches!(self, Service::Composer | Service::Feed) {
            subscribe.push(s.feed_written());
        }
        Permissions {
            publish,
            subscribe,
            allow_responses: self == Service::Scheduler,
        }
    }
}

/// nats-server's `authorization` block: one user per service, each with its permissions in
/// namespace `s`; `password` says how each user's password is written (a quoted secret, or a
/// `$VARIABLE` nats-server reads from its environment). `extra_users` are added as given.
pub fn authorization(
    s: &Subjects,
    password: impl Fn(Service) -> String,
    extra_users: &[String],
) -> String {
    // One subject a line, so that a change reads as one line of a diff.
    let list = |items: &[String]| -> String {
        let lines: String = items
            .iter()
            .map(|i| format!("          \"{i}\"\n"))
            .collect();
        format!("[\n{lines}        ]")
    };
    let mut out = String::from("authorization {\n  users = [\n");
    for service in Service::ALL {
        let p = service.permissions(s);
        out.push_str(&format!(
            "    {{\n      user: {}\n      password: {}\n      permissions: {{\n",
            service.name(),
            password(service)
        ));
        out.push_str(&format!(
            "        publish: {{ allow: {} }}\n",
            list(&p.publish)
        ));
        out.push_str(&format!(
            "        subscribe: {{ allow: {} }}\n",
            list(&p.subscribe)
        ));
        if p.allow_responses {
            out.push_str("        allow_responses: true\n");
        }
        out.push_str("      }\n    }\n");
    }
    for extra in extra_users {
        out.push_str(&format!("    {extra}\n"));
    }
    out.push_str("  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_consumer_belongs_to_one_service() {
        let all: Vec<ConsumerKind> = Service::ALL.iter().flat_map(|s| s.consumers()).collect();
        let mut names: Vec<String> = all.iter().map(|c| c.durable_name()).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "no consumer is read by two services");
        assert_eq!(n, 4 + 2 * usize::from(DISPATCH_PARTITIONS) + 1 + 1 + 2);
    }

    #[test]
    fn the_inbound_receiver_cannot_publish_what_the_dispatcher_sends() {
        let s = Subjects::new("sms");
        let inbound = Service::Inbound.permissions(&s);
        assert!(!inbound.publish.iter().any(|p| p.contains("msg.accepted")));
        assert!(inbound.publish.contains(&"sms.inbound.received".to_owned()));
        let dispatcher = Service::Dispatcher.permissions(&s);
        assert!(
            !dispatcher
                .publish
                .iter()
                .any(|p| p.starts_with("sms.state"))
        );
        assert!(
            dispatcher
                .publish
                .contains(&"$JS.API.CONSUMER.MSG.NEXT.SMS_EVENTS.dispatcher-due-31".to_owned())
        );
        let text = authorization(&s, |svc| format!("${}", svc.name().to_uppercase()), &[]);
        assert!(text.contains("user: scheduler") && text.contains("allow_responses: true"));
    }
}
