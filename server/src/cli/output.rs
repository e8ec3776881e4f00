//! Rendering of operator command results, as text for people and as JSON for
//! scripts. The JSON shapes of `put`, `get` and `watch` are a contract:
//!
//! - put / delete: `{"revision":R,"version":V}`
//! - get: `{"path":P,"revision":R,"version":V,"value":{…},"store_revision":S}`
//!   (R is the namespace's modified revision, S the store revision served at)
//! - watch, one object per line: `{"type":"put"|"delete"|"snapshot","path":P,
//!   "revision":R,"version":V,"value":{…}}`, and `{"type":"progress","revision":R}`;
//!   a snapshot prints one "snapshot" line per namespace, at the snapshot's revision.
//!   A schema set or deleted for a watched namespace prints `"type":"schema-set"` or
//!   `"schema-delete"` (one line per environment's path), with `version` the schema
//!   version and `value` the schema (`null` for a delete).
//! - schema commands: see [`super::schema`].

use raftconf_client::{
    ChangeKind, ClientsReport, ClusterStatus, Document, EnvInfo, HistoryPage, Listing, Member,
    TenantInfo, WatchEvent,
};
use raftconf_schema::canonical_json;
use serde::Serialize;
use serde_json::Value;

use super::text::{format_time_ms, table};

/// A document as JSON output: `null` for none (a delete).
fn doc_value(value: &Option<Value>) -> Value {
    value.clone().unwrap_or(Value::Null)
}

/// A document as text output: its canonical JSON (as stored), empty for none.
fn doc_text(value: &Option<Value>) -> String {
    value.as_ref().map(canonical_json).unwrap_or_default()
}

fn to_line<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[derive(Serialize)]
struct WriteJson {
    revision: u64,
    version: u64,
}

/// `put` / `delete` as JSON.
pub fn write_json(revision: u64, version: u64) -> String {
    to_line(&WriteJson { revision, version })
}

/// `put` as text.
pub fn put_text(path: &str, revision: u64, version: u64, dry_run: bool) -> String {
    if dry_run {
        if version == 0 {
            format!("dry run: the document is valid; {path} does not exist yet")
        } else {
            format!(
                "dry run: the document is valid; {path} is at version {version} (modified at revision {revision})"
            )
        }
    } else {
        format!("put {path}: version {version} at revision {revision}")
    }
}

/// `delete` as text.
pub fn delete_text(path: &str, revision: u64, version: u64) -> String {
    format!("deleted {path}: tombstone version {version} at revision {revision}")
}

#[derive(Serialize)]
struct GetJson<'a> {
    path: &'a str,
    revision: u64,
    version: u64,
    value: Value,
    store_revision: u64,
}

/// `get` as JSON.
pub fn get_json(d: &Document) -> String {
    to_line(&GetJson {
        path: &d.path,
        revision: d.mod_revision,
        version: d.version,
        value: d.value.clone(),
        store_revision: d.store_revision,
    })
}

/// `get` as text: the pretty document (stdout), and a line about it (stderr).
pub fn get_text(d: &Document) -> (String, String) {
    let value = serde_json::to_string_pretty(&d.value).unwrap_or_else(|_| canonical_json(&d.value));
    let about = format!(
        "# {} version {}, modified at revision {} by {} ({}){}; store revision {}",
        d.path,
        d.version,
        d.mod_revision,
        d.author,
        format_time_ms(d.time_ms),
        if d.message.is_empty() {
            String::new()
        } else {
            format!(": {}", d.message)
        },
        d.store_revision,
    );
    (value, about)
}

#[derive(Serialize)]
struct WatchJson<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    path: &'a str,
    revision: u64,
    version: u64,
    value: Value,
}

#[derive(Serialize)]
struct ProgressJson {
    #[serde(rename = "type")]
    kind: &'static str,
    revision: u64,
}

/// The lower-case name of a change kind.
pub fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Put => "put",
        ChangeKind::Delete => "delete",
        ChangeKind::SchemaSet => "schema-set",
        ChangeKind::SchemaDelete => "schema-delete",
        ChangeKind::TenantCreate => "tenant-create",
        ChangeKind::TenantDelete => "tenant-delete",
        ChangeKind::EnvCreate => "env-create",
        ChangeKind::EnvDelete => "env-delete",
        _ => "unknown",
    }
}

/// The lines one watch event prints (progress only in JSON).
pub fn watch_lines(event: &WatchEvent, json: bool) -> Vec<String> {
    match event {
        WatchEvent::Change {
            revision, changes, ..
        } => changes
            .iter()
            .map(|ch| {
                let kind = kind_name(ch.kind);
                if json {
                    to_line(&WatchJson {
                        kind,
                        path: &ch.path,
                        revision: *revision,
                        version: ch.version,
                        value: doc_value(&ch.value),
                    })
                } else if ch.value.is_none() {
                    format!("{revision} {kind} {} v{}", ch.path, ch.version)
                } else {
                    format!(
                        "{revision} {kind} {} v{} {}",
                        ch.path,
                        ch.version,
                        doc_text(&ch.value)
                    )
                }
            })
            .collect(),
        WatchEvent::Snapshot {
            revision, entries, ..
        } => entries
            .iter()
            .map(|e| {
                if json {
                    to_line(&WatchJson {
                        kind: "snapshot",
                        path: &e.path,
                        revision: *revision,
                        version: e.version,
                        value: doc_value(&e.value),
                    })
                } else {
                    format!(
                        "{revision} snapshot {} v{} {}",
                        e.path,
                        e.version,
                        doc_text(&e.value)
                    )
                }
            })
            .collect(),
        WatchEvent::Progress { revision } if json => vec![to_line(&ProgressJson {
            kind: "progress",
            revision: *revision,
        })],
        WatchEvent::Progress { .. } => Vec::new(),
    }
}

#[derive(Serialize)]
struct EntryJson<'a> {
    path: &'a str,
    version: u64,
    revision: u64,
}

#[derive(Serialize)]
struct ListJson<'a> {
    store_revision: u64,
    entries: Vec<EntryJson<'a>>,
}

/// `list`.
pub fn list(l: &Listing, json: bool) -> String {
    if json {
        return to_line(&ListJson {
            store_revision: l.revision,
            entries: l
                .entries
                .iter()
                .map(|e| EntryJson {
                    path: &e.path,
                    version: e.version,
                    revision: e.mod_revision,
                })
                .collect(),
        });
    }
    let rows = l
        .entries
        .iter()
        .map(|e| {
            vec![
                e.path.clone(),
                e.version.to_string(),
                e.mod_revision.to_string(),
            ]
        })
        .collect();
    table(&["NAMESPACE", "VERSION", "REVISION"], rows)
}

#[derive(Serialize)]
struct RecordJson<'a> {
    version: u64,
    revision: u64,
    kind: &'a str,
    author: &'a str,
    time_ms: i64,
    message: &'a str,
    value: Value,
}

/// `history`.
pub fn history(h: &HistoryPage, json: bool) -> String {
    if json {
        let records: Vec<RecordJson<'_>> = h
            .records
            .iter()
            .map(|v| RecordJson {
                version: v.version,
                revision: v.revision,
                kind: kind_name(v.kind),
                author: &v.author,
                time_ms: v.time_ms,
                message: &v.message,
                value: doc_value(&v.value),
            })
            .collect();
        return to_line(&records);
    }
    let rows = h
        .records
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                v.revision.to_string(),
                kind_name(v.kind).to_string(),
                format_time_ms(v.time_ms),
                v.author.clone(),
                v.message.clone(),
            ]
        })
        .collect();
    table(
        &["VERSION", "REVISION", "KIND", "TIME", "AUTHOR", "MESSAGE"],
        rows,
    )
}

#[derive(Serialize)]
struct TenantJson<'a> {
    name: &'a str,
    revision: u64,
    environments: &'a [String],
    history_depth: u64,
    max_namespaces_per_env: u64,
}

/// `tenant list`.
pub fn tenants(tenants: &[TenantInfo], json: bool) -> String {
    if json {
        let v: Vec<TenantJson<'_>> = tenants
            .iter()
            .map(|t| TenantJson {
                name: &t.name,
                revision: t.create_revision,
                environments: &t.environments,
                history_depth: t.history_depth,
                max_namespaces_per_env: t.max_namespaces_per_env,
            })
            .collect();
        return to_line(&v);
    }
    let rows = tenants
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.environments.join(","),
                t.history_depth.to_string(),
                t.max_namespaces_per_env.to_string(),
            ]
        })
        .collect();
    table(
        &["TENANT", "ENVIRONMENTS", "HISTORY", "MAX NAMESPACES"],
        rows,
    )
}

#[derive(Serialize)]
struct EnvJson<'a> {
    tenant: &'a str,
    name: &'a str,
    revision: u64,
    namespaces: u64,
}

/// `env list`.
pub fn environments(envs: &[EnvInfo], json: bool) -> String {
    if json {
        let v: Vec<EnvJson<'_>> = envs
            .iter()
            .map(|e| EnvJson {
                tenant: &e.tenant,
                name: &e.name,
                revision: e.create_revision,
                namespaces: e.namespaces,
            })
            .collect();
        return to_line(&v);
    }
    let rows = envs
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.namespaces.to_string(),
                e.create_revision.to_string(),
            ]
        })
        .collect();
    table(&["ENVIRONMENT", "NAMESPACES", "CREATED AT"], rows)
}

/// `tenant create` / `env create`.
pub fn created(what: &str, revision: u64, json: bool) -> String {
    if json {
        format!("{{\"revision\":{revision}}}")
    } else {
        format!("created {what} at revision {revision}")
    }
}

/// The answer to a tenant or environment deletion.
pub fn deleted(what: &str, revision: u64, json: bool) -> String {
    if json {
        format!("{{\"revision\":{revision}}}")
    } else {
        format!("deleted {what} at revision {revision}")
    }
}

#[derive(Serialize)]
struct MemberJson<'a> {
    id: u64,
    peer_addr: &'a str,
    client_addr: &'a str,
    voter: bool,
    role: &'a str,
    applied_index: u64,
    lag: u64,
    reachable: bool,
}

impl<'a> From<&'a Member> for MemberJson<'a> {
    fn from(m: &'a Member) -> Self {
        MemberJson {
            id: m.id,
            peer_addr: &m.peer_addr,
            client_addr: &m.client_addr,
            voter: m.voter,
            role: &m.role,
            applied_index: m.applied_index,
            lag: m.lag,
            reachable: m.reachable,
        }
    }
}

#[derive(Serialize)]
struct MembersJson<'a> {
    members: Vec<MemberJson<'a>>,
}

/// The membership after a change (`cluster add-node|promote|remove-node`).
pub fn members(members: &[Member], json: bool) -> String {
    if json {
        return to_line(&MembersJson {
            members: members.iter().map(MemberJson::from).collect(),
        });
    }
    let mut out = String::from("members:");
    for m in members {
        out.push_str(&format!(
            "\n  {} {} client={} peer={}",
            m.id,
            if m.voter { "voter" } else { "learner" },
            m.client_addr,
            m.peer_addr
        ));
    }
    out
}

#[derive(Serialize)]
struct StatusJson<'a> {
    cluster_id: &'a str,
    node_id: u64,
    leader_id: u64,
    term: u64,
    revision: u64,
    applied_index: u64,
    committed_index: u64,
    server_version: &'a str,
    state_digest: &'a str,
    members: Vec<MemberJson<'a>>,
}

/// `status`.
pub fn status(r: &ClusterStatus, json: bool) -> String {
    let cluster_id = r.cluster_id.as_str();
    if json {
        return to_line(&StatusJson {
            cluster_id,
            node_id: r.node_id,
            leader_id: r.leader_id,
            term: r.term,
            revision: r.revision,
            applied_index: r.applied_index,
            committed_index: r.committed_index,
            server_version: &r.server_version,
            state_digest: &r.state_digest,
            members: r.members.iter().map(MemberJson::from).collect(),
        });
    }
    let leader = if r.leader_id == 0 {
        "unknown".to_string()
    } else {
        r.leader_id.to_string()
    };
    let mut out = format!(
        "cluster    {cluster_id}\nnode       {}\nleader     {leader}\nterm       {}\nrevision   {}\napplied    {}\ncommitted  {}\nversion    {}\ndigest     {}\nmembers:",
        r.node_id, r.term, r.revision, r.applied_index, r.committed_index, r.server_version, r.state_digest
    );
    let mut rows = Vec::new();
    for m in &r.members {
        rows.push(vec![
            m.id.to_string(),
            if m.role.is_empty() {
                "?".into()
            } else {
                m.role.clone()
            },
            if m.voter { "voter" } else { "learner" }.into(),
            m.applied_index.to_string(),
            m.lag.to_string(),
            if m.reachable { "yes" } else { "no" }.into(),
            m.client_addr.clone(),
            m.peer_addr.clone(),
        ]);
    }
    out.push('\n');
    out.push_str(&table(
        &[
            "ID",
            "ROLE",
            "MEMBER",
            "APPLIED",
            "LAG",
            "REACHABLE",
            "CLIENT",
            "PEER",
        ],
        rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use raftconf_client::{Change, NamespaceEntry};
    use serde_json::json;

    use super::*;

    #[test]
    fn put_json_is_exact() {
        assert_eq!(write_json(17, 3), r#"{"revision":17,"version":3}"#);
    }

    #[test]
    fn get_json_is_exact() {
        let d = Document {
            path: "pay/prod/checkout".into(),
            value: json!({"a": 1, "b": {"c": true}}),
            version: 3,
            mod_revision: 17,
            create_revision: 1,
            store_revision: 20,
            author: "ops".into(),
            time_ms: 0,
            message: String::new(),
        };
        assert_eq!(
            get_json(&d),
            r#"{"path":"pay/prod/checkout","revision":17,"version":3,"value":{"a":1,"b":{"c":true}},"store_revision":20}"#
        );
        let (value, about) = get_text(&d);
        assert_eq!(value, "{\n  \"a\": 1,\n  \"b\": {\n    \"c\": true\n  }\n}");
        assert_eq!(
            about,
            "# pay/prod/checkout version 3, modified at revision 17 by ops (1970-01-01T00:00:00.000Z); store revision 20"
        );
    }

    #[test]
    fn watch_json_lines_are_exact() {
        let change = WatchEvent::Change {
            revision: 9,
            changes: vec![
                Change {
                    kind: ChangeKind::Put,
                    path: "t/e/a".into(),
                    version: 2,
                    value: Some(json!({"x": 1, "y": [1, 2]})),
                },
                Change {
                    kind: ChangeKind::Delete,
                    path: "t/e/b".into(),
                    version: 4,
                    value: None,
                },
            ],
            author: "ops".into(),
            time_ms: 0,
            message: String::new(),
        };
        assert_eq!(
            watch_lines(&change, true),
            [
                r#"{"type":"put","path":"t/e/a","revision":9,"version":2,"value":{"x":1,"y":[1,2]}}"#,
                r#"{"type":"delete","path":"t/e/b","revision":9,"version":4,"value":null}"#,
            ]
        );
        let snap = WatchEvent::Snapshot {
            revision: 5,
            entries: vec![NamespaceEntry {
                path: "t/e/a".into(),
                version: 1,
                mod_revision: 3,
                value: Some(json!({"y": 2})),
            }],
            reason: "start".into(),
        };
        assert_eq!(
            watch_lines(&snap, true),
            [r#"{"type":"snapshot","path":"t/e/a","revision":5,"version":1,"value":{"y":2}}"#]
        );
        assert_eq!(
            watch_lines(&snap, false),
            [r#"5 snapshot t/e/a v1 {"y":2}"#]
        );
        let progress = WatchEvent::Progress { revision: 5 };
        assert_eq!(
            watch_lines(&progress, true),
            [r#"{"type":"progress","revision":5}"#]
        );
        assert!(watch_lines(&progress, false).is_empty());
        assert_eq!(
            watch_lines(&change, false),
            [r#"9 put t/e/a v2 {"x":1,"y":[1,2]}"#, "9 delete t/e/b v4"]
        );
    }

    #[test]
    fn schema_changes_print_as_their_own_type() {
        let change = |kind, value| WatchEvent::Change {
            revision: 12,
            changes: vec![Change {
                kind,
                path: "t/prod/a".into(),
                version: 2,
                value,
            }],
            author: "ops".into(),
            time_ms: 0,
            message: String::new(),
        };
        let set = change(ChangeKind::SchemaSet, Some(json!({"type": "object"})));
        assert_eq!(
            watch_lines(&set, true),
            [
                r#"{"type":"schema-set","path":"t/prod/a","revision":12,"version":2,"value":{"type":"object"}}"#
            ]
        );
        assert_eq!(
            watch_lines(&set, false),
            [r#"12 schema-set t/prod/a v2 {"type":"object"}"#]
        );
        let deleted = change(ChangeKind::SchemaDelete, None);
        assert_eq!(
            watch_lines(&deleted, true),
            [
                r#"{"type":"schema-delete","path":"t/prod/a","revision":12,"version":2,"value":null}"#
            ]
        );
    }

    #[test]
    fn text_put_is_friendly() {
        assert_eq!(
            put_text("a/b/c", 7, 2, false),
            "put a/b/c: version 2 at revision 7"
        );
        assert!(put_text("a/b/c", 0, 0, true).contains("does not exist yet"));
    }

    #[test]
    fn unknown_change_kinds_are_named_unknown() {
        assert_eq!(kind_name(ChangeKind::EnvCreate), "env-create");
        assert_eq!(kind_name(ChangeKind::Unknown(42)), "unknown");
    }
}

#[derive(Serialize)]
struct ClientsJson<'a> {
    path: &'a str,
    latest_revision: u64,
    current: u64,
    lagging: u64,
    refusing: u64,
    unreachable_nodes: &'a [u64],
    subscribers: Vec<SubscriberJson<'a>>,
}

#[derive(Serialize)]
struct SubscriberJson<'a> {
    client_id: &'a str,
    node_id: u64,
    applied_revision: u64,
    state: &'static str,
    connected: bool,
    labels: &'a std::collections::BTreeMap<String, String>,
    paths: &'a [String],
    updated_ms: i64,
    refusal: Option<RefusalJson<'a>>,
}

#[derive(Serialize)]
struct RefusalJson<'a> {
    revision: u64,
    reasons: &'a [String],
}

/// `clients`: a summary line, then one row per subscriber.
pub fn clients(r: &ClientsReport, json: bool) -> String {
    if json {
        let subscribers = r
            .subscribers
            .iter()
            .map(|s| SubscriberJson {
                client_id: &s.client_id,
                node_id: s.node_id,
                applied_revision: s.applied_revision,
                state: s.state.as_str(),
                connected: s.connected,
                labels: &s.labels,
                paths: &s.paths,
                updated_ms: s.updated_ms,
                refusal: s.last_refusal.as_ref().map(|f| RefusalJson {
                    revision: f.revision,
                    reasons: &f.reasons,
                }),
            })
            .collect();
        return to_line(&ClientsJson {
            path: &r.path,
            latest_revision: r.latest_revision,
            current: r.current,
            lagging: r.lagging,
            refusing: r.refusing,
            unreachable_nodes: &r.unreachable_nodes,
            subscribers,
        });
    }
    let mut out = format!(
        "{} at revision {}: {} current, {} lagging, {} refusing",
        r.path, r.latest_revision, r.current, r.lagging, r.refusing
    );
    if !r.unreachable_nodes.is_empty() {
        let nodes: Vec<String> = r.unreachable_nodes.iter().map(u64::to_string).collect();
        out.push_str(&format!(
            " (node(s) {} did not answer: their subscribers are missing)",
            nodes.join(", ")
        ));
    }
    if r.subscribers.is_empty() {
        return out;
    }
    let rows = r
        .subscribers
        .iter()
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let refusal = s
                .last_refusal
                .as_ref()
                .map(|f| format!("revision {}: {}", f.revision, f.reasons.join("; ")))
                .unwrap_or_default();
            vec![
                s.client_id.clone(),
                s.node_id.to_string(),
                s.applied_revision.to_string(),
                s.state.as_str().to_string(),
                if s.connected { "yes" } else { "no" }.to_string(),
                labels.join(","),
                refusal,
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &[
            "CLIENT",
            "NODE",
            "APPLIED",
            "STATE",
            "CONNECTED",
            "LABELS",
            "REFUSED",
        ],
        rows,
    ));
    out
}
