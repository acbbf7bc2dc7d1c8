//! Generates the Aether gateway's server-side gRPC code from the committed descriptor set
//! `proto/aether_v1.fds` (the schema of the pinned Python SDK `scitrera-aether-client==0.2.3`,
//! dumped by `scripts/regen-aether-fds.sh`). No system `protoc`: the set is already compiled.
//! Server only: the RPC is named `Connect`, which would collide with the generated client's
//! `connect` constructor, and the node needs no client.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = "proto/aether_v1.fds";
    println!("cargo:rerun-if-changed={path}");
    let bytes = std::fs::read(path)?;
    let fds = prost_types::FileDescriptorSet::decode(bytes.as_slice())?;
    tonic_prost_build::configure().build_server(true).build_client(false).compile_fds(fds)?;
    Ok(())
}
