//! The operator subcommands: check arguments locally first (paths, names,
//! documents — no server needed to learn they are wrong), then call the
//! server and print the result.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use raftconf_client::{Consistency, DeleteOptions, GetOptions, PutOptions};
use raftconf_schema::{parse_document, validate_name, EnvPath, Format, NsPath, Target};

use super::conn;
use super::output;
use super::publish;
use super::{
    ClusterCommand, Command, ConsistencyArg, DocFormat, EnvCommand, OutputFormat, TenantCommand,
};

/// Runs one operator command against `endpoints`.
pub async fn run(endpoints: &[String], out: OutputFormat, command: Command) -> anyhow::Result<()> {
    let json = out == OutputFormat::Json;
    let failed = |e: raftconf_client::Error| conn::describe(&e, endpoints);
    match command {
        Command::Server(_) => bail!("internal: server is not an operator command"),
        Command::Tenant(TenantCommand::Create { name, message }) => {
            validate_name("tenant", &name)?;
            let c = conn::connect(endpoints).await?;
            let revision = c
                .create_tenant_with(&name, &message)
                .await
                .map_err(failed)?;
            let what = format!("tenant {name}");
            println!("{}", output::created(&what, revision, json));
        }
        Command::Tenant(TenantCommand::List) => {
            let c = conn::connect(endpoints).await?;
            let tenants = c.list_tenants().await.map_err(failed)?;
            println!("{}", output::tenants(&tenants, json));
        }
        Command::Env(EnvCommand::Create { path, message }) => {
            let env = EnvPath::parse(&path)?;
            let c = conn::connect(endpoints).await?;
            let revision = c
                .create_env_with(&env.tenant, &env.env, &message)
                .await
                .map_err(failed)?;
            let what = format!("environment {}/{}", env.tenant, env.env);
            println!("{}", output::created(&what, revision, json));
        }
        Command::Tenant(TenantCommand::Set {
            name,
            history_depth,
            max_namespaces,
            message,
        }) => {
            validate_name("tenant", &name)?;
            let c = conn::connect(endpoints).await?;
            let settings = raftconf_client::TenantSettings {
                history_depth,
                max_namespaces_per_env: max_namespaces,
            };
            let revision = c
                .set_tenant_settings(&name, &settings, &message)
                .await
                .map_err(failed)?;
            if json {
                println!("{{\"revision\":{revision}}}");
            } else {
                println!("changed the settings of tenant {name} at revision {revision}");
            }
        }
        Command::Tenant(TenantCommand::Delete {
            name,
            force,
            message,
        }) => {
            validate_name("tenant", &name)?;
            let c = conn::connect(endpoints).await?;
            let revision = c
                .delete_tenant(&name, force, &message)
                .await
                .map_err(failed)?;
            println!(
                "{}",
                output::deleted(&format!("tenant {name}"), revision, json)
            );
        }
        Command::Env(EnvCommand::Delete {
            path,
            force,
            message,
        }) => {
            let env = EnvPath::parse(&path)?;
            let c = conn::connect(endpoints).await?;
            let revision = c
                .delete_env(&env.tenant, &env.env, force, &message)
                .await
                .map_err(failed)?;
            let what = format!("environment {}/{}", env.tenant, env.env);
            println!("{}", output::deleted(&what, revision, json));
        }
        Command::Env(EnvCommand::List { tenant }) => {
            validate_name("tenant", &tenant)?;
            let c = conn::connect(endpoints).await?;
            let envs = c.list_envs(&tenant).await.map_err(failed)?;
            println!("{}", output::environments(&envs, json));
        }
        Command::Put(a) if a.dry_run => {
            let c = conn::connect(endpoints).await?;
            publish::plan(&c, &a.path, a.file.as_deref(), a.format, json).await?;
        }
        Command::Set(a) => publish::set(&conn::connect(endpoints).await?, a, json).await?,
        Command::Rollback(a) => {
            publish::rollback(&conn::connect(endpoints).await?, a, json).await?
        }
        Command::Diff(a) => {
            publish::diff_versions(&conn::connect(endpoints).await?, a, json).await?
        }
        Command::Plan(a) => {
            let c = conn::connect(endpoints).await?;
            publish::plan(&c, &a.path, a.file.as_deref(), a.format, json).await?;
        }
        Command::Apply(a) => publish::apply(&conn::connect(endpoints).await?, a, json).await?,
        Command::Put(a) => {
            let path: NsPath = a.path.parse()?;
            let (text, source) = read_document(a.file.as_deref())?;
            let format = doc_format(a.format, a.file.as_deref());
            // Refuse a malformed document here, with its line and column.
            parse_document(&text, format).map_err(|e| anyhow!("{source}: {e}"))?;
            let c = conn::connect(endpoints).await?;
            let options = PutOptions {
                if_version: a.if_version,
                if_revision: a.if_revision,
                message: a.message,
                dry_run: a.dry_run,
            };
            let r = c
                .put_text(&path.to_string(), &text, format, options)
                .await
                .map_err(failed)?;
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
                ConsistencyArg::Linearizable => Consistency::Linearizable,
                ConsistencyArg::Serializable => Consistency::Serializable,
            };
            let options = GetOptions {
                revision: a.revision.unwrap_or(0),
                consistency,
            };
            let doc = c
                .get_with(&path.to_string(), options)
                .await
                .map_err(failed)?;
            if json {
                println!("{}", output::get_json(&doc));
            } else {
                let (value, about) = output::get_text(&doc);
                eprintln!("{about}");
                println!("{value}");
            }
        }
        Command::List(a) => {
            let env = EnvPath::parse(&a.prefix)?;
            let c = conn::connect(endpoints).await?;
            let listing = c.list(&env.to_string()).await.map_err(failed)?;
            println!("{}", output::list(&listing, json));
        }
        Command::Delete(a) => {
            let path: NsPath = a.path.parse()?;
            let c = conn::connect(endpoints).await?;
            let options = DeleteOptions {
                if_version: a.if_version,
                if_revision: a.if_revision,
                message: a.message,
                ..DeleteOptions::default()
            };
            let r = c.delete(&path.to_string(), options).await.map_err(failed)?;
            if json {
                println!("{}", output::write_json(r.revision, r.version));
            } else {
                println!("{}", output::delete_text(&a.path, r.revision, r.version));
            }
        }
        Command::History(a) => {
            let path: NsPath = a.path.parse()?;
            let c = conn::connect(endpoints).await?;
            let page = c
                .history(&path.to_string(), a.limit.unwrap_or(0), 0)
                .await
                .map_err(failed)?;
            println!("{}", output::history(&page, json));
        }
        Command::Watch(a) => {
            for target in &a.targets {
                target.parse::<Target>()?;
            }
            let c = conn::connect(endpoints).await?;
            super::watch::run(&c, endpoints, &a.targets, a.from_revision, json).await?;
        }
        Command::Clients(a) => {
            let path: NsPath = a.path.parse()?;
            let c = conn::connect(endpoints).await?;
            let report = c.clients(&path.to_string()).await.map_err(failed)?;
            println!("{}", output::clients(&report, json));
        }
        Command::Schema(command) => super::schema::run(endpoints, json, command).await?,
        Command::Status => {
            let c = conn::connect(endpoints).await?;
            let status = c.status_with(true).await.map_err(failed)?;
            println!("{}", output::status(&status, json));
        }
        Command::Cluster(ClusterCommand::Status) => {
            let c = conn::connect(endpoints).await?;
            let status = c.status().await.map_err(failed)?;
            println!("{}", output::status(&status, json));
        }
        Command::Cluster(change) => {
            let c = conn::connect_with_timeout(endpoints, conn::MEMBERSHIP_CALL_TIMEOUT).await?;
            let members = match change {
                ClusterCommand::AddNode {
                    id,
                    addr,
                    client_addr,
                    learner,
                } => c.add_node(id, &addr, &client_addr, learner).await,
                ClusterCommand::Promote { id } => c.promote_node(id).await,
                ClusterCommand::RemoveNode { id } => c.remove_node(id).await,
                ClusterCommand::Status => unreachable!("handled above"),
            }
            .map_err(failed)?;
            println!("{}", output::members(&members, json));
        }
    }
    Ok(())
}

/// The document text and a name for it in error messages.
pub fn read_document(file: Option<&Path>) -> anyhow::Result<(String, String)> {
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
