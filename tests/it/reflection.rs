//! Both gRPC servers answer reflection v1alpha as well as v1: grpcurl 1.8 (what most
//! distributions ship), Python's `grpcio-reflection` and older GUI clients speak v1alpha only.
//! A v1alpha client here lists each server's services, fetches their descriptors, and calls a
//! method it knows only from those descriptors (dynamic messages, no generated code).

use bytes::{Buf, BufMut, Bytes};
use futures::StreamExt;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use sms_testkit::{ORG, Stack, USER};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

/// Passes encoded messages through as bytes: the caller encodes and decodes dynamically.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

async fn channel(url: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// One v1alpha reflection round trip.
async fn ask(channel: &Channel, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(channel.clone());
    let outbound = futures::stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }]);
    let mut replies = client
        .server_reflection_info(outbound)
        .await
        .unwrap()
        .into_inner();
    replies
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

async fn services(channel: &Channel) -> Vec<String> {
    match ask(channel, MessageRequest::ListServices(String::new())).await {
        MessageResponse::ListServicesResponse(r) => r.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// The descriptors of the file defining `symbol` and everything it imports, as the server
/// describes them.
async fn pool_for(channel: &Channel, symbol: &str) -> DescriptorPool {
    let files = match ask(channel, MessageRequest::FileContainingSymbol(symbol.into())).await {
        MessageResponse::FileDescriptorResponse(r) => r.file_descriptor_proto,
        other => panic!("unexpected reply {other:?}"),
    };
    let mut set = prost_types::FileDescriptorSet::default();
    for bytes in files {
        set.file
            .push(prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap());
    }
    // Imports come as their own files when asked for by name.
    let mut missing: Vec<String> = set.file.iter().flat_map(|f| f.dependency.clone()).collect();
    while let Some(name) = missing.pop() {
        if set.file.iter().any(|f| f.name() == name) {
            continue;
        }
        let MessageResponse::FileDescriptorResponse(r) =
            ask(channel, MessageRequest::FileByFilename(name.clone())).await
        else {
            panic!("no file {name}");
        };
        for bytes in r.file_descriptor_proto {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
            missing.extend(file.dependency.clone());
            set.file.push(file);
        }
    }
    DescriptorPool::from_file_descriptor_set(set).unwrap()
}

/// Calls `service`/`method` with `fields` set on the request, knowing only what reflection
/// said about them.
async fn call(
    channel: &Channel,
    service: &str,
    method: &str,
    fields: &[(&str, Value)],
) -> DynamicMessage {
    let pool = pool_for(channel, service).await;
    let method = pool
        .get_service_by_name(service)
        .unwrap()
        .methods()
        .find(|m| m.name() == method)
        .unwrap();
    let mut request = DynamicMessage::new(method.input());
    for (name, value) in fields {
        request.set_field_by_name(name, value.clone());
    }
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path = format!("/{service}/{}", method.name());
    let mut r = tonic::Request::new(Bytes::from(request.encode_to_vec()));
    r.metadata_mut()
        .insert("x-organization-id", ORG.parse().unwrap());
    r.metadata_mut().insert("x-user-id", USER.parse().unwrap());
    r.metadata_mut()
        .insert("x-user-role", "admin".parse().unwrap());
    let reply = grpc
        .unary(
            r,
            path.parse::<http::uri::PathAndQuery>().unwrap(),
            RawCodec,
        )
        .await
        .unwrap()
        .into_inner();
    DynamicMessage::decode(method.output(), reply).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1alpha_client_lists_and_calls_both_servers() {
    let stack = Stack::start().await;
    stack.add_number("+12015550100").await;

    let composer = channel(&stack.grpc_url).await;
    let listed = services(&composer).await;
    for wanted in [
        "sms.v1.MessagingService",
        "sms.v1.NumbersService",
        "sms.v1.TemplatesService",
        "sms.v1.SettingsService",
        "sms.v1.ContactsService",
        "sms.v1.EventsService",
        "sms.v1.WebhooksService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(listed.iter().any(|s| s == wanted), "{wanted} in {listed:?}");
    }
    // Only what this server serves.
    assert!(
        !listed.iter().any(|s| s == "sms.v1.OptOutsService"),
        "{listed:?}"
    );
    // The health service is described too: a client can call it by reflection.
    let health = call(&composer, "grpc.health.v1.Health", "Check", &[]).await;
    assert_eq!(
        health.get_field_by_name("status").unwrap().as_enum_number(),
        Some(1),
        "SERVING"
    );
    // The settings service is described with its messages.
    let settings = call(&composer, "sms.v1.SettingsService", "GetSettings", &[]).await;
    let settings = settings.get_field_by_name("settings").unwrap();
    let quiet = settings
        .as_message()
        .unwrap()
        .get_field_by_name("quiet_hours")
        .unwrap();
    assert_eq!(
        quiet
            .as_message()
            .unwrap()
            .get_field_by_name("start")
            .unwrap()
            .as_str(),
        Some("08:00")
    );
    let numbers = call(&composer, "sms.v1.NumbersService", "ListNumbers", &[]).await;
    let listed_numbers: Vec<String> = numbers
        .get_field_by_name("numbers")
        .unwrap()
        .as_list()
        .unwrap()
        .iter()
        .map(|n| {
            n.as_message()
                .unwrap()
                .get_field_by_name("number")
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(listed_numbers, ["+12015550100"]);

    let registry = channel(&stack.optout_url).await;
    let listed = services(&registry).await;
    assert!(
        listed.iter().any(|s| s == "sms.v1.OptOutsService"),
        "{listed:?}"
    );
    assert!(
        !listed.iter().any(|s| s == "sms.v1.MessagingService"),
        "{listed:?}"
    );
    let checked = call(
        &registry,
        "sms.v1.OptOutsService",
        "CheckOptOut",
        &[("contact_number", Value::String("+12015550123".into()))],
    )
    .await;
    let status = checked.get_field_by_name("status").unwrap();
    let status = status.as_message().unwrap();
    assert_eq!(
        status.get_field_by_name("contact_number").unwrap().as_str(),
        Some("+12015550123")
    );
    assert_eq!(
        status.get_field_by_name("opted_out").unwrap().as_bool(),
        Some(false)
    );
    stack.shutdown().await;
}
