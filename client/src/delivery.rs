//! Delivery tracking: which subscribers of a namespace run which revision
//! ([`Client::clients`]), as every node of the cluster reports them.

use std::collections::BTreeMap;

use raftconf_api::v1 as pb;
use raftconf_api::v1::watch_client::WatchClient;
use raftconf_schema::NsPath;

use crate::failover::CallKind;
use crate::{Client, Result};

/// Where one subscriber stands with the namespace's latest document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubscriberState {
    /// It acknowledged the latest revision.
    Current,
    /// It has not acknowledged the latest revision yet.
    Lagging,
    /// It refused the live document (and keeps an older value).
    Refusing,
}

impl SubscriberState {
    fn parse(s: &str) -> Self {
        match s {
            "current" => SubscriberState::Current,
            "refusing" => SubscriberState::Refusing,
            _ => SubscriberState::Lagging,
        }
    }

    /// "current", "lagging" or "refusing".
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberState::Current => "current",
            SubscriberState::Lagging => "lagging",
            SubscriberState::Refusing => "refusing",
        }
    }
}

/// A document a subscriber refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberRefusal {
    /// The revision that wrote the refused document.
    pub revision: u64,
    /// The namespace.
    pub path: String,
    /// Why: deserialization or validation messages.
    pub reasons: Vec<String>,
}

/// One subscription (one watch stream) covering the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// The client's id ([`crate::ClientOptions::client_id`]).
    pub client_id: String,
    /// The client's labels ([`crate::ClientOptions::label`]).
    pub labels: BTreeMap<String, String>,
    /// The node it is (or was last) connected to.
    pub node_id: u64,
    /// The highest revision it acknowledged (0 = none yet).
    pub applied_revision: u64,
    /// Whether its stream is open (closed ones stay listed for ten minutes).
    pub connected: bool,
    /// Its latest refusal of this namespace.
    pub last_refusal: Option<SubscriberRefusal>,
    /// What it subscribed to.
    pub paths: Vec<String>,
    /// When it last reported anything, in ms since the Unix epoch.
    pub updated_ms: i64,
    /// Where it stands with the latest document.
    pub state: SubscriberState,
}

/// Which subscribers of a namespace run which revision, across the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientsReport {
    /// The namespace.
    pub path: String,
    /// The revision that wrote its current document; for a deleted namespace,
    /// the revision of the delete (0: it never existed).
    pub latest_revision: u64,
    /// Every subscription, sorted by client id.
    pub subscribers: Vec<Subscriber>,
    /// Open streams on the latest revision.
    pub current: u64,
    /// Open streams behind it.
    pub lagging: u64,
    /// Open streams refusing the live document.
    pub refusing: u64,
    /// Nodes that did not answer: their subscribers are missing.
    pub unreachable_nodes: Vec<u64>,
}

impl From<pb::ClientsResponse> for ClientsReport {
    fn from(r: pb::ClientsResponse) -> Self {
        ClientsReport {
            path: r.path,
            latest_revision: r.latest_revision,
            subscribers: r
                .subscribers
                .into_iter()
                .map(|s| Subscriber {
                    client_id: s.client_id,
                    labels: s.labels.into_iter().collect(),
                    node_id: s.node_id,
                    applied_revision: s.applied_revision,
                    connected: s.connected,
                    last_refusal: s.last_refusal.map(|f| SubscriberRefusal {
                        revision: f.revision,
                        path: f.path,
                        reasons: f.reasons,
                    }),
                    paths: s.paths,
                    updated_ms: s.updated_ms,
                    state: SubscriberState::parse(&s.state),
                })
                .collect(),
            current: r.current,
            lagging: r.lagging,
            refusing: r.refusing,
            unreachable_nodes: r.unreachable_nodes,
        }
    }
}

impl Client {
    /// Which subscribers of the namespace at `path` run which revision:
    /// every watch stream of every node (any node answers, gathering from
    /// the others), with the revision each acknowledged and what it refused.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), raftconf_client::Error> {
    /// let client = raftconf_client::Client::connect(["127.0.0.1:7070"]).await?;
    /// let report = client.clients("payments/prod/checkout").await?;
    /// println!(
    ///     "revision {}: {} current, {} lagging, {} refusing",
    ///     report.latest_revision, report.current, report.lagging, report.refusing
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub async fn clients(&self, path: &str) -> Result<ClientsReport> {
        let path = path.parse::<NsPath>()?.to_string();
        let response = self
            .call(
                CallKind::Read,
                || format!("clients of {path}"),
                pb::ClientsRequest {
                    path: path.clone(),
                    local_only: false,
                },
                |ch, r| async move { WatchClient::new(ch).clients(r).await },
            )
            .await?;
        Ok(response.into())
    }
}
