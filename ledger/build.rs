//! Compiles `proto/jifen/v1/events.proto` with protox (a pure-Rust protobuf compiler), so the
//! build needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../proto";
    let file = "../proto/jifen/v1/events.proto";
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([file], [proto_root])?;
    // The enums the write-model keeps go into a village's sealed snapshot.
    let mut config = prost_build::Config::new();
    for kept in ["ExpiryPolicy", "Residency", "ScoreSource", "ObjectionOutcome", "StockSource"] {
        config.enum_attribute(format!(".jifen.v1.{kept}"), "#[derive(serde::Serialize, serde::Deserialize)]");
    }
    config.compile_fds(descriptors)?;
    Ok(())
}
