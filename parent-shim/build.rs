//! Generates the gRPC code for `proto/signservice/v1/signservice.proto` with `protox` (a
//! protobuf compiler in Rust), so building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../proto";
    let file = "../proto/signservice/v1/signservice.proto";
    println!("cargo:rerun-if-changed={file}");
    println!("cargo:rerun-if-changed=build.rs");
    let descriptors = protox::compile([file], [proto_dir])?;
    // Kept for gRPC server reflection (grpcurl then needs no .proto file).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("signservice_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
