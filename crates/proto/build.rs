//! Generates the gRPC code for `/proto` with tonic-build (needs `protoc`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto");
    tonic_build::configure()
        .compile_protos(&["../../proto/tribune/v1/rpc.proto"], &["../../proto"])?;
    Ok(())
}
