//! Generates the Rust types for the protobuf messages Asynq stores in Redis (`proto/asynq.proto`).
//!
//! protox compiles the `.proto` in pure Rust, so building honeyguide needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/asynq.proto");
    let descriptors = protox::compile(["asynq.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
