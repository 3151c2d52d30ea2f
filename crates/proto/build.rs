//! Generates the protobuf and gRPC code, and a file-descriptor set for gRPC reflection.

use std::path::PathBuf;

const PROTOS: [&str; 10] = [
    "sms/v1/common.proto",
    "sms/v1/contacts.proto",
    "sms/v1/feed.proto",
    "sms/events/v1/events.proto",
    "sms/v1/messaging.proto",
    "sms/v1/numbers.proto",
    "sms/v1/optouts.proto",
    "sms/v1/settings.proto",
    "sms/v1/templates.proto",
    "sms/v1/webhooks.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let includes = [root.clone(), protoc_bin_vendored::include_path()?];
    // protoc comes vendored: nothing to install on a fresh machine.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // `prost::Name`: every message knows its full protobuf name (the bus checks event types).
    config.enable_type_names();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("sms_descriptor.bin"))
        .compile_with_config(config, &PROTOS.map(|p| root.join(p)), &includes)?;
    Ok(())
}
