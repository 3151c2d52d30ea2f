//! `sms.v1.EventsService`: the organization's event feed, streamed.

use std::pin::Pin;

use futures::Stream;
use sms_proto::v1::events_service_server::EventsService;
use sms_proto::v1::{SubscribeRequest, SubscribeResponse};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

/// Events buffered per subscriber before the feed waits for it to read.
const BUFFER: usize = 256;

/// `sms.v1.EventsService`.
#[derive(Clone)]
pub struct EventsApi {
    auth: sms_runtime::rpc::Auth,
    feed: crate::feed::Feed,
}

impl EventsApi {
    /// The service over its capabilities, its calls authenticated by `auth`.
    pub fn new(auth: sms_runtime::rpc::Auth, feed: crate::feed::Feed) -> Self {
        EventsApi { auth, feed }
    }
}

type FeedStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventsService for EventsApi {
    type SubscribeStream = FeedStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<FeedStream>, Status> {
        let span = sms_runtime::rpc::span("Subscribe", request.metadata());
        let caller = self.auth.caller(request.metadata())?;
        let r = request.get_ref();
        let from = self
            .feed
            .feed_start(&caller, &r.cursor, r.from_start)
            .instrument(span.clone())
            .await?;
        let (out, events) = tokio::sync::mpsc::channel(BUFFER);
        tokio::spawn(
            self.feed
                .clone()
                .feed_pump(caller.organization_id.clone(), from, out)
                .instrument(span),
        );
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(events),
        )))
    }
}
