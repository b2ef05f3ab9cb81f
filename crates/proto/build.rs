//! Generates the gRPC code for `/proto` with tonic-build (needs `protoc`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto");
    tonic_build::configure()
        // Archive pieces go straight into HTTP bodies: `Bytes`, not a copy.
        .bytes([".tribune.v1.SnapshotPiece.data"])
        .compile_protos(&["../../proto/tribune/v1/rpc.proto"], &["../../proto"])?;
    Ok(())
}
