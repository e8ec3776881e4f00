//! Generates the tonic code from `proto/` with protox: no system `protoc` needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/raftconf/v1/raftconf.proto",
        "proto/raftconf/internal/v1/peer.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("raftconf_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    let mut config = tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Small per-stream buffers: see src/codec.rs.
        .codec_path("crate::codec::SlimCodec");
    // With the `validate` feature, request types carry the naming rule as
    // `validator` attributes (see `src/validate.rs`).
    if std::env::var_os("CARGO_FEATURE_VALIDATE").is_some() {
        for (message, fields) in VALIDATED {
            config = config.type_attribute(
                format!("raftconf.v1.{message}"),
                "#[derive(validator::Validate)]",
            );
            for (field, rule) in *fields {
                let attribute = match *rule {
                    "nested" => "#[validate(nested)]".to_string(),
                    rule => format!("#[validate(custom(function = \"crate::validate::{rule}\"))]"),
                };
                config =
                    config.field_attribute(format!("raftconf.v1.{message}.{field}"), attribute);
            }
        }
    }
    config.compile_fds(fds)?;
    watch_server();
    Ok(())
}

/// The server side of `raftconf.v1.Watch` once more, generated from this
/// description instead of the proto: the same routes and messages on the
/// wire, but its responses are `crate::codec::WatchReply`, which may carry a
/// response already encoded (see `src/codec.rs`). The proto's generated
/// client and server stay as they are.
fn watch_server() {
    use tonic_prost_build::manual::{Builder, Method, Service};
    let service = Service::builder()
        .name("Watch")
        .package("raftconf.v1")
        .method(
            Method::builder()
                .name("watch")
                .route_name("Watch")
                .input_type("crate::v1::WatchRequest")
                .output_type("crate::codec::WatchReply")
                .codec_path("crate::codec::WatchCodec")
                .client_streaming()
                .server_streaming()
                .build(),
        )
        .method(
            Method::builder()
                .name("clients")
                .route_name("Clients")
                .input_type("crate::v1::ClientsRequest")
                .output_type("crate::v1::ClientsResponse")
                .codec_path("crate::codec::SlimCodec")
                .build(),
        )
        .build();
    Builder::new().build_client(false).compile(&[service]);
}

/// Request fields that name things, and the rule of `src/validate.rs` each follows.
const VALIDATED: &[(&str, &[(&str, &str)])] = &[
    ("CreateTenantRequest", &[("name", "tenant")]),
    ("DeleteTenantRequest", &[("name", "tenant")]),
    ("SetTenantSettingsRequest", &[("name", "tenant")]),
    (
        "CreateEnvironmentRequest",
        &[("tenant", "tenant"), ("name", "environment")],
    ),
    (
        "DeleteEnvironmentRequest",
        &[("tenant", "tenant"), ("name", "environment")],
    ),
    ("ListEnvironmentsRequest", &[("tenant", "tenant")]),
    (
        "SetSchemaRequest",
        &[("tenant", "tenant"), ("namespace", "namespace")],
    ),
    (
        "GetSchemaRequest",
        &[("tenant", "tenant"), ("namespace", "namespace")],
    ),
    (
        "SchemaHistoryRequest",
        &[("tenant", "tenant"), ("namespace", "namespace")],
    ),
    (
        "DeleteSchemaRequest",
        &[("tenant", "tenant"), ("namespace", "namespace")],
    ),
    (
        "ApplyRequest",
        &[
            ("tenant", "tenant"),
            ("env", "environment"),
            ("writes", "nested"),
        ],
    ),
    ("NamespaceWrite", &[("namespace", "namespace")]),
    ("GetRequest", &[("path", "namespace_path")]),
    ("PlanRequest", &[("path", "namespace_path")]),
    ("PutRequest", &[("path", "namespace_path")]),
    ("PatchRequest", &[("path", "namespace_path")]),
    ("RollbackRequest", &[("path", "namespace_path")]),
    ("DeleteRequest", &[("path", "namespace_path")]),
    ("HistoryRequest", &[("path", "namespace_path")]),
];
