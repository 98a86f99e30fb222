//! Compiles the service protos (`proto/jifen/v1/ledger.proto`, `query.proto`) with protox, a pure-Rust
//! protobuf compiler (no system `protoc`), into tonic services, and writes the descriptor set
//! that gRPC reflection serves.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/jifen/v1/ledger.proto", "proto/jifen/v1/query.proto", "proto/jifen/v1/events.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let mut descriptors = protox::compile(["proto/jifen/v1/ledger.proto", "proto/jifen/v1/query.proto"], ["proto"])?;
    // The event types are generated once, in jifen-ledger; generate only the services here.
    descriptors.file.retain(|f| f.name() != "jifen/v1/events.proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // Reflection describes the whole API, events included.
    let all = protox::compile(files, ["proto"])?;
    std::fs::write(out.join("jifen_descriptor.bin"), all.encode_to_vec())?;
    // query.proto refers to StockSource of events.proto: use the ledger crate's type.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".jifen.v1.StockSource", "::jifen_ledger::pb::StockSource")
        // Malformed protobuf is INVALID_ARGUMENT, not INTERNAL (src/server/codec.rs).
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
