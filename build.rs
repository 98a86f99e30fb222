//! Compiles the service protos (`proto/jifen/v1/ledger.proto`) with protox, a pure-Rust
//! protobuf compiler (no system `protoc`), into tonic services, and writes the descriptor set
//! that gRPC reflection serves.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/jifen/v1/ledger.proto", "proto/jifen/v1/events.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(["proto/jifen/v1/ledger.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // Reflection describes the whole API, events included.
    let all = protox::compile(files, ["proto"])?;
    std::fs::write(out.join("jifen_descriptor.bin"), all.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
