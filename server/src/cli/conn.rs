//! The operator CLI's connection: a [`raftconf_client::Client`] set up for
//! one short-lived command, and the one-line error messages it prints.
//!
//! Failover, leader hints, write ids and same-id retries all live in the
//! client library; this module only picks the options and words the errors.

use std::time::Duration;

use raftconf_client::{Client, ClientOptions, Error, FieldViolation};

/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one command's call may take across endpoints and retries: long
/// enough to ride out a leader election (election timeout 1–1.5 s), short
/// enough that an unreachable server is reported promptly.
const CALL_TIMEOUT: Duration = Duration::from_secs(4);

/// Longest pause between two rounds over the endpoints (and between watch
/// reconnects): an operator is waiting.
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// How long a membership change may take: adding a node waits until it has
/// caught up with the leader (by snapshot if needed).
pub const MEMBERSHIP_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A client for `endpoints`, identified as the CLI and writing as [`author`].
/// Nothing is dialled until the first call.
pub async fn connect(endpoints: &[String]) -> anyhow::Result<Client> {
    connect_with_timeout(endpoints, CALL_TIMEOUT).await
}

/// [`connect`] with another call timeout.
pub async fn connect_with_timeout(
    endpoints: &[String],
    call_timeout: Duration,
) -> anyhow::Result<Client> {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    let options = ClientOptions::default()
        .connect_timeout(CONNECT_TIMEOUT)
        .call_timeout(call_timeout)
        .backoff(Duration::from_millis(50), BACKOFF_MAX)
        .author(author())
        .client_id(format!("raftconf-cli-{:016x}", rand::random::<u64>()));
    Client::connect_with(endpoints.clone(), options)
        .await
        .map_err(|e| describe(&e, &endpoints))
}

/// The CLI's author: `$USER`, else "cli".
pub fn author() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty() && u.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        .unwrap_or_else(|| "cli".to_string())
}

/// One line saying what went wrong: the server's own message for a refusal
/// (scripts match on it), or that no endpoint could be reached, naming them.
/// A schema refusal also keeps its violations, as a [`Refusal`].
pub fn describe(err: &Error, endpoints: &[String]) -> anyhow::Error {
    let line = error_line(err, endpoints);
    match err.violations() {
        [] => anyhow::anyhow!(line),
        violations => anyhow::Error::new(Refusal {
            line,
            violations: violations.to_vec(),
        }),
    }
}

/// A refusal that lists violations: a put that breaks its schema, or a
/// schema that live documents would break. Printed as the one-line error,
/// then every violation on a line of its own.
#[derive(Debug)]
pub struct Refusal {
    /// The one-line error.
    pub line: String,
    /// Every violation, in the server's order.
    pub violations: Vec<FieldViolation>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// The lines printed on stderr: `error: LINE`, then `  POINTER: WHAT`
    /// per violation.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("error: {}", self.line)];
        lines.extend(self.violations.iter().map(|v| format!("  {v}")));
        lines
    }

    /// Prints [`Refusal::lines`] on stderr.
    pub fn print(&self) {
        for line in self.lines() {
            eprintln!("{line}");
        }
    }
}

fn error_line(err: &Error, endpoints: &[String]) -> String {
    match err {
        Error::Unavailable(detail) => format!(
            "cannot reach any raftconf server at {}: {detail}",
            endpoints.join(",")
        ),
        Error::SchemaViolation { message, .. } | Error::SchemaIncompatible { message, .. } => {
            message.clone()
        }
        Error::InvalidArgument(message)
        | Error::NotFound(message)
        | Error::AlreadyExists(message)
        | Error::ResourceExhausted(message)
        | Error::PermissionDenied(message)
        | Error::OutOfRange(message) => message.clone(),
        Error::CasMismatch {
            message,
            current_version: Some(v),
        } if !message.contains("current version") => {
            format!("{message} (current version is {v})")
        }
        Error::CasMismatch { message, .. } => message.clone(),
        Error::Other(status) => status.message().replace(['\n', '\r'], " "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_names_the_endpoints() {
        let err = Error::Unavailable("get a/b/c: no endpoint answered within 10s".into());
        let line = error_line(&err, &["127.0.0.1:1".into(), "127.0.0.1:2".into()]);
        assert_eq!(
            line,
            "cannot reach any raftconf server at 127.0.0.1:1,127.0.0.1:2: get a/b/c: no endpoint answered within 10s"
        );
    }

    #[test]
    fn server_refusals_keep_their_message() {
        let err = Error::CasMismatch {
            message: "version mismatch on a/b/c: expected version 1".into(),
            current_version: Some(4),
        };
        assert_eq!(
            error_line(&err, &[]),
            "version mismatch on a/b/c: expected version 1 (current version is 4)"
        );
        let err = Error::NotFound("environment staging does not exist".into());
        assert_eq!(error_line(&err, &[]), "environment staging does not exist");
        let err = Error::Indeterminate("put a/b/c after 1 uncertain attempt(s)".into());
        assert!(error_line(&err, &[]).starts_with("outcome unknown"));
    }

    #[test]
    fn schema_refusals_print_every_violation_after_the_line() {
        let violation = |field: &str, description: &str| FieldViolation {
            field: field.into(),
            description: description.into(),
        };
        let err = Error::SchemaViolation {
            message: "pay/prod/a violates schema version 1 of pay/a: /port: bad; (root): missing"
                .into(),
            violations: vec![violation("/port", "bad"), violation("", "missing")],
        };
        let described = describe(&err, &[]);
        let refusal = described
            .downcast_ref::<Refusal>()
            .expect("keeps the violations");
        assert_eq!(
            refusal.lines(),
            [
                "error: pay/prod/a violates schema version 1 of pay/a: /port: bad; (root): missing",
                "  /port: bad",
                "  (root): missing",
            ]
        );
        let err = Error::SchemaIncompatible {
            message: "schema version 2 of pay/a would break live documents: prod: /port: bad"
                .into(),
            violations: vec![violation("prod:/port", "bad")],
        };
        let described = describe(&err, &[]);
        let refusal = described.downcast_ref::<Refusal>().expect("a refusal");
        assert_eq!(refusal.lines()[1], "  prod: /port: bad");
        // Anything else stays one line.
        let plain = describe(&Error::NotFound("no such tenant".into()), &[]);
        assert!(plain.downcast_ref::<Refusal>().is_none());
    }

    #[test]
    fn the_author_is_printable_ascii() {
        let a = author();
        assert!(!a.is_empty());
        assert!(a.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{a}");
    }
}
