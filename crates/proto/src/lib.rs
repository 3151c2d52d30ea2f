//! Code generated from `proto/sms/v1`: the bus events and the gRPC services.
//!
//! This is the only crate with generated code; everything else uses these types.

#![allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]

/// `sms.v1`: API messages and services.
pub mod v1 {
    tonic::include_proto!("sms.v1");
}

/// Events on the bus.
pub mod events {
    /// `sms.events.v1`.
    pub mod v1 {
        tonic::include_proto!("sms.events.v1");
    }
}

pub mod feed_json;

/// The encoded file-descriptor set of every proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sms_descriptor");

/// gRPC server reflection for a server that serves `services` (full names, e.g.
/// `sms.v1.MessagingService`): v1 (grpcurl 1.9, Postman, Buf) and v1alpha (what grpcurl 1.8,
/// the one most distributions ship, Python's `grpcio-reflection` and older GUI clients speak).
/// `extra` are the encoded descriptor sets of other services it serves (health).
#[derive(Debug, Clone)]
pub struct Reflection {
    services: Vec<String>,
    extra: Vec<&'static [u8]>,
}

impl Reflection {
    /// Reflection describing `services`, plus the services of the `extra` descriptor sets.
    pub fn new(services: &[&str], extra: &[&'static [u8]]) -> Self {
        Reflection {
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            extra: extra.to_vec(),
        }
    }

    fn builder(&self) -> tonic_reflection::server::Builder<'static> {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET);
        for set in &self.extra {
            b = b.register_encoded_file_descriptor_set(set);
        }
        // The reflection services describe themselves too, as grpcurl expects.
        for name in self.services.iter().map(String::as_str).chain([
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]) {
            b = b.with_service_name(name);
        }
        b
    }

    /// The v1 reflection service.
    pub fn v1(
        &self,
    ) -> Result<
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::Error,
    > {
        self.builder().build_v1()
    }

    /// The v1alpha reflection service.
    pub fn v1alpha(
        &self,
    ) -> Result<
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
        tonic_reflection::server::Error,
    > {
        self.builder().build_v1alpha()
    }
}
