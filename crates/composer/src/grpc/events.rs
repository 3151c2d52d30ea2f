//! `sms.v1.EventsService`: the organization's event feed, streamed.

use std::pin::Pin;

use futures::Stream;
use sms_proto::v1::events_service_server::EventsService;
use sms_proto::v1::{SubscribeRequest, SubscribeResponse};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::Shared;

/// Events buffered per subscriber before the feed waits for it to read.
const BUFFER: usize = 256;

/// `sms.v1.EventsService`.
#[derive(Clone)]
pub struct EventsApi(pub Shared);

type FeedStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventsService for EventsApi {
    type SubscribeStream = FeedStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<FeedStream>, Status> {
        let span = super::rpc_span("Subscribe", request.metadata());
        let caller = self.0.caller(request.metadata())?;
        let r = request.get_ref();
        let from = self
            .0
            .feed_start(&caller, &r.cursor, r.from_start)
            .instrument(span.clone())
            .await?;
        let (out, events) = tokio::sync::mpsc::channel(BUFFER);
        let app = self.0.clone();
        let shutdown = app.shutdown.clone();
        tokio::spawn(
            app.feed_pump(caller.organization_id.clone(), from, out, shutdown)
                .instrument(span),
        );
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(events),
        )))
    }
}
