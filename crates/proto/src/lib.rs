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

    /// `sms.v1.events`: events on the bus.
    pub mod events {
        tonic::include_proto!("sms.v1.events");
    }
}

/// The encoded file-descriptor set of every proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sms_descriptor");
