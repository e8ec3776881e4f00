//! Generates the etcd v3 client the comparison bench uses from
//! `proto/etcd/kv.proto` with protox: no system `protoc` needed (which is why
//! the bench does not use the `etcd-client` crate, whose build script needs one).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "proto/etcd/kv.proto";
    println!("cargo:rerun-if-changed={file}");
    let fds = protox::compile([file], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
