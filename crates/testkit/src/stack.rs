//! A test's platform: every service in-process on its own database and namespace, with
//! clients for its APIs and ways to wait for what it does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sms_bus::permissions::Service;
use sms_bus::{Bus, BusConfig};
use sms_carrier_sim::Sim;
use sms_dispatcher::{Carrier, Twilio};
use sms_proto::v1::messaging_service_client::MessagingServiceClient;
use sms_proto::v1::numbers_service_client::NumbersServiceClient;
use sms_proto::v1::opt_outs_service_client::OptOutsServiceClient;
use sms_proto::v1::templates_service_client::TemplatesServiceClient;
use sms_proto::v1::{
    AddNumberRequest, GetMessageRequest, Message, MessageStatus, add_number_request,
};
use sms_runtime::CommonConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::carrier::CountingCarrier;
use crate::options::Options;
use crate::requests::{as_caller, as_user, eventually, post_form, twilio_signature};
use crate::setup::{
    ACCOUNT_SID, AUTH_TOKEN, ORG, OTHER_ACCOUNT_SID, OTHER_AUTH_TOKEN, USER, common_config,
    fresh_database, fresh_namespace,
};

use crate::NATS_URL;
use crate::init_tracing;

/// One dispatcher instance in a [`Stack`].
pub struct DispatcherHandle {
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: JoinHandle<anyhow::Result<()>>,
    /// Its carrier calls.
    pub carrier: Arc<CountingCarrier>,
}

/// Every service of the platform, in-process, on an isolated database and namespace.
pub struct Stack {
    /// The database URL.
    pub database_url: String,
    /// The subject namespace.
    pub namespace: String,
    /// The carrier simulator.
    pub sim: Sim,
    /// Its base URL.
    pub sim_url: String,
    /// Its SMSC's address.
    pub smpp_addr: String,
    /// The inbound receiver's base URL (also the public URL).
    pub inbound_url: String,
    /// The composer's gRPC endpoint.
    pub grpc_url: String,
    /// The opt-out registry's gRPC endpoint.
    pub optout_url: String,
    /// The feed service's gRPC endpoint.
    pub feed_url: String,
    /// Where carriers fetch attachments.
    pub media_url: String,
    /// A bus connection for assertions.
    pub bus: Bus,
    /// Dispatcher instances.
    pub dispatchers: Vec<DispatcherHandle>,
    /// Scheduler instances.
    pub schedulers: Vec<JoinHandle<anyhow::Result<()>>>,
    pub(crate) options: Options,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

/// A loopback listener with the services' accept backlog (see [`sms_runtime::health::BACKLOG`]).
pub(crate) async fn listener() -> TcpListener {
    sms_runtime::health::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

impl Stack {
    /// All services with default options.
    pub async fn start() -> Stack {
        Stack::start_with(Options::default()).await
    }

    /// All services.
    pub async fn start_with(options: Options) -> Stack {
        init_tracing();
        let database_url = fresh_database().await;
        let namespace = options.namespace.clone().unwrap_or_else(fresh_namespace);
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();

        let sim_listener = listener().await;
        let sim_url = format!("http://{}", sim_listener.local_addr().unwrap());
        let mut sim_config = options.sim.clone();
        if options.smpp.is_some() {
            sim_config.behaviour.smpp.all_numbers = true;
        }
        let sim = Sim::new(sim_config).unwrap();
        tasks.push(tokio::spawn(
            sim.clone().serve(sim_listener, shutdown.clone()),
        ));
        let smpp_listener = listener().await;
        let smpp_addr = smpp_listener.local_addr().unwrap().to_string();
        tasks.push(tokio::spawn(
            sim.clone().serve_smpp(smpp_listener, shutdown.clone()),
        ));

        let inbound_listener = listener().await;
        let inbound_url = format!("http://{}", inbound_listener.local_addr().unwrap());
        sim.set_incoming_url(&format!("{inbound_url}/webhooks/twilio/incoming"));
        let grpc_listener = listener().await;
        let grpc_url = format!("http://{}", grpc_listener.local_addr().unwrap());
        let media_listener = listener().await;
        let media_url = format!("http://{}", media_listener.local_addr().unwrap());
        let optout_listener = listener().await;
        let optout_url = format!("http://{}", optout_listener.local_addr().unwrap());
        let feed_listener = listener().await;
        let feed_url = format!("http://{}", feed_listener.local_addr().unwrap());

        let mut stack = Stack {
            bus: Bus::connect(match &options.nats {
                None => BusConfig::new(NATS_URL, &namespace),
                Some(n) => {
                    let mut c = BusConfig::new(n.url.clone(), &namespace);
                    c.auth = n.admin.clone();
                    c
                }
            })
            .await
            .unwrap(),
            database_url,
            namespace,
            sim,
            sim_url,
            smpp_addr,
            inbound_url,
            grpc_url,
            optout_url,
            feed_url,
            media_url,
            dispatchers: Vec::new(),
            schedulers: Vec::new(),
            options,
            shutdown: shutdown.clone(),
            tasks,
        };
        let common = stack.common_for(Service::Composer);
        let sim_host = stack.sim_url.trim_start_matches("http://").to_owned();
        let allow_private: Vec<String> = std::iter::once(sim_host.clone())
            .chain(stack.options.fetch_allow_private.iter().cloned())
            .collect();
        let webhooks = sms_feed::WebhookConfig {
            retries: stack.options.webhook_retries.clone(),
            timeout: stack.options.webhook_timeout,
            disable_after: stack.options.webhook_disable_after,
            allow_http: true,
            allow_private: allow_private.clone(),
        };
        let composer = sms_composer::Config {
            common: common.clone(),
            health_addr: None,
            api_tokens: stack.options.api_tokens.clone(),
            schedule_horizon_days: 365,
            media: sms_composer::media::MediaConfig {
                public_url: stack.media_url.clone(),
                secret: b"test-media-secret-0123456789".to_vec(),
                carriers: HashMap::from([(
                    ACCOUNT_SID.to_owned(),
                    sms_composer::media::CarrierAccount {
                        auth_token: AUTH_TOKEN.to_owned(),
                        media_hosts: vec![sim_host.clone()],
                    },
                )]),
            },
            // Development: http, and the simulator's loopback host (plus the tests' own
            // servers, when a test names them) are fetched; nothing else on loopback is.
            fetch: sms_runtime::fetch::FetchPolicy {
                allow_http: true,
                allow_private: allow_private.clone(),
                ..sms_runtime::fetch::FetchPolicy::strict(sms_composer::media::MAX_FETCH)
            },
            status_check: stack.options.status_check,
            smpp_default: stack.options.smpp.is_some() && stack.options.smpp_default,
            carrier_connections: std::iter::once(sms_dispatcher::TWILIO_CONNECTION.to_owned())
                .chain(stack.options.smpp.iter().map(|c| c.session.name.clone()))
                .collect(),
            carrier: Some(sms_numbers::CarrierConfig {
                api_url: stack.sim_url.clone(),
                account_sid: ACCOUNT_SID.to_owned(),
                auth_token: AUTH_TOKEN.to_owned(),
                public_url: stack.inbound_url.clone(),
                timeout: stack.options.carrier_timeout,
                release_retry: Duration::from_millis(500),
            }),
            webhooks: webhooks.clone(),
        };
        stack.tasks.push(tokio::spawn(sms_composer::run(
            composer,
            grpc_listener,
            media_listener,
            shutdown.clone(),
        )));
        // The feed service on a port of its own (its gRPC services are the composer's too).
        let feed = sms_feed::Config {
            common: stack.common_for(Service::Feed),
            health_addr: None,
            api_tokens: stack.options.api_tokens.clone(),
            feed_retention: sms_feed::DEFAULT_RETENTION,
            webhooks,
        };
        stack.tasks.push(tokio::spawn(sms_feed::run(
            feed,
            Some(feed_listener),
            shutdown.clone(),
        )));
        let inbound = sms_inbound::Config {
            common: stack.common_for(Service::Inbound),
            public_url: stack.inbound_url.clone(),
            twilio_accounts: HashMap::from([
                (ACCOUNT_SID.to_owned(), AUTH_TOKEN.to_owned()),
                (OTHER_ACCOUNT_SID.to_owned(), OTHER_AUTH_TOKEN.to_owned()),
            ]),
            patience: std::time::Duration::from_secs(8),
        };
        stack.tasks.push(tokio::spawn(sms_inbound::run(
            inbound,
            inbound_listener,
            shutdown.clone(),
        )));
        for _ in 0..stack.options.schedulers {
            stack.start_scheduler();
        }
        let optout = sms_optout::Config {
            common: stack.common_for(Service::OptOut),
            health_addr: None,
            api_tokens: stack.options.api_tokens.clone(),
        };
        stack.tasks.push(tokio::spawn(sms_optout::run(
            optout,
            optout_listener,
            shutdown.clone(),
        )));
        for _ in 0..stack.options.dispatchers {
            stack.start_dispatcher();
        }
        stack.wait_until_ready().await;
        stack
    }

    /// `service`'s settings: this stack's database and namespace, and its NATS user when the
    /// stack has a NATS of its own.
    pub(crate) fn common_for(&self, service: Service) -> CommonConfig {
        let mut c = common_config(
            &self.namespace,
            &self.database_url,
            self.options.db_max_connections,
            self.options.ack_wait,
        );
        if let Some(n) = &self.options.nats {
            c.nats_url = n.url.clone();
            c.nats_auth = n.users.get(&service).cloned().unwrap_or_default();
        }
        c
    }

    /// Starts one more scheduler instance.
    pub fn start_scheduler(&mut self) {
        let config = sms_scheduler::Config {
            common: self.common_for(Service::Scheduler),
            health_addr: None,
            batch: 1000,
            poll: Duration::from_secs(1),
            late_after: Duration::from_secs(5),
        };
        self.schedulers.push(tokio::spawn(sms_scheduler::run(
            config,
            self.shutdown.child_token(),
        )));
    }

    /// Kills scheduler `index` at once, as a crash would (no graceful stop).
    pub async fn kill_scheduler(&mut self, index: usize) {
        let task = self.schedulers.remove(index);
        task.abort();
        let _ = task.await;
    }

    /// Starts one more dispatcher instance on the shared consumer.
    pub fn start_dispatcher(&mut self) {
        let config = sms_dispatcher::Config {
            common: self.common_for(Service::Dispatcher),
            health_addr: None,
            public_url: self.inbound_url.clone(),
            twilio_api_url: self
                .options
                .carrier_url
                .clone()
                .unwrap_or_else(|| self.sim_url.clone()),
            twilio_account_sid: ACCOUNT_SID.into(),
            twilio_auth_token: AUTH_TOKEN.into(),
            send_attempts: 4,
            carrier_timeout: self.options.carrier_timeout,
            in_doubt_after: self.options.in_doubt_after,
            callback_overrides: self.options.callback_overrides.clone(),
            account_rate: self.options.account_rate,
            partition_lease: self.options.partition_lease,
            smpp_default: self.options.smpp.is_some() && self.options.smpp_default,
            smpp: self.options.smpp.clone().map(|mut c| {
                // A test's own SMSC when it names one; the simulator's otherwise.
                if c.session.addr.is_empty() {
                    c.session.addr.clone_from(&self.smpp_addr);
                }
                c
            }),
            mo_part_timeout: self.options.mo_part_timeout,
        };
        let http = sms_runtime::http_client(config.carrier_timeout).unwrap();
        let twilio: Arc<dyn Carrier> = Arc::new(Twilio::new(
            http,
            &config.twilio_api_url,
            ACCOUNT_SID,
            AUTH_TOKEN,
        ));
        let smpp: Option<(String, Arc<dyn Carrier>)> = config.smpp.as_ref().map(|c| {
            let carrier: Arc<dyn Carrier> = Arc::new(sms_dispatcher::smpp::Smpp::new(
                c.clone(),
                config.carrier_timeout,
            ));
            (c.session.name.clone(), carrier)
        });
        // The default carrier is counted (and its calls can be lost on cue).
        let smpp_default = smpp.is_some() && self.options.smpp_default;
        let inner = match (&smpp, smpp_default) {
            (Some((_, c)), true) => c.clone(),
            _ => twilio.clone(),
        };
        let resolution = if smpp_default {
            inner.resolution()
        } else {
            self.options.carrier_resolution
        };
        let carrier = Arc::new(CountingCarrier {
            inner,
            calls: AtomicU64::new(0),
            lose: std::sync::atomic::AtomicU32::new(0),
            resolution,
        });
        let counted: Arc<dyn Carrier> = carrier.clone();
        let carriers = match smpp {
            Some((name, _)) if smpp_default => sms_dispatcher::Carriers::new(&name, counted)
                .with(sms_dispatcher::TWILIO_CONNECTION, twilio),
            Some((name, smpp)) => {
                sms_dispatcher::Carriers::new(sms_dispatcher::TWILIO_CONNECTION, counted)
                    .with(&name, smpp)
            }
            None => sms_dispatcher::Carriers::new(sms_dispatcher::TWILIO_CONNECTION, counted),
        };
        let shutdown = self.shutdown.child_token();
        let task = tokio::spawn(sms_dispatcher::run_with_carriers(
            config,
            carriers,
            shutdown.clone(),
        ));
        self.dispatchers.push(DispatcherHandle {
            shutdown,
            task,
            carrier,
        });
    }

    /// Stops dispatcher `index` gracefully (finishing what it has in hand) and waits for it.
    pub async fn stop_dispatcher(&mut self, index: usize) -> u64 {
        let d = self.dispatchers.remove(index);
        d.shutdown.cancel();
        d.task.await.unwrap().unwrap();
        d.carrier.calls.load(Ordering::Relaxed)
    }

    pub(crate) async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(self.grpc_url.clone())
                .unwrap()
                .connect()
                .await
            {
                drop(channel);
                // The consumers exist once every service has connected and the dispatchers hold
                // every partition. (With no dispatcher, nobody creates the dispatcher's.)
                let mut names = vec![sms_bus::ConsumerKind::ComposerStatus.durable_name()];
                if self.options.dispatchers > 0 {
                    for p in 0..sms_bus::DISPATCH_PARTITIONS {
                        names.push(sms_bus::ConsumerKind::DispatcherAccepted(p).durable_name());
                        names.push(sms_bus::ConsumerKind::DispatcherDue(p).durable_name());
                    }
                }
                let stream = self
                    .bus
                    .jetstream()
                    .get_stream(self.bus.subjects().events_stream())
                    .await;
                if let Ok(stream) = stream {
                    let mut all = true;
                    for name in &names {
                        all &= stream
                            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(name)
                            .await
                            .is_ok();
                    }
                    if all {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "the stack did not start within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the dispatchers running hold every dispatch partition between them, each
    /// its fair share (the lease rounds take a few seconds after a replica starts or stops,
    /// longer while the whole suite loads the machine).
    pub async fn wait_partitions_shared(&self) {
        let replicas = self.dispatchers.len() as i64;
        let total = i64::from(sms_bus::DISPATCH_PARTITIONS);
        let db = sqlx::PgPool::connect(&self.database_url).await.unwrap();
        eventually(Duration::from_secs(90), "the partitions shared", || {
            let db = db.clone();
            async move {
                let held: Vec<i64> = sqlx::query_scalar(
                    "SELECT count(*) FROM dispatcher.partitions
                     WHERE lease_until > now() AND owner IS NOT NULL GROUP BY owner",
                )
                .fetch_all(&db)
                .await
                .ok()?;
                let fair = (total + replicas - 1) / replicas.max(1);
                (held.len() as i64 == replicas
                    && held.iter().sum::<i64>() == total
                    && held.iter().all(|h| *h <= fair))
                .then_some(())
            }
        })
        .await;
    }

    /// A channel to the composer.
    pub async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(self.grpc_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A Messaging client (large enough for attachments).
    pub async fn messaging(&self) -> MessagingServiceClient<Channel> {
        MessagingServiceClient::new(self.channel().await)
            .max_decoding_message_size(sms_composer::MAX_GRPC_MESSAGE)
            .max_encoding_message_size(sms_composer::MAX_GRPC_MESSAGE)
    }

    /// A Numbers client.
    pub async fn numbers(&self) -> NumbersServiceClient<Channel> {
        NumbersServiceClient::new(self.channel().await)
    }

    /// An OptOuts client.
    pub async fn opt_outs(&self) -> OptOutsServiceClient<Channel> {
        OptOutsServiceClient::new(
            tonic::transport::Endpoint::from_shared(self.optout_url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        )
    }

    /// The URL the carrier posts incoming messages to.
    pub fn incoming_url(&self) -> String {
        format!("{}/webhooks/twilio/incoming", self.inbound_url)
    }

    /// A Contacts client.
    pub async fn contacts(
        &self,
    ) -> sms_proto::v1::contacts_service_client::ContactsServiceClient<Channel> {
        sms_proto::v1::contacts_service_client::ContactsServiceClient::new(self.channel().await)
    }

    /// A channel to the feed service.
    pub async fn feed_channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(self.feed_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A Webhooks client, on the feed service.
    pub async fn webhooks(
        &self,
    ) -> sms_proto::v1::webhooks_service_client::WebhooksServiceClient<Channel> {
        sms_proto::v1::webhooks_service_client::WebhooksServiceClient::new(
            self.feed_channel().await,
        )
    }

    /// An Events client, on the feed service.
    pub async fn events(
        &self,
    ) -> sms_proto::v1::events_service_client::EventsServiceClient<Channel> {
        sms_proto::v1::events_service_client::EventsServiceClient::new(self.feed_channel().await)
    }

    /// A Settings client.
    pub async fn settings(
        &self,
    ) -> sms_proto::v1::settings_service_client::SettingsServiceClient<Channel> {
        sms_proto::v1::settings_service_client::SettingsServiceClient::new(self.channel().await)
    }

    /// A Templates client.
    pub async fn templates(&self) -> TemplatesServiceClient<Channel> {
        TemplatesServiceClient::new(self.channel().await)
    }

    /// Adds a number owned by [`USER`] of [`ORG`].
    pub async fn add_number(&self, number: &str) {
        self.add_number_as(ORG, USER, number).await;
    }

    /// Adds a number owned by `user` of `org`.
    pub async fn add_number_as(&self, org: &str, user: &str, number: &str) {
        let mut client = self.numbers().await;
        client
            .add_number(as_caller(
                AddNumberRequest {
                    number: number.into(),
                    kind: sms_proto::v1::NumberKind::Internal as i32,
                    owner: Some(add_number_request::Owner::OwnerUserId(user.into())),
                    send_rate: (!self.options.carrier_rates).then_some(10_000.0),
                    send_burst: (!self.options.carrier_rates).then_some(100_000),
                    ..Default::default()
                },
                org,
                user,
            ))
            .await
            .unwrap();
    }

    /// The message `id` as [`USER`] of [`ORG`] sees it now.
    pub async fn message(&self, id: &str) -> Message {
        self.messaging()
            .await
            .get_message(as_user(GetMessageRequest { id: id.into() }))
            .await
            .unwrap()
            .into_inner()
            .message
            .unwrap()
    }

    /// Polls GetMessage until the message is in a final status.
    pub async fn wait_final(
        &self,
        client: &mut MessagingServiceClient<Channel>,
        id: &str,
    ) -> Message {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = client
                .get_message(as_user(GetMessageRequest { id: id.into() }))
                .await
                .unwrap()
                .into_inner()
                .message
                .unwrap();
            let status = MessageStatus::try_from(m.status).unwrap();
            let done = sms_bus::status_from_proto(status).is_some_and(|s| s.is_final());
            if done {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "message {id} still {status:?} after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Both directions between `ours` and `contact`, oldest first, as [`USER`] of [`ORG`].
    pub async fn conversation(&self, ours: &str, contact: &str) -> Vec<Message> {
        self.messaging()
            .await
            .get_conversation(as_user(sms_proto::v1::GetConversationRequest {
                our_number: ours.into(),
                contact_number: contact.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .messages
    }

    /// Waits until exactly `n` of the organization's messages are delivered (counted with
    /// ListMessages, 500 a page).
    pub async fn wait_delivered(&self, n: usize) {
        let client = self.messaging().await;
        eventually(Duration::from_secs(120), "every message delivered", || {
            let mut client = client.clone();
            async move {
                let mut delivered = 0;
                let mut token = String::new();
                loop {
                    let page = client
                        .list_messages(as_user(sms_proto::v1::ListMessagesRequest {
                            status: MessageStatus::Delivered as i32,
                            page_size: 500,
                            page_token: token,
                            ..Default::default()
                        }))
                        .await
                        .unwrap()
                        .into_inner();
                    delivered += page.messages.len();
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                }
                (delivered == n).then_some(())
            }
        })
        .await;
    }

    /// Stops everything and deletes the namespace's streams.
    pub async fn shutdown(self) {
        // The dispatchers first, while the carrier and the receiver still answer: messages in
        // flight end as they would, instead of as calls to a carrier that went away.
        for d in &self.dispatchers {
            d.shutdown.cancel();
        }
        for d in self.dispatchers {
            let _ = d.task.await;
        }
        self.shutdown.cancel();
        for s in self.schedulers {
            let _ = s.await;
        }
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.bus.delete_streams().await;
    }
}

impl Stack {
    /// POSTs `params` to the receiver's `path_and_query` (`/webhooks/twilio/…`), signed with the
    /// test account's token as Twilio signs it.
    pub async fn signed_webhook(
        &self,
        path_and_query: &str,
        params: &[(&str, &str)],
    ) -> (u16, String) {
        let url = format!("{}{path_and_query}", self.inbound_url);
        let signature = twilio_signature(AUTH_TOKEN, &url, params);
        post_form(&url, params, Some(&signature)).await
    }
}
