//! Safer publishing: `set` (edit fields), `rollback`, `diff`, `plan` (and
//! `put --dry-run`), and `apply` (several namespaces as one transaction).

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use raftconf_client::{diff, parse_edit, Client, DiffEntry, Error, NamespaceWrite, WriteOptions};
use raftconf_schema::{parse_document, validate_name, EnvPath, Format, NsPath};
use serde_json::{json, Value};

use super::{conn, DocFormat};

/// `raftconf set PATH POINTER=VALUE …`
#[derive(Debug, Args)]
pub struct SetArgs {
    /// `TENANT/ENV/NAMESPACE`.
    pub path: String,
    /// `/a/b=VALUE` (VALUE is JSON if it parses as JSON, else a string);
    /// `-/a/b` removes the member (put removals after `--`, flags before it).
    #[arg(required = true)]
    pub edits: Vec<String>,
    /// Only if the current version is N (default: the version read first).
    #[arg(long)]
    pub if_version: Option<u64>,
    /// Why (kept in history).
    #[arg(short, long, default_value = "")]
    pub message: String,
}

/// `raftconf rollback PATH --to-version V`
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// `TENANT/ENV/NAMESPACE`.
    pub path: String,
    /// The version whose value is written again (as a new version).
    #[arg(long)]
    pub to_version: u64,
    /// Only if the current version is N.
    #[arg(long)]
    pub if_version: Option<u64>,
    /// Why (kept in history).
    #[arg(short, long, default_value = "")]
    pub message: String,
}

/// `raftconf diff PATH --from V1 [--to V2]`
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// `TENANT/ENV/NAMESPACE`.
    pub path: String,
    /// The older version.
    #[arg(long)]
    pub from: u64,
    /// The newer version (default: the current one).
    #[arg(long)]
    pub to: Option<u64>,
}

/// `raftconf plan PATH -f FILE`
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// `TENANT/ENV/NAMESPACE`.
    pub path: String,
    /// The document to publish (default: stdin).
    #[arg(short = 'f', long = "file")]
    pub file: Option<std::path::PathBuf>,
    /// Document format (default: from the file extension, else json).
    #[arg(long, value_enum)]
    pub format: Option<DocFormat>,
}

/// `raftconf apply TENANT/ENV -f DIR_OR_FILE`
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// `TENANT/ENV`.
    pub env: String,
    /// A directory of `NAMESPACE.json|yaml|yml|toml` files, or one file whose
    /// top-level members are namespaces and their documents.
    #[arg(short = 'f', long = "file")]
    pub file: std::path::PathBuf,
    /// Why (kept in every namespace's history).
    #[arg(short, long, default_value = "")]
    pub message: String,
}

/// Edits fields of the current document: read it, apply the edits on the
/// server with a compare-and-set on the version read, print what changed.
pub async fn set(c: &Client, a: SetArgs, json: bool) -> anyhow::Result<()> {
    let path: NsPath = a.path.parse()?;
    let path = path.to_string();
    let edits = a
        .edits
        .iter()
        .map(|e| parse_edit(e).map_err(|err| anyhow!("{e}: {err}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let current = c.get(&path).await.map_err(|e| failed(e, c))?;
    // What the server will compute, shown before it is confirmed.
    let edited =
        raftconf_schema::apply_edits(&current.value, &edits).map_err(|e| anyhow!("{path}: {e}"))?;
    let options = WriteOptions {
        if_version: Some(a.if_version.unwrap_or(current.version)),
        message: a.message,
        ..WriteOptions::default()
    };
    let w = c
        .patch(&path, &edits, options)
        .await
        .map_err(|e| failed(e, c))?;
    let changes = diff(Some(&current.value), Some(&edited));
    if json {
        println!(
            "{}",
            json!({"revision": w.revision, "version": w.version, "diff": changes})
        );
    } else {
        println!(
            "set {path}: version {} at revision {}",
            w.version, w.revision
        );
        print_diff(&changes);
    }
    Ok(())
}

/// Writes an earlier version's value again.
pub async fn rollback(c: &Client, a: RollbackArgs, json: bool) -> anyhow::Result<()> {
    let path: NsPath = a.path.parse()?;
    let path = path.to_string();
    let options = WriteOptions {
        if_version: a.if_version,
        message: a.message,
        ..WriteOptions::default()
    };
    let w = c
        .rollback(&path, a.to_version, options)
        .await
        .map_err(|e| failed(e, c))?;
    if json {
        println!("{}", json!({"revision": w.revision, "version": w.version}));
    } else {
        println!(
            "rolled {path} back to the value of version {}: now version {} at revision {}",
            a.to_version, w.version, w.revision
        );
    }
    Ok(())
}

/// The changes between two versions of a namespace, from its history.
pub async fn diff_versions(c: &Client, a: DiffArgs, json: bool) -> anyhow::Result<()> {
    let path: NsPath = a.path.parse()?;
    let path = path.to_string();
    let old = version_value(c, &path, a.from).await?;
    let new = match a.to {
        Some(v) => version_value(c, &path, v).await?,
        None => match c.get(&path).await {
            Ok(doc) => Some(doc.value),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(failed(e, c)),
        },
    };
    let changes = diff(old.as_ref(), new.as_ref());
    if json {
        println!("{}", serde_json::to_string(&changes)?);
    } else {
        let to = a.to.map_or("the current version".to_string(), |v| {
            format!("version {v}")
        });
        println!("{path}: version {} -> {to}", a.from);
        print_diff(&changes);
    }
    Ok(())
}

/// The value of version `version` (`None`: a deletion), from history.
async fn version_value(c: &Client, path: &str, version: u64) -> anyhow::Result<Option<Value>> {
    let page = c
        .history(path, 1, version.saturating_add(1))
        .await
        .map_err(|e| failed(e, c))?;
    match page.records.into_iter().next() {
        Some(r) if r.version == version => Ok(r.value),
        _ => bail!("{path} has no version {version} in its history (never written, or older than the history kept)"),
    }
}

/// What publishing a document would change, and whether the schema accepts
/// it (the server's `Plan`); changes nothing. A refusal is an error listing
/// every violation (exit 1).
pub async fn plan(
    c: &Client,
    path: &str,
    file: Option<&Path>,
    format: Option<DocFormat>,
    json: bool,
) -> anyhow::Result<()> {
    let ns_path: NsPath = path.parse()?;
    let path = ns_path.to_string();
    let (text, source) = super::ops::read_document(file)?;
    let format = super::ops::doc_format(format, file);
    // Refuse a malformed document here, with its line and column.
    parse_document(&text, format).map_err(|e| anyhow!("{source}: {e}"))?;
    let plan = c
        .plan(&path, &text, format)
        .await
        .map_err(|e| failed(e, c))?;
    if json {
        println!(
            "{}",
            json!({
                "path": path,
                "current_version": plan.current_version,
                "diff": plan.diff,
                "schema_version": plan.schema_version,
                "valid": plan.is_valid(),
                "violations": plan
                    .violations
                    .iter()
                    .map(|v| json!({"field": v.field, "description": v.description}))
                    .collect::<Vec<_>>(),
            })
        );
    } else {
        match plan.current_version {
            0 => println!("{path}: does not exist yet; it would be created"),
            v => println!("{path}: changes against version {v}"),
        }
        print_diff(&plan.diff);
        if plan.is_valid() {
            match plan.schema_version {
                0 => println!("schema: none; nothing was changed"),
                v => println!("schema: valid against version {v}; nothing was changed"),
            }
        }
    }
    if plan.is_valid() {
        return Ok(());
    }
    // The line a refused put gets from the server.
    let listed = plan
        .violations
        .iter()
        .map(|v| {
            let at = if v.field.is_empty() {
                "(root)"
            } else {
                v.field.as_str()
            };
            format!("{at}: {}", v.description)
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(anyhow::Error::new(conn::Refusal {
        line: format!(
            "{path} violates schema version {} of {}/{}: {listed}",
            plan.schema_version, ns_path.tenant, ns_path.namespace
        ),
        violations: plan.violations,
    }))
}

/// Publishes several namespaces of one environment as one transaction.
pub async fn apply(c: &Client, a: ApplyArgs, json: bool) -> anyhow::Result<()> {
    let env = EnvPath::parse(&a.env)?;
    let writes = read_namespaces(&a.file)?;
    let names: Vec<String> = writes.iter().map(|w| w.namespace.clone()).collect();
    let env_text = format!("{}/{}", env.tenant, env.env);
    let revision = c
        .apply(&env_text, &writes, &a.message)
        .await
        .map_err(|e| failed(e, c))?;
    if json {
        println!("{}", json!({"revision": revision, "namespaces": names}));
    } else {
        println!(
            "applied {} namespaces to {env_text} at revision {revision}: {}",
            names.len(),
            names.join(", ")
        );
    }
    Ok(())
}

/// The namespaces and documents of `apply -f`: a directory of files named
/// after their namespaces, or one file of `namespace: document` members.
fn read_namespaces(file: &Path) -> anyhow::Result<Vec<NamespaceWrite>> {
    let mut writes = Vec::new();
    if file.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(file)
            .with_context(|| format!("cannot read the directory {}", file.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let p = entry.path();
            let Some(format) = p
                .extension()
                .and_then(|e| e.to_str())
                .and_then(Format::from_extension)
            else {
                continue;
            };
            let name = p
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| anyhow!("{}: not a namespace name", p.display()))?;
            validate_name("namespace", name).map_err(|e| anyhow!("{}: {e}", p.display()))?;
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let canonical =
                parse_document(&text, format).map_err(|e| anyhow!("{}: {e}", p.display()))?;
            writes.push(NamespaceWrite::put(name, serde_json::from_str(&canonical)?));
        }
        if writes.is_empty() {
            bail!(
                "{}: no NAMESPACE.json, .yaml, .yml or .toml files",
                file.display()
            );
        }
        return Ok(writes);
    }
    let format = file
        .extension()
        .and_then(|e| e.to_str())
        .and_then(Format::from_extension)
        .unwrap_or(Format::Json);
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let canonical =
        parse_document(&text, format).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let Value::Object(members) = serde_json::from_str(&canonical)? else {
        bail!("{}: not an object of namespaces", file.display());
    };
    for (name, doc) in members {
        validate_name("namespace", &name).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        if !doc.is_object() {
            bail!(
                "{}: the document of namespace {name} is not an object",
                file.display()
            );
        }
        writes.push(NamespaceWrite::put(name, doc));
    }
    if writes.is_empty() {
        bail!("{}: no namespaces in it", file.display());
    }
    Ok(writes)
}

fn print_diff(changes: &[DiffEntry]) {
    if changes.is_empty() {
        println!("  (no changes)");
    }
    for change in changes {
        println!("  {change}");
    }
}

fn failed(e: Error, c: &Client) -> anyhow::Error {
    conn::describe(&e, &c.endpoints())
}
