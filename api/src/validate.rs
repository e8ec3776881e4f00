//! The naming rule on the request types (`validator` attributes added by
//! `build.rs` with the `validate` feature): `request.validate()` refuses a
//! request whose names break it, and [`describe`] says which and why.

use std::borrow::Cow;

pub use validator::Validate;
use validator::{ValidationError, ValidationErrors, ValidationErrorsKind};

fn rule(kind: &'static str, value: &str) -> Result<(), ValidationError> {
    raftconf_schema::validate_name(kind, value)
        .map_err(|e| ValidationError::new("name").with_message(Cow::Owned(e.to_string())))
}

/// A tenant name.
pub fn tenant(value: &str) -> Result<(), ValidationError> {
    rule("tenant", value)
}

/// An environment name.
pub fn environment(value: &str) -> Result<(), ValidationError> {
    rule("environment", value)
}

/// A namespace name.
pub fn namespace(value: &str) -> Result<(), ValidationError> {
    rule("namespace", value)
}

/// A `tenant/env/namespace` path.
pub fn namespace_path(value: &str) -> Result<(), ValidationError> {
    value
        .parse::<raftconf_schema::NsPath>()
        .map(|_| ())
        .map_err(|e| ValidationError::new("path").with_message(Cow::Owned(e.to_string())))
}

/// Every failure of `errors`, one line, in field order (nested fields as
/// `writes[1].namespace`).
pub fn describe(errors: &ValidationErrors) -> String {
    let mut lines = Vec::new();
    collect("", errors, &mut lines);
    lines.sort();
    lines.join("; ")
}

fn collect(prefix: &str, errors: &ValidationErrors, out: &mut Vec<String>) {
    for (field, kind) in errors.errors() {
        let name = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                for e in list {
                    out.push(match &e.message {
                        Some(m) => m.to_string(),
                        None => format!("{name}: {}", e.code),
                    });
                }
            }
            ValidationErrorsKind::Struct(inner) => collect(&name, inner, out),
            ValidationErrorsKind::List(items) => {
                for (i, inner) in items {
                    collect(&format!("{name}[{i}]"), inner, out);
                }
            }
        }
    }
}
