//! The operator CLI's connection: first reachable endpoint, request
//! metadata (author), one retry at the leader the server names, and one-line
//! error messages.
//!
//! Uses the generated tonic clients of `raftconf-api` directly.

use std::time::Duration;

use anyhow::anyhow;
use raftconf_api::v1::admin_client::AdminClient;
use raftconf_api::v1::cluster_client::ClusterClient;
use raftconf_api::v1::config_client::ConfigClient;
use raftconf_api::v1::watch_client::WatchClient;
use raftconf_api::v1::WriteId;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::metadata;

/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection to one raftconf server.
pub struct Conn {
    channel: Channel,
    /// The endpoint connected to.
    endpoint: String,
    /// Every endpoint given (for error messages).
    endpoints: Vec<String>,
    author: String,
    client_id: String,
    next_request: u64,
}

/// Connects to the first of `endpoints` that answers.
pub async fn connect(endpoints: &[String]) -> anyhow::Result<Conn> {
    let mut last = String::from("no endpoint given");
    for ep in endpoints.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        match open(ep).await {
            Ok(channel) => {
                return Ok(Conn {
                    channel,
                    endpoint: ep.to_string(),
                    endpoints: endpoints.to_vec(),
                    author: author(),
                    client_id: format!("raftconf-cli-{:016x}", rand::random::<u64>()),
                    next_request: 1,
                })
            }
            Err(e) => last = e,
        }
    }
    Err(anyhow!(
        "cannot reach any raftconf server at {}: {last}",
        endpoints.join(",")
    ))
}

async fn open(ep: &str) -> Result<Channel, String> {
    let uri = if ep.contains("://") {
        ep.to_string()
    } else {
        format!("http://{ep}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| format!("invalid endpoint {ep:?}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    endpoint.connect().await.map_err(|e| error_chain(&e))
}

/// The CLI's author: `$USER`, else "cli".
pub fn author() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty() && MetadataValue::try_from(u.as_str()).is_ok())
        .unwrap_or_else(|| "cli".to_string())
}

/// An error and its sources on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out.replace('\n', " ")
}

impl Conn {
    /// The endpoint connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A request carrying the author metadata.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        if let Ok(v) = MetadataValue::try_from(self.author.as_str()) {
            r.metadata_mut().insert(metadata::AUTHOR, v);
        }
        r
    }

    /// A fresh write id: a retry at the leader reuses it, so it is applied once.
    pub fn write_id(&mut self) -> WriteId {
        let id = WriteId {
            client_id: self.client_id.clone(),
            request_id: self.next_request,
        };
        self.next_request += 1;
        id
    }

    /// The channel to the server (cheap to clone).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Config client.
    pub fn config(&self) -> ConfigClient<Channel> {
        ConfigClient::new(self.channel.clone())
    }

    /// Admin client.
    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    /// Watch client.
    pub fn watch(&self) -> WatchClient<Channel> {
        WatchClient::new(self.channel.clone())
    }

    /// Cluster client.
    pub fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }

    /// If `status` says "not the leader" and names another leader, connects
    /// there and returns true (the caller retries once: `UNAVAILABLE`
    /// promises the write was not applied).
    pub async fn follow_leader(&mut self, status: &Status) -> bool {
        if status.code() != Code::Unavailable {
            return false;
        }
        let Some(leader) = status
            .metadata()
            .get(metadata::LEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return false;
        };
        if leader == self.endpoint {
            return false;
        }
        match open(&leader).await {
            Ok(channel) => {
                self.channel = channel;
                self.endpoint = leader;
                true
            }
            Err(_) => false,
        }
    }

    /// One line saying what went wrong with a call.
    pub fn describe(&self, status: &Status) -> anyhow::Error {
        anyhow!(describe_status(status, &self.endpoint, &self.endpoints))
    }
}

/// One line for a failed call: the server's own message, or, when the
/// failure came from the transport (no server metadata), that it is unreachable.
pub fn describe_status(status: &Status, endpoint: &str, endpoints: &[String]) -> String {
    let from_server = status.metadata().get(metadata::NODE_ID).is_some();
    let message = status.message().replace('\n', " ");
    if !from_server
        && matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        )
    {
        let detail = match std::error::Error::source(status) {
            Some(s) => format!("{message}: {}", error_chain(s)),
            None => message,
        };
        return format!(
            "cannot reach the raftconf server at {endpoint} (endpoints: {}): {detail}",
            endpoints.join(",")
        );
    }
    match status.code() {
        Code::FailedPrecondition => {
            match status
                .metadata()
                .get(metadata::CURRENT_VERSION)
                .and_then(|v| v.to_str().ok())
            {
                Some(v) if !message.contains("current version") => {
                    format!("{message} (current version is {v})")
                }
                _ => message,
            }
        }
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_name_the_endpoints() {
        let s = Status::unavailable("tcp connect error");
        let line = describe_status(&s, "127.0.0.1:1", &["127.0.0.1:1".into()]);
        assert!(
            line.starts_with("cannot reach the raftconf server at 127.0.0.1:1"),
            "{line}"
        );
    }

    #[test]
    fn server_refusals_keep_their_message() {
        let mut s = Status::failed_precondition("version mismatch on a/b/c: expected version 1");
        s.metadata_mut()
            .insert(metadata::NODE_ID, MetadataValue::from_static("1"));
        s.metadata_mut()
            .insert(metadata::CURRENT_VERSION, MetadataValue::from_static("4"));
        let line = describe_status(&s, "h:1", &["h:1".into()]);
        assert_eq!(
            line,
            "version mismatch on a/b/c: expected version 1 (current version is 4)"
        );
    }
}
