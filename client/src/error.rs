//! The client's error type, and the one place a `tonic::Status` becomes an [`Error`].

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Metadata key naming the leader's client address (`host:port`) on any response
/// or error, when the answering node knows it.
pub const LEADER_METADATA: &str = "x-raftconf-leader";

/// Metadata key carrying a namespace's current version on a `FAILED_PRECONDITION`
/// (compare-and-set miss). Absent when the namespace does not exist.
pub const CURRENT_VERSION_METADATA: &str = "x-raftconf-current-version";

/// Metadata key carrying the revision of a namespace's last change on a
/// `FAILED_PRECONDITION` (compare-and-set miss).
pub const CURRENT_REVISION_METADATA: &str = "x-raftconf-current-revision";

/// Metadata key carrying [`crate::ClientOptions::author`] on writes, so history
/// shows who made a change until tokens carry an identity.
pub const AUTHOR_METADATA: &str = "x-raftconf-author";

/// Everything a raftconf call can fail with. Each message is one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed: a bad path, a document that does not parse or
    /// is not an object, a schema that does not compile. (A document that
    /// breaks its schema is [`Error::SchemaViolation`].)
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The tenant, environment or namespace does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A compare-and-set condition (`if_version`, `if_revision`) did not hold.
    #[error("compare-and-set failed: {message}{}", current(.message, .current_version))]
    CasMismatch {
        /// The server's explanation.
        message: String,
        /// The namespace's version now, when the server said so (metadata
        /// `x-raftconf-current-version`; `Some(0)`: it never existed).
        current_version: Option<u64>,
    },
    /// A document breaks its namespace's schema (`INVALID_ARGUMENT` with
    /// `google.rpc.BadRequest` details). Nothing was written.
    #[error("schema violation: {message}")]
    SchemaViolation {
        /// The server's one-line explanation (it lists every violation too).
        message: String,
        /// Every violation: `field` is a JSON pointer into the document
        /// (`""` for the document root).
        violations: Vec<FieldViolation>,
    },
    /// A new schema would break documents that are live in some environment
    /// (`FAILED_PRECONDITION` with `google.rpc.BadRequest` details). Nothing
    /// was written; setting it with `force` accepts it anyway.
    #[error("incompatible schema: {message}")]
    SchemaIncompatible {
        /// The server's one-line explanation.
        message: String,
        /// Every violation: `field` is `ENV:POINTER`, the environment whose
        /// document breaks and a JSON pointer into that document.
        violations: Vec<FieldViolation>,
    },
    /// The state does not allow this operation, other than a compare-and-set
    /// miss: e.g. deleting an environment that still holds namespaces without
    /// `force` (the message names what it holds).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The tenant or environment to create already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A documented limit was exceeded (the message names it).
    #[error("limit exceeded: {0}")]
    ResourceExhausted(String),
    /// The caller may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// No endpoint answered; a write that fails with this was certainly not applied.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A write may or may not have been applied, and retrying with the same write
    /// id did not tell. Read the namespace to find out; do not blindly re-send.
    #[error("outcome unknown (the write may or may not have been applied): {0}")]
    Indeterminate(String),
    /// A watch start revision lies beyond the cluster's revision.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// A document did not deserialize into the caller's type.
    #[error("{path} at revision {revision} does not deserialize: {message}")]
    Deserialize {
        /// The namespace.
        path: String,
        /// The revision of the refused document.
        revision: u64,
        /// serde's message.
        message: String,
    },
    /// A document deserialized but the caller's validation hook refused it.
    #[error("{path} at revision {revision} failed validation: {}", .reasons.join("; "))]
    Validation {
        /// The namespace.
        path: String,
        /// The revision of the refused document.
        revision: u64,
        /// One entry per violation.
        reasons: Vec<String>,
    },
    /// A watched namespace was deleted; the last good value stays in effect.
    #[error("{path} was deleted at revision {revision}; keeping the last good value")]
    Deleted {
        /// The namespace.
        path: String,
        /// The revision of the delete.
        revision: u64,
    },
    /// A local configuration file (a file source) could not be read or parsed;
    /// the message names the line and column of a syntax error.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Waiting for something (e.g. the first value of a `Watched`) took too long.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Any other status from the server or the transport.
    #[error("{}", one_line_status(.0))]
    Other(Status),
}

/// One violation reported by the server (a `google.rpc.BadRequest` field
/// violation): where, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Where: a JSON pointer into the document (`""` for its root) for an
    /// [`Error::SchemaViolation`]; `ENV:POINTER` for an
    /// [`Error::SchemaIncompatible`].
    pub field: String,
    /// What is wrong there, on one line.
    pub description: String,
}

impl std::fmt::Display for FieldViolation {
    /// As the server's message says it: `/port: "x" is not of type "integer"`,
    /// `(root): …` for the document root, `prod: /port: …` for `prod:/port`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |pointer: &str| {
            if pointer.is_empty() {
                "(root)".to_string()
            } else {
                pointer.to_string()
            }
        };
        let description = &self.description;
        // A pointer is empty or starts with '/'; an environment name holds no ':'.
        match self.field.split_once(':') {
            Some((env, pointer)) if !self.field.starts_with('/') => {
                write!(f, "{env}: {}: {description}", at(pointer))
            }
            _ => write!(f, "{}: {description}", at(&self.field)),
        }
    }
}

/// " (current version N)", unless the server's message already says so.
fn current(message: &str, version: &Option<u64>) -> String {
    match version {
        Some(v) if !message.contains("current version") => format!(" (current version {v})"),
        _ => String::new(),
    }
}

/// `Code: message`, followed by the transport's causes for a local error
/// (e.g. "tcp connect error: Connection refused"), on one line.
pub(crate) fn one_line_status(status: &Status) -> String {
    let mut line = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        let text = err.to_string();
        // tonic repeats itself ("tcp connect error: transport error: tcp
        // connect error: …"): say each cause once.
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = err.source();
    }
    line.replace(['\n', '\r'], " ")
}

impl Error {
    /// Whether the error says a write may have been applied after all.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Error::Indeterminate(_))
    }

    /// Every violation a schema refusal listed ([`Error::SchemaViolation`],
    /// [`Error::SchemaIncompatible`]); empty for any other error.
    pub fn violations(&self) -> &[FieldViolation] {
        match self {
            Error::SchemaViolation { violations, .. }
            | Error::SchemaIncompatible { violations, .. } => violations,
            _ => &[],
        }
    }
}

/// The `google.rpc.BadRequest` field violations a status carries, each on
/// one line; `None` when it carries none.
fn bad_request(status: &Status) -> Option<Vec<FieldViolation>> {
    let details = status.get_details_bad_request()?;
    let one_line = |s: String| s.replace(['\n', '\r'], " ");
    Some(
        details
            .field_violations
            .into_iter()
            .map(|v| FieldViolation {
                field: one_line(v.field),
                description: one_line(v.description),
            })
            .collect(),
    )
}

impl From<Status> for Error {
    /// The one mapping from a gRPC status to an [`Error`].
    fn from(status: Status) -> Self {
        let message = status.message().replace(['\n', '\r'], " ");
        // Schema refusals list every violation in `google.rpc.BadRequest` details.
        let violations = match status.code() {
            Code::InvalidArgument | Code::FailedPrecondition => bad_request(&status),
            _ => None,
        };
        match (status.code(), violations) {
            // A document that breaks its schema.
            (Code::InvalidArgument, Some(violations)) => Error::SchemaViolation {
                message,
                violations,
            },
            // A schema that live documents would break.
            (Code::FailedPrecondition, Some(violations)) => Error::SchemaIncompatible {
                message,
                violations,
            },
            (code, _) => Error::from_code(code, message, status),
        }
    }
}

impl Error {
    /// The mapping of a status without schema details.
    fn from_code(code: Code, message: String, status: Status) -> Self {
        match code {
            Code::InvalidArgument => Error::InvalidArgument(message),
            Code::NotFound => Error::NotFound(message),
            // A CAS miss carries the namespace's current version or revision.
            Code::FailedPrecondition
                if status.metadata().get(CURRENT_VERSION_METADATA).is_some()
                    || status.metadata().get(CURRENT_REVISION_METADATA).is_some() =>
            {
                Error::CasMismatch {
                    current_version: metadata_u64(&status, CURRENT_VERSION_METADATA),
                    message,
                }
            }
            Code::FailedPrecondition => Error::FailedPrecondition(message),
            Code::AlreadyExists => Error::AlreadyExists(message),
            Code::ResourceExhausted => Error::ResourceExhausted(message),
            Code::PermissionDenied | Code::Unauthenticated => Error::PermissionDenied(message),
            Code::Unavailable => Error::Unavailable(message),
            Code::Unknown => Error::Indeterminate(message),
            Code::OutOfRange => Error::OutOfRange(message),
            _ => Error::Other(status),
        }
    }
}

impl From<raftconf_schema::Error> for Error {
    fn from(err: raftconf_schema::Error) -> Self {
        match err {
            raftconf_schema::Error::LimitExceeded { .. } => {
                Error::ResourceExhausted(err.to_string())
            }
            other => Error::InvalidArgument(other.to_string()),
        }
    }
}

/// A numeric metadata value, if present and well-formed.
pub(crate) fn metadata_u64(status: &Status, key: &str) -> Option<u64> {
    status
        .metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_variants() {
        let cases = [
            (Code::InvalidArgument, "InvalidArgument"),
            (Code::NotFound, "NotFound"),
            (Code::AlreadyExists, "AlreadyExists"),
            (Code::ResourceExhausted, "ResourceExhausted"),
            (Code::PermissionDenied, "PermissionDenied"),
            (Code::Unavailable, "Unavailable"),
            (Code::Unknown, "Indeterminate"),
            (Code::OutOfRange, "OutOfRange"),
            (Code::Internal, "Other"),
        ];
        for (code, variant) in cases {
            let err = Error::from(Status::new(code, "why"));
            assert!(
                format!("{err:?}").starts_with(variant),
                "{code:?} became {err:?}"
            );
        }
    }

    #[test]
    fn cas_miss_reads_the_current_version_from_metadata() {
        let mut status = Status::failed_precondition("version is 7, expected 6");
        status
            .metadata_mut()
            .insert(CURRENT_VERSION_METADATA, "7".parse().expect("ascii"));
        match Error::from(status) {
            Error::CasMismatch {
                message,
                current_version,
            } => {
                assert_eq!(current_version, Some(7));
                assert_eq!(message, "version is 7, expected 6");
                let shown = Error::CasMismatch {
                    message,
                    current_version,
                };
                assert_eq!(
                    shown.to_string(),
                    "compare-and-set failed: version is 7, expected 6 (current version 7)"
                );
            }
            other => panic!("expected CasMismatch, got {other:?}"),
        }
        // A miss on `if_revision` carries only the current revision.
        let mut status = Status::failed_precondition("does not exist");
        status
            .metadata_mut()
            .insert(CURRENT_REVISION_METADATA, "0".parse().expect("ascii"));
        let err = Error::from(status);
        assert!(matches!(
            err,
            Error::CasMismatch {
                current_version: None,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "compare-and-set failed: does not exist",
            "no version, no suffix"
        );
        // Without either, it is not a compare-and-set miss.
        let err = Error::from(Status::failed_precondition(
            "environment pay/prod still holds 2 namespaces (a, b)",
        ));
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    }

    fn bad_request(code: Code, message: &str, violations: &[(&str, &str)]) -> Status {
        use tonic_types::{ErrorDetails, FieldViolation as Pb};
        let violations: Vec<Pb> = violations.iter().map(|(f, d)| Pb::new(*f, *d)).collect();
        Status::with_error_details(code, message, ErrorDetails::with_bad_request(violations))
    }

    fn violation(field: &str, description: &str) -> FieldViolation {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }

    #[test]
    fn a_document_breaking_its_schema_lists_every_violation() {
        let message = "pay/prod/a violates schema version 1 of pay/a: /port: \"x\" is not of type \"integer\"; (root): \"host\" is a required property";
        let status = bad_request(
            Code::InvalidArgument,
            message,
            &[
                ("/port", "\"x\" is not of type \"integer\""),
                ("", "\"host\" is a required\nproperty"),
            ],
        );
        let err = Error::from(status);
        let Error::SchemaViolation {
            message: got,
            violations,
        } = &err
        else {
            panic!("expected SchemaViolation, got {err:?}");
        };
        assert_eq!(got, message);
        assert_eq!(
            violations,
            &[
                violation("/port", "\"x\" is not of type \"integer\""),
                violation("", "\"host\" is a required property"),
            ],
            "in the server's order, each on one line"
        );
        assert_eq!(err.violations().len(), 2);
        assert_eq!(err.to_string(), format!("schema violation: {message}"));
        let shown: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "/port: \"x\" is not of type \"integer\"",
                "(root): \"host\" is a required property"
            ]
        );
    }

    #[test]
    fn a_schema_breaking_live_documents_names_environment_and_pointer() {
        let message = "schema version 2 of pay/a would break live documents: prod: /port: 0 is less than the minimum of 1";
        let mut status = bad_request(
            Code::FailedPrecondition,
            message,
            &[
                ("prod:/port", "0 is less than the minimum of 1"),
                ("dev:", "\"host\" is a required property"),
            ],
        );
        // Details win over anything else a failed precondition carries.
        status
            .metadata_mut()
            .insert(LEADER_METADATA, "127.0.0.1:1".parse().expect("ascii"));
        let err = Error::from(status);
        let Error::SchemaIncompatible {
            message: got,
            violations,
        } = &err
        else {
            panic!("expected SchemaIncompatible, got {err:?}");
        };
        assert_eq!(got, message);
        assert_eq!(
            violations[0],
            violation("prod:/port", "0 is less than the minimum of 1")
        );
        assert_eq!(err.to_string(), format!("incompatible schema: {message}"));
        assert_eq!(
            violations[1].to_string(),
            "dev: (root): \"host\" is a required property"
        );
        assert_eq!(
            violations[0].to_string(),
            "prod: /port: 0 is less than the minimum of 1"
        );
    }

    #[test]
    fn statuses_without_details_keep_their_mapping() {
        let err = Error::from(Status::invalid_argument("malformed JSON at line 1"));
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(err.violations().is_empty());
        let err = Error::from(Status::failed_precondition("still holds 2 namespaces"));
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
        let mut cas = Status::failed_precondition("version is 7, expected 6");
        cas.metadata_mut()
            .insert(CURRENT_VERSION_METADATA, "7".parse().expect("ascii"));
        assert!(matches!(Error::from(cas), Error::CasMismatch { .. }));
        // Details on another code change nothing.
        let err = Error::from(bad_request(Code::NotFound, "no such tenant", &[("t", "x")]));
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        // Other details than BadRequest are not a schema refusal.
        let other = Status::with_error_details(
            Code::InvalidArgument,
            "bad",
            tonic_types::ErrorDetails::with_error_info("REASON", "raftconf", []),
        );
        assert!(matches!(Error::from(other), Error::InvalidArgument(_)));
    }

    #[test]
    fn messages_are_one_line() {
        let err = Error::from(Status::internal("first\nsecond"));
        assert_eq!(err.to_string(), "Internal: first second");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let connect = Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        assert_eq!(one_line_status(&connect), "Unavailable: refused");
        let err = Error::from(Status::invalid_argument("a\nb"));
        assert_eq!(err.to_string(), "invalid argument: a b");
        let err = Error::Validation {
            path: "t/e/n".into(),
            revision: 4,
            reasons: vec!["workers: range".into(), "greeting: length".into()],
        };
        assert_eq!(
            err.to_string(),
            "t/e/n at revision 4 failed validation: workers: range; greeting: length"
        );
    }
}
