//! `raftconf schema …`: set, show, list the versions of and delete the JSON
//! Schema of a `TENANT/NAMESPACE` (it binds the namespace in every
//! environment of the tenant), and how their results print.
//!
//! A schema is checked here first (it parses, it is draft 2020-12, it
//! compiles), so a broken one is refused with its line, column or keyword
//! without a server. A schema the live documents would break is refused by
//! the server; [`super::conn`] prints every violation, one per line.
//!
//! JSON shapes (a contract for scripts, like [`super::output`]'s):
//!
//! - set / delete: `{"revision":R,"version":V}` (V is the schema version)
//! - get: one record, history: an array of them, newest first:
//!   `{"version":V,"revision":R,"schema":{…}|null,"deleted":B,"forced":B,
//!   "author":A,"time_ms":T,"message":M}`

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use raftconf_client::{SchemaOptions, SchemaRecord};
use raftconf_schema::{Format, SchemaDocument};
use serde::Serialize;
use serde_json::Value;

use super::output::write_json;
use super::text::{format_time_ms, table};
use super::{conn, SchemaCommand, SchemaFormat};

/// Runs one `schema` subcommand.
pub async fn run(endpoints: &[String], json: bool, command: SchemaCommand) -> anyhow::Result<()> {
    let failed = |e: raftconf_client::Error| conn::describe(&e, endpoints);
    match command {
        SchemaCommand::Set {
            path,
            file,
            force,
            message,
            format,
        } => {
            let format = schema_format(format, &file)?;
            let (text, source) = read_schema(&file)?;
            // Refuse a broken schema here, naming the line, column or keyword.
            SchemaDocument::parse(&text, format)
                .and_then(|doc| doc.compile())
                .map_err(|e| anyhow!("{source}: {e}"))?;
            let c = conn::connect(endpoints).await?;
            let options = SchemaOptions { force, message };
            let w = c
                .set_schema_text(&path, &text, format, options)
                .await
                .map_err(failed)?;
            if json {
                println!("{}", write_json(w.revision, w.version));
            } else {
                let forced = if force { " (forced)" } else { "" };
                println!(
                    "set schema of {path}: version {} at revision {}{forced}",
                    w.version, w.revision
                );
            }
        }
        SchemaCommand::Get { path, version } => {
            let c = conn::connect(endpoints).await?;
            let record = c.get_schema(&path, version).await.map_err(failed)?;
            if json {
                println!("{}", record_json(&record));
            } else {
                let (schema, about) = get_text(&path, &record);
                eprintln!("{about}");
                if let Some(schema) = schema {
                    println!("{schema}");
                }
            }
        }
        SchemaCommand::History { path } => {
            let c = conn::connect(endpoints).await?;
            let records = c.schema_history(&path).await.map_err(failed)?;
            println!("{}", history(&records, json));
        }
        SchemaCommand::Delete { path, message } => {
            let c = conn::connect(endpoints).await?;
            let w = c.delete_schema(&path, &message).await.map_err(failed)?;
            if json {
                println!("{}", write_json(w.revision, w.version));
            } else {
                println!(
                    "deleted schema of {path}: version {} at revision {}",
                    w.version, w.revision
                );
            }
        }
    }
    Ok(())
}

/// `--format`, else the file extension (`json`, `yaml`, `yml`), else JSON.
/// TOML is no schema format.
pub fn schema_format(flag: Option<SchemaFormat>, file: &Path) -> anyhow::Result<Format> {
    let from_extension = file
        .extension()
        .and_then(|e| e.to_str())
        .and_then(Format::from_extension);
    match (flag, from_extension) {
        (Some(SchemaFormat::Json), _) => Ok(Format::Json),
        (Some(SchemaFormat::Yaml), _) => Ok(Format::Yaml),
        (None, Some(Format::Toml)) => bail!(
            "{}: a schema is JSON or YAML, not TOML (use --format to say which)",
            file.display()
        ),
        (None, Some(format)) => Ok(format),
        (None, None) => Ok(Format::Json),
    }
}

/// The schema text and a name for it in error messages; `-` is stdin.
fn read_schema(file: &Path) -> anyhow::Result<(String, String)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the schema from stdin")?;
        return Ok((text, "stdin".to_string()));
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok((text, file.display().to_string()))
}

#[derive(Serialize)]
struct RecordJson<'a> {
    version: u64,
    revision: u64,
    schema: Value,
    deleted: bool,
    forced: bool,
    author: &'a str,
    time_ms: i64,
    message: &'a str,
}

impl<'a> From<&'a SchemaRecord> for RecordJson<'a> {
    fn from(r: &'a SchemaRecord) -> Self {
        RecordJson {
            version: r.version,
            revision: r.revision,
            schema: r.schema.clone().unwrap_or(Value::Null),
            deleted: r.deleted,
            forced: r.forced,
            author: &r.author,
            time_ms: r.time_ms,
            message: &r.message,
        }
    }
}

fn to_line<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `schema get` as JSON: the record.
pub fn record_json(r: &SchemaRecord) -> String {
    to_line(&RecordJson::from(r))
}

/// What a version did: "set", "set (forced)" or "deleted".
fn change(r: &SchemaRecord) -> &'static str {
    match (r.deleted, r.forced) {
        (true, _) => "deleted",
        (false, true) => "set (forced)",
        (false, false) => "set",
    }
}

/// `schema get` as text: the pretty schema for stdout (none for a version
/// that deleted it), and a line about it for stderr.
pub fn get_text(path: &str, r: &SchemaRecord) -> (Option<String>, String) {
    let schema = r
        .schema
        .as_ref()
        .map(|s| serde_json::to_string_pretty(s).unwrap_or_else(|_| s.to_string()));
    let about = format!(
        "# schema of {path} version {}: {} at revision {} by {} ({}){}",
        r.version,
        change(r),
        r.revision,
        r.author,
        format_time_ms(r.time_ms),
        if r.message.is_empty() {
            String::new()
        } else {
            format!(": {}", r.message)
        },
    );
    (schema, about)
}

/// `schema history`, newest first.
pub fn history(records: &[SchemaRecord], json: bool) -> String {
    if json {
        let v: Vec<RecordJson<'_>> = records.iter().map(RecordJson::from).collect();
        return to_line(&v);
    }
    let rows = records
        .iter()
        .map(|r| {
            vec![
                r.version.to_string(),
                r.revision.to_string(),
                change(r).to_string(),
                format_time_ms(r.time_ms),
                r.author.clone(),
                r.message.clone(),
            ]
        })
        .collect();
    table(
        &["VERSION", "REVISION", "CHANGE", "TIME", "AUTHOR", "MESSAGE"],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(version: u64, schema: Option<Value>, forced: bool) -> SchemaRecord {
        SchemaRecord {
            version,
            revision: version + 10,
            deleted: schema.is_none(),
            schema,
            forced,
            author: "ops".into(),
            time_ms: 0,
            message: if forced {
                "force it".into()
            } else {
                String::new()
            },
        }
    }

    #[test]
    fn format_comes_from_flag_then_extension() {
        let f = |flag, file: &str| schema_format(flag, Path::new(file)).map_err(|e| e.to_string());
        assert_eq!(f(None, "s.yml"), Ok(Format::Yaml));
        assert_eq!(f(None, "s.JSON"), Ok(Format::Json));
        assert_eq!(f(None, "-"), Ok(Format::Json));
        assert_eq!(f(None, "schema"), Ok(Format::Json));
        assert_eq!(f(Some(SchemaFormat::Yaml), "s.json"), Ok(Format::Yaml));
        assert_eq!(f(Some(SchemaFormat::Json), "s.toml"), Ok(Format::Json));
        let err = f(None, "s.toml").expect_err("toml");
        assert!(err.contains("not TOML"), "{err}");
    }

    #[test]
    fn records_print_exactly() {
        let set = record(2, Some(json!({"type": "object"})), true);
        assert_eq!(
            record_json(&set),
            r#"{"version":2,"revision":12,"schema":{"type":"object"},"deleted":false,"forced":true,"author":"ops","time_ms":0,"message":"force it"}"#
        );
        let deleted = record(3, None, false);
        assert_eq!(
            record_json(&deleted),
            r#"{"version":3,"revision":13,"schema":null,"deleted":true,"forced":false,"author":"ops","time_ms":0,"message":""}"#
        );
        let (schema, about) = get_text("pay/a", &set);
        assert_eq!(schema.as_deref(), Some("{\n  \"type\": \"object\"\n}"));
        assert_eq!(
            about,
            "# schema of pay/a version 2: set (forced) at revision 12 by ops (1970-01-01T00:00:00.000Z): force it"
        );
        let (schema, about) = get_text("pay/a", &deleted);
        assert_eq!(schema, None);
        assert!(
            about.contains("version 3: deleted at revision 13"),
            "{about}"
        );
    }

    #[test]
    fn history_says_what_each_version_did() {
        let records = [
            record(3, None, false),
            record(2, Some(json!({})), true),
            record(1, Some(json!({})), false),
        ];
        let text = history(&records, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("VERSION  REVISION  CHANGE"), "{text}");
        assert!(
            lines[1].starts_with("3        13        deleted "),
            "{text}"
        );
        assert!(lines[2].contains("set (forced)") && lines[2].ends_with("force it"));
        assert!(lines[3].starts_with("1        11        set "), "{text}");
        let json: Value = serde_json::from_str(&history(&records, true)).expect("json");
        assert_eq!(json[1]["forced"], true);
        assert_eq!(json[0]["schema"], Value::Null);
        assert_eq!(history(&[], false), "(none)");
    }
}
