//! The operator subcommands: check arguments locally first (paths, names,
//! documents — no server needed to learn they are wrong), then call the
//! server and print the result.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use raftconf_api::v1 as pb;
use raftconf_api::v1::admin_client::AdminClient;
use raftconf_api::v1::config_client::ConfigClient;
use raftconf_schema::{parse_document, validate_name, EnvPath, Format, NsPath, Target};

use tonic::transport::Channel;

use super::conn::{self, Conn};
use super::output;
use super::{Command, ConsistencyArg, DocFormat, EnvCommand, OutputFormat, TenantCommand};

/// Runs one operator command against `endpoints`.
pub async fn run(endpoints: &[String], out: OutputFormat, command: Command) -> anyhow::Result<()> {
    let json = out == OutputFormat::Json;
    match command {
        Command::Server(_) => bail!("internal: server is not an operator command"),
        Command::Tenant(TenantCommand::Create { name, message }) => {
            validate_name("tenant", &name)?;
            let mut c = conn::connect(endpoints).await?;
            let write_id = Some(c.write_id());
            let req = pb::CreateTenantRequest {
                name: name.clone(),
                message,
                write_id,
            };
            let r = write(&mut c, req, |ch, r| async move {
                AdminClient::new(ch).create_tenant(r).await
            })
            .await?;
            println!(
                "{}",
                output::created(&format!("tenant {name}"), r.revision, json)
            );
        }
        Command::Tenant(TenantCommand::List) => {
            let c = conn::connect(endpoints).await?;
            let r = c
                .admin()
                .list_tenants(c.request(pb::ListTenantsRequest {}))
                .await
                .map_err(|s| c.describe(&s))?
                .into_inner();
            println!("{}", output::tenants(&r, json));
        }
        Command::Env(EnvCommand::Create { path, message }) => {
            let env = EnvPath::parse(&path)?;
            let mut c = conn::connect(endpoints).await?;
            let write_id = Some(c.write_id());
            let req = pb::CreateEnvironmentRequest {
                tenant: env.tenant.clone(),
                name: env.env.clone(),
                message,
                write_id,
            };
            let r = write(&mut c, req, |ch, r| async move {
                AdminClient::new(ch).create_environment(r).await
            })
            .await?;
            let what = format!("environment {}/{}", env.tenant, env.env);
            println!("{}", output::created(&what, r.revision, json));
        }
        Command::Env(EnvCommand::List { tenant }) => {
            validate_name("tenant", &tenant)?;
            let c = conn::connect(endpoints).await?;
            let r = c
                .admin()
                .list_environments(c.request(pb::ListEnvironmentsRequest { tenant }))
                .await
                .map_err(|s| c.describe(&s))?
                .into_inner();
            println!("{}", output::environments(&r, json));
        }
        Command::Put(a) => {
            let path: NsPath = a.path.parse()?;
            let (text, source) = read_document(a.file.as_deref())?;
            let format = doc_format(a.format, a.file.as_deref());
            // Refuse a malformed document here, with its line and column.
            parse_document(&text, format).map_err(|e| anyhow!("{source}: {e}"))?;
            let mut c = conn::connect(endpoints).await?;
            let write_id = Some(c.write_id());
            let req = pb::PutRequest {
                path: path.to_string(),
                value: text,
                format: crate::convert::format_to_wire(format) as i32,
                if_version: a.if_version,
                if_revision: a.if_revision,
                message: a.message,
                write_id,
                dry_run: a.dry_run,
            };
            let r = write(&mut c, req, |ch, r| async move {
                ConfigClient::new(ch).put(r).await
            })
            .await?;
            if json {
                println!("{}", output::write_json(r.revision, r.version));
            } else {
                println!(
                    "{}",
                    output::put_text(&a.path, r.revision, r.version, a.dry_run)
                );
            }
        }
        Command::Get(a) => {
            let path: NsPath = a.path.parse()?;
            let c = conn::connect(endpoints).await?;
            let consistency = match a.consistency {
                ConsistencyArg::Linearizable => pb::Consistency::Linearizable,
                ConsistencyArg::Serializable => pb::Consistency::Serializable,
            };
            let req = pb::GetRequest {
                path: path.to_string(),
                revision: a.revision.unwrap_or(0),
                consistency: consistency as i32,
                min_revision: 0,
            };
            let r = c
                .config()
                .get(c.request(req))
                .await
                .map_err(|s| c.describe(&s))?
                .into_inner();
            if json {
                println!("{}", output::get_json(&r));
            } else {
                let (value, about) = output::get_text(&r);
                eprintln!("{about}");
                println!("{value}");
            }
        }
        Command::List(a) => {
            let env = EnvPath::parse(&a.prefix)?;
            let c = conn::connect(endpoints).await?;
            let req = pb::ListRequest {
                prefix: env.to_string(),
                include_values: false,
                consistency: pb::Consistency::Linearizable as i32,
                min_revision: 0,
            };
            let r = c
                .config()
                .list(c.request(req))
                .await
                .map_err(|s| c.describe(&s))?
                .into_inner();
            println!("{}", output::list(&r, json));
        }
        Command::Delete(a) => {
            let path: NsPath = a.path.parse()?;
            let mut c = conn::connect(endpoints).await?;
            let write_id = Some(c.write_id());
            let req = pb::DeleteRequest {
                path: path.to_string(),
                if_version: a.if_version,
                if_revision: a.if_revision,
                message: a.message,
                write_id,
            };
            let r = write(&mut c, req, |ch, r| async move {
                ConfigClient::new(ch).delete(r).await
            })
            .await?;
            if json {
                println!("{}", output::write_json(r.revision, r.version));
            } else {
                println!("{}", output::delete_text(&a.path, r.revision, r.version));
            }
        }
        Command::History(a) => {
            let path: NsPath = a.path.parse()?;
            let c = conn::connect(endpoints).await?;
            let req = pb::HistoryRequest {
                path: path.to_string(),
                page_size: a.limit.unwrap_or(0),
                before_version: 0,
            };
            let r = c
                .config()
                .history(c.request(req))
                .await
                .map_err(|s| c.describe(&s))?
                .into_inner();
            println!("{}", output::history(&r, json));
        }
        Command::Watch(a) => {
            let targets = a
                .targets
                .iter()
                .map(|t| t.parse::<Target>())
                .collect::<Result<Vec<_>, _>>()?;
            super::watch::run(endpoints, &targets, a.from_revision, json).await?;
        }
        Command::Status => {
            let c = conn::connect(endpoints).await?;
            let r = c
                .cluster()
                .status(c.request(pb::StatusRequest {}))
                .await
                .map_err(|s| c.describe(&s))?
                .into_inner();
            println!("{}", output::status(&r, json));
        }
    }
    Ok(())
}

/// Sends a write; if the server says it is not the leader and names one,
/// sends it once more there (same write id: applied at most once).
async fn write<Req, Resp, F, Fut>(c: &mut Conn, req: Req, call: F) -> anyhow::Result<Resp>
where
    Req: Clone,
    F: Fn(Channel, tonic::Request<Req>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    match call(c.channel(), c.request(req.clone())).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) if c.follow_leader(&s).await => call(c.channel(), c.request(req))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| c.describe(&s)),
        Err(s) => Err(c.describe(&s)),
    }
}

/// The document text and a name for it in error messages.
fn read_document(file: Option<&Path>) -> anyhow::Result<(String, String)> {
    match file {
        Some(p) if p != Path::new("-") => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Ok((text, p.display().to_string()))
        }
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the document from stdin")?;
            Ok((text, "stdin".to_string()))
        }
    }
}

/// `--format`, else the file extension, else JSON.
pub fn doc_format(flag: Option<DocFormat>, file: Option<&Path>) -> Format {
    match flag {
        Some(DocFormat::Json) => Format::Json,
        Some(DocFormat::Yaml) => Format::Yaml,
        Some(DocFormat::Toml) => Format::Toml,
        None => file
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
            .and_then(Format::from_extension)
            .unwrap_or(Format::Json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_comes_from_flag_then_extension() {
        assert_eq!(
            doc_format(Some(DocFormat::Toml), Some(Path::new("a.yaml"))),
            Format::Toml
        );
        assert_eq!(doc_format(None, Some(Path::new("a.yml"))), Format::Yaml);
        assert_eq!(doc_format(None, Some(Path::new("a.TOML"))), Format::Toml);
        assert_eq!(doc_format(None, Some(Path::new("a.txt"))), Format::Json);
        assert_eq!(doc_format(None, None), Format::Json);
    }
}
