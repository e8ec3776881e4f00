//! The one place where errors become `tonic::Status`.
//!
//! Services return [`ApiError`]; [`to_status`] picks the gRPC code documented
//! in `raftconf.proto`, writes a message a person can act on, and mirrors the
//! response header into metadata (see [`crate::metadata`]) so that even a
//! refusal tells the client who leads and at which revision it was served.
//!
//! The rule that matters most: a write whose outcome is unknown is `UNKNOWN`,
//! never `UNAVAILABLE` (which promises "certainly not applied, safe to retry").

use raftconf_api::v1::ResponseHeader;
use raftconf_raft::{ReadError, Rejection, WriteError};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::metadata;

/// Why one RPC failed, before it becomes a `Status`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed in a way the schema crate does not describe.
    #[error("{0}")]
    InvalidArgument(String),
    /// A bad name, path or document, or a documented limit.
    #[error(transparent)]
    Schema(#[from] raftconf_schema::Error),
    /// A namespace (or tenant, environment) that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A write that did not get an apply answer, or was rejected by apply.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A compare-and-set miss, with what the namespace is now (as far as known).
    #[error("{rejection}")]
    CasMiss {
        /// Apply's rejection (`VersionMismatch` or `RevisionMismatch`).
        rejection: Rejection,
        /// The namespace's current version, when known.
        current_version: Option<u64>,
        /// The revision of its last change, when known.
        current_revision: Option<u64>,
    },
    /// A linearizable read that could not be served here.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A read of the local state failed.
    #[error(transparent)]
    State(#[from] raftconf_raft::Error),
    /// A revision beyond what exists.
    #[error("{0}")]
    OutOfRange(String),
    /// Not served now (bounded wait ran out, shutting down); safe to retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected local failure.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// Turns a write error into an [`ApiError`], separating CAS misses so that
    /// their metadata can carry the current version and revision (what the
    /// rejection knows; [`ApiError::complete_cas`] adds the rest).
    pub fn from_write(e: WriteError) -> Self {
        match e {
            WriteError::Rejected(
                rejection @ Rejection::VersionMismatch {
                    current, exists, ..
                },
            ) => ApiError::CasMiss {
                current_version: Some(current),
                // A namespace that never existed was last modified at revision 0.
                current_revision: (!exists && current == 0).then_some(0),
                rejection,
            },
            WriteError::Rejected(rejection @ Rejection::RevisionMismatch { current, .. }) => {
                ApiError::CasMiss {
                    current_version: None,
                    current_revision: Some(current),
                    rejection,
                }
            }
            other => ApiError::Write(other),
        }
    }
}

impl ApiError {
    /// Fills in the half of a CAS miss the rejection does not carry, from the
    /// namespace as this node sees it now (`version`, `mod_revision`) — only
    /// when it is the same incarnation the rejection describes.
    pub fn complete_cas(mut self, version: u64, mod_revision: u64) -> Self {
        if let ApiError::CasMiss {
            current_version,
            current_revision,
            ..
        } = &mut self
        {
            match (*current_version, *current_revision) {
                (Some(v), None) if v == version => *current_revision = Some(mod_revision),
                (None, Some(r)) if r == mod_revision => *current_version = Some(version),
                _ => {}
            }
        }
        self
    }
}

/// Why a watch stream was ended by the server.
#[derive(Debug, Clone)]
pub enum WatchEnd {
    /// The subscriber did not drain its stream within the send timeout.
    TooSlow,
    /// The node has had no leader for longer than an election: its state may
    /// be falling behind; the subscriber should resume on another node.
    LeaderLost,
    /// The node is shutting down.
    ShuttingDown,
    /// The subscription failed (the message says why).
    Failed(Code, String),
}

/// The gRPC code for an apply rejection.
pub fn rejection_code(r: &Rejection) -> Code {
    match r {
        Rejection::UnknownTenant { .. }
        | Rejection::UnknownEnvironment { .. }
        | Rejection::NamespaceNotFound { .. } => Code::NotFound,
        Rejection::TenantExists { .. } | Rejection::EnvironmentExists { .. } => Code::AlreadyExists,
        Rejection::VersionMismatch { .. } | Rejection::RevisionMismatch { .. } => {
            Code::FailedPrecondition
        }
        Rejection::LimitExceeded { .. } => Code::ResourceExhausted,
        Rejection::NotEmpty { .. } => Code::FailedPrecondition,
        Rejection::RequestIdReused { .. } | Rejection::Invalid { .. } => Code::InvalidArgument,
        Rejection::SchemaViolation { .. } | Rejection::InvalidSchema { .. } => {
            Code::InvalidArgument
        }
        Rejection::SchemaIncompatible { .. } => Code::FailedPrecondition,
        Rejection::SchemaNotFound { .. } => Code::NotFound,
        // The code of the first refused write; the message lists them all.
        Rejection::TransactionRefused { failures, .. } => failures
            .first()
            .map_or(Code::InvalidArgument, |(_, r)| rejection_code(r)),
    }
}

/// Field violations carried in a status's details (`google.rpc.BadRequest`).
const MAX_DETAIL_VIOLATIONS: usize = 200;

/// Every violation of a schema rejection as `google.rpc.BadRequest` field
/// violations: the document's JSON pointer, `ENV:POINTER` for the documents
/// a schema would break, `NAMESPACE:POINTER` in a refused transaction.
/// `None` for other rejections.
fn bad_request(r: &Rejection) -> Option<ErrorDetails> {
    let fields: Vec<FieldViolation> = match r {
        Rejection::TransactionRefused { failures, .. } => failures
            .iter()
            .flat_map(|(ns, r)| match r {
                Rejection::SchemaViolation { violations, .. } => violations
                    .iter()
                    .map(|v| FieldViolation::new(format!("{ns}:{}", v.pointer), v.message.clone()))
                    .collect::<Vec<_>>(),
                other => vec![FieldViolation::new(format!("{ns}:"), other.to_string())],
            })
            .collect(),
        Rejection::SchemaViolation { violations, .. } => violations
            .iter()
            .map(|v| FieldViolation::new(v.pointer.clone(), v.message.clone()))
            .collect(),
        Rejection::SchemaIncompatible { broken, .. } => broken
            .iter()
            .flat_map(|(env, vs)| {
                vs.iter().map(move |v| {
                    FieldViolation::new(format!("{env}:{}", v.pointer), v.message.clone())
                })
            })
            .collect(),
        _ => return None,
    };
    Some(ErrorDetails::with_bad_request(
        fields
            .into_iter()
            .take(MAX_DETAIL_VIOLATIONS)
            .collect::<Vec<_>>(),
    ))
}

/// The gRPC code for a schema-crate error (names, paths, documents, limits).
pub fn schema_code(e: &raftconf_schema::Error) -> Code {
    match e {
        raftconf_schema::Error::LimitExceeded { .. } => Code::ResourceExhausted,
        _ => Code::InvalidArgument,
    }
}

/// Converts `err` into a `Status`, with `header` mirrored into metadata.
pub fn to_status(err: ApiError, header: &ResponseHeader) -> Status {
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    let details = match &err {
        ApiError::Write(WriteError::Rejected(r)) => bad_request(r),
        _ => None,
    };
    let (code, message) = match err {
        ApiError::InvalidArgument(m) => (Code::InvalidArgument, m),
        ApiError::Schema(e) => (schema_code(&e), e.to_string()),
        ApiError::NotFound(m) => (Code::NotFound, m),
        ApiError::OutOfRange(m) => (Code::OutOfRange, m),
        ApiError::Unavailable(m) => (Code::Unavailable, m),
        ApiError::Internal(m) => (Code::Internal, m),
        ApiError::CasMiss {
            rejection,
            current_version,
            current_revision,
        } => {
            if let Some(v) = current_version {
                extra.push((metadata::CURRENT_VERSION, v.to_string()));
            }
            if let Some(r) = current_revision {
                extra.push((metadata::CURRENT_REVISION, r.to_string()));
            }
            (rejection_code(&rejection), rejection.to_string())
        }
        ApiError::Write(WriteError::Rejected(r)) => (rejection_code(&r), r.to_string()),
        ApiError::Write(WriteError::NotLeader { leader_id, leader })
        | ApiError::Read(ReadError::NotLeader { leader_id, leader }) => {
            let addr = leader.map(|n| n.client_addr).filter(|a| !a.is_empty());
            let message = match (leader_id, &addr) {
                (Some(id), Some(a)) => {
                    format!("this node is not the leader; the leader is node {id} at {a}")
                }
                (Some(id), None) => format!("this node is not the leader; the leader is node {id}"),
                _ => "this node is not the leader and no leader is known yet; retry shortly"
                    .to_string(),
            };
            if let Some(a) = addr {
                extra.push((metadata::LEADER, a));
            }
            if let Some(id) = leader_id {
                extra.push((metadata::LEADER_ID, id.to_string()));
            }
            (Code::Unavailable, message)
        }
        ApiError::Write(WriteError::Unavailable(m)) => (
            Code::Unavailable,
            format!("unavailable, the write was not applied (safe to retry): {m}"),
        ),
        ApiError::Write(WriteError::Unknown(m)) => (
            Code::Unknown,
            format!(
                "outcome unknown, the write may or may not have been applied; retry with the same \
                 client_id and request_id to learn it: {m}"
            ),
        ),
        ApiError::Read(ReadError::Unavailable(m)) => (Code::Unavailable, m),
        ApiError::State(e) => state_error(e),
    };
    let mut status = match details {
        Some(d) => Status::with_error_details(code, message, d),
        None => Status::new(code, message),
    };
    let md = status.metadata_mut();
    put_header(md, header);
    for (k, v) in extra {
        put(md, k, &v);
    }
    status
}

fn state_error(e: raftconf_raft::Error) -> (Code, String) {
    use raftconf_raft::Error;
    let code = match &e {
        Error::Storage(_) => Code::Internal,
        Error::NotFound(_) => Code::NotFound,
        Error::Compacted { .. } | Error::OutOfRange { .. } => Code::OutOfRange,
        Error::Unavailable(_) => Code::Unavailable,
    };
    (code, e.to_string())
}

/// The status that ends a watch stream, naming the revision to resume from.
pub fn watch_end(reason: WatchEnd, resume_from: u64, header: &ResponseHeader) -> Status {
    let (code, message) = watch_end_reason(reason, &format!("revision {resume_from}"));
    let mut status = Status::new(code, message);
    let md = status.metadata_mut();
    put_header(md, header);
    put(md, metadata::RESUME_REVISION, &resume_from.to_string());
    status
}

/// The status that ends a stream of several watches: each resumes after the
/// last revision it received.
pub fn watches_end(reason: WatchEnd, header: &ResponseHeader) -> Status {
    let (code, message) = watch_end_reason(reason, "each watch's last revision received + 1");
    let mut status = Status::new(code, message);
    put_header(status.metadata_mut(), header);
    status
}

fn watch_end_reason(reason: WatchEnd, resume: &str) -> (Code, String) {
    match reason {
        WatchEnd::TooSlow => (
            Code::ResourceExhausted,
            format!("subscriber too slow; resume from {resume}"),
        ),
        WatchEnd::LeaderLost => (
            Code::Unavailable,
            format!("this node has lost its leader; resume from {resume} on another node"),
        ),
        WatchEnd::ShuttingDown => (
            Code::Unavailable,
            format!("node is shutting down; resume from {resume} on another node"),
        ),
        WatchEnd::Failed(code, m) => (code, format!("{m}; resume from {resume}")),
    }
}

/// Mirrors a response header into metadata.
pub fn put_header(md: &mut MetadataMap, h: &ResponseHeader) {
    if !h.cluster_id.is_empty() {
        put(md, metadata::CLUSTER_ID, &h.cluster_id);
    }
    put(md, metadata::REVISION, &h.revision.to_string());
    put(md, metadata::NODE_ID, &h.node_id.to_string());
    if h.leader_id != 0 {
        put(md, metadata::LEADER_ID, &h.leader_id.to_string());
    }
    put(md, metadata::TERM, &h.term.to_string());
    if !h.leader_addr.is_empty() {
        put(md, metadata::LEADER, &h.leader_addr);
    }
}

fn put(md: &mut MetadataMap, key: &'static str, value: &str) {
    match MetadataValue::try_from(value) {
        Ok(v) => {
            md.insert(key, v);
        }
        Err(_) => tracing::debug!(key, value, "metadata value is not ASCII; left out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftconf_raft::NodeInfo;

    fn header() -> ResponseHeader {
        ResponseHeader {
            cluster_id: "c1".into(),
            revision: 7,
            node_id: 1,
            leader_id: 1,
            term: 3,
            leader_addr: "127.0.0.1:7070".into(),
        }
    }

    fn md<'a>(s: &'a Status, key: &str) -> Option<&'a str> {
        s.metadata().get(key).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn rejections_map_to_documented_codes() {
        let cases = [
            (
                Rejection::UnknownTenant {
                    tenant: "x".into(),
                    known: vec!["pay".into()],
                },
                Code::NotFound,
            ),
            (
                Rejection::NamespaceNotFound {
                    path: "a/b/c".into(),
                },
                Code::NotFound,
            ),
            (
                Rejection::TenantExists { tenant: "a".into() },
                Code::AlreadyExists,
            ),
            (
                Rejection::LimitExceeded {
                    limit: "namespaces per environment".into(),
                    max: 1,
                    actual: 2,
                },
                Code::ResourceExhausted,
            ),
            (
                Rejection::RequestIdReused {
                    client_id: "c".into(),
                    request_id: 1,
                },
                Code::InvalidArgument,
            ),
            (
                Rejection::Invalid { reason: "x".into() },
                Code::InvalidArgument,
            ),
        ];
        for (r, code) in cases {
            let s = to_status(
                ApiError::from_write(WriteError::Rejected(r.clone())),
                &header(),
            );
            assert_eq!(s.code(), code, "{r:?}");
            assert_eq!(s.message(), r.to_string());
        }
    }

    #[test]
    fn unknown_tenant_message_names_the_known_ones() {
        let r = Rejection::UnknownTenant {
            tenant: "nope".into(),
            known: vec!["pay".into(), "web".into()],
        };
        let s = to_status(ApiError::Write(WriteError::Rejected(r)), &header());
        assert!(s.message().contains("pay, web"), "{}", s.message());
    }

    #[test]
    fn version_mismatch_carries_the_current_version() {
        let r = Rejection::VersionMismatch {
            path: "a/b/c".into(),
            expected: 2,
            current: 5,
            exists: true,
        };
        let s = to_status(ApiError::from_write(WriteError::Rejected(r)), &header());
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(md(&s, metadata::CURRENT_VERSION), Some("5"));
        assert!(
            s.message().contains("current version is 5"),
            "{}",
            s.message()
        );
    }

    #[test]
    fn revision_mismatch_carries_the_current_revision() {
        let r = Rejection::RevisionMismatch {
            path: "a/b/c".into(),
            expected: 2,
            current: 9,
        };
        let s = to_status(ApiError::from_write(WriteError::Rejected(r)), &header());
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(md(&s, metadata::CURRENT_REVISION), Some("9"));
    }

    #[test]
    fn not_leader_is_unavailable_with_the_leader_address() {
        let e = WriteError::NotLeader {
            leader_id: Some(2),
            leader: Some(NodeInfo {
                peer_addr: "127.0.0.1:7171".into(),
                client_addr: "127.0.0.1:7170".into(),
            }),
        };
        let s = to_status(ApiError::from_write(e), &header());
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(md(&s, metadata::LEADER), Some("127.0.0.1:7170"));
        assert_eq!(md(&s, metadata::LEADER_ID), Some("2"));
    }

    #[test]
    fn indeterminate_write_is_unknown_never_unavailable() {
        let s = to_status(
            ApiError::from_write(WriteError::Unknown("timed out".into())),
            &header(),
        );
        assert_eq!(s.code(), Code::Unknown);
        let s = to_status(
            ApiError::from_write(WriteError::Unavailable("no leader".into())),
            &header(),
        );
        assert_eq!(s.code(), Code::Unavailable);
    }

    #[test]
    fn every_error_carries_the_header() {
        let s = to_status(
            ApiError::NotFound("namespace a/b/c does not exist".into()),
            &header(),
        );
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(md(&s, metadata::CLUSTER_ID), Some("c1"));
        assert_eq!(md(&s, metadata::REVISION), Some("7"));
        assert_eq!(md(&s, metadata::NODE_ID), Some("1"));
        assert_eq!(md(&s, metadata::LEADER_ID), Some("1"));
        assert_eq!(md(&s, metadata::TERM), Some("3"));
        assert_eq!(md(&s, metadata::LEADER), Some("127.0.0.1:7070"));
    }

    #[test]
    fn schema_errors_are_invalid_argument_or_resource_exhausted() {
        let e: raftconf_schema::Error = "Bad/Path".parse::<raftconf_schema::NsPath>().unwrap_err();
        let s = to_status(e.into(), &header());
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("Bad/Path"), "{}", s.message());
        let e = raftconf_schema::Error::LimitExceeded {
            limit: "document size",
            max: 1,
            actual: 2,
        };
        assert_eq!(
            to_status(e.into(), &header()).code(),
            Code::ResourceExhausted
        );
    }

    #[test]
    fn state_errors_map() {
        let e = raftconf_raft::Error::OutOfRange {
            requested: 10,
            current: 3,
        };
        assert_eq!(to_status(e.into(), &header()).code(), Code::OutOfRange);
        let e = raftconf_raft::Error::Storage("disk".into());
        assert_eq!(to_status(e.into(), &header()).code(), Code::Internal);
    }

    #[test]
    fn watch_end_names_the_resume_revision() {
        let s = watch_end(WatchEnd::TooSlow, 42, &header());
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.message(), "subscriber too slow; resume from revision 42");
        assert_eq!(md(&s, metadata::RESUME_REVISION), Some("42"));
        let s = watch_end(WatchEnd::ShuttingDown, 5, &header());
        assert_eq!(s.code(), Code::Unavailable);
    }
}
