//! Conversions between the raft crate's model and the wire types of
//! `raftconf.v1`, in one place so every service speaks the same dialect.

use raftconf_api::v1 as pb;
use raftconf_raft::model::{ChangeEvent, ChangeKind, DocEntry, EnvInfo, TenantInfo, VersionRecord};
use raftconf_schema::Format;

/// The wire enum for a change kind.
pub fn change_kind(kind: ChangeKind) -> pb::ChangeKind {
    match kind {
        ChangeKind::Put => pb::ChangeKind::Put,
        ChangeKind::Delete => pb::ChangeKind::Delete,
        ChangeKind::TenantCreate => pb::ChangeKind::TenantCreate,
        ChangeKind::EnvCreate => pb::ChangeKind::EnvCreate,
        ChangeKind::TenantDelete => pb::ChangeKind::TenantDelete,
        ChangeKind::EnvDelete => pb::ChangeKind::EnvDelete,
        ChangeKind::SchemaSet => pb::ChangeKind::SchemaSet,
        ChangeKind::SchemaDelete => pb::ChangeKind::SchemaDelete,
        ChangeKind::TenantSettings => pb::ChangeKind::TenantSettings,
    }
}

/// The document format a request names; `None` for a value this server does not know.
pub fn document_format(format: i32) -> Option<Format> {
    match pb::DocumentFormat::try_from(format).ok()? {
        pb::DocumentFormat::Json => Some(Format::Json),
        pb::DocumentFormat::Yaml => Some(Format::Yaml),
        pb::DocumentFormat::Toml => Some(Format::Toml),
    }
}

/// The wire enum for a document format.
pub fn format_to_wire(format: Format) -> pb::DocumentFormat {
    match format {
        Format::Json => pb::DocumentFormat::Json,
        Format::Yaml => pb::DocumentFormat::Yaml,
        Format::Toml => pb::DocumentFormat::Toml,
    }
}

/// A namespace listing entry; the value only when asked for.
pub fn namespace_entry(doc: &DocEntry, include_value: bool) -> pb::NamespaceEntry {
    pb::NamespaceEntry {
        path: doc.path.to_string(),
        version: doc.record.version,
        mod_revision: doc.record.mod_revision,
        value: if include_value {
            doc.value().to_string()
        } else {
            String::new()
        },
    }
}

/// A `GetResponse` for `doc`, with `header`.
pub fn get_response(doc: DocEntry, header: pb::ResponseHeader) -> pb::GetResponse {
    let path = doc.path.to_string();
    let r = doc.record;
    pb::GetResponse {
        header: Some(header),
        path,
        value: r.value.unwrap_or_default(),
        version: r.version,
        mod_revision: r.mod_revision,
        create_revision: r.create_revision,
        author: r.author,
        time_ms: r.time_ms,
        message: r.message,
    }
}

/// One history record.
pub fn version_record(v: VersionRecord) -> pb::VersionRecord {
    pb::VersionRecord {
        revision: v.revision,
        version: v.version,
        kind: change_kind(v.kind) as i32,
        value: v.value.unwrap_or_default(),
        author: v.author,
        time_ms: v.time_ms,
        message: v.message,
    }
}

/// A watch change event.
pub fn change_event(ev: &ChangeEvent) -> pb::ChangeEvent {
    pb::ChangeEvent {
        revision: ev.revision,
        changes: ev
            .changes
            .iter()
            .map(|c| pb::Change {
                kind: change_kind(c.kind) as i32,
                path: c.path.clone(),
                version: c.version,
                value: c.value.clone().unwrap_or_default(),
            })
            .collect(),
        author: ev.author.clone(),
        time_ms: ev.time_ms,
        message: ev.message.clone(),
    }
}

/// A tenant.
pub fn tenant_info(t: TenantInfo) -> pb::TenantInfo {
    pb::TenantInfo {
        name: t.name,
        create_revision: t.create_revision,
        environments: t.environments,
        history_depth: t.history_depth,
        max_namespaces_per_env: t.max_namespaces_per_env,
    }
}

/// An environment.
pub fn env_info(e: EnvInfo) -> pb::EnvironmentInfo {
    pb::EnvironmentInfo {
        tenant: e.tenant,
        name: e.name,
        create_revision: e.create_revision,
        namespaces: e.namespaces,
    }
}

/// One entry of a plan's diff.
pub fn diff_entry(d: raftconf_schema::DiffEntry) -> pb::DiffEntry {
    use pb::diff_entry::Kind;
    let kind = match d.kind {
        raftconf_schema::DiffKind::Added => Kind::Added,
        raftconf_schema::DiffKind::Removed => Kind::Removed,
        raftconf_schema::DiffKind::Changed => Kind::Changed,
    };
    pb::DiffEntry {
        pointer: d.pointer,
        kind: kind as i32,
        old_json: d.old.map(|v| v.to_string()).unwrap_or_default(),
        new_json: d.new.map(|v| v.to_string()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        for f in [Format::Json, Format::Yaml, Format::Toml] {
            assert_eq!(document_format(format_to_wire(f) as i32), Some(f));
        }
        assert_eq!(document_format(99), None);
    }
}
