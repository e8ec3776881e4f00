//! The two drivers behind one load generator: [`Conn`] is one client
//! connection to either system, [`Sub`] one subscription.
//!
//! raftconf is driven through its client library (`raftconf-client`), as a
//! service would use it; writes hand it a ready JSON text (`put_text`), as
//! the etcd driver hands its client ready bytes. etcd is driven through a
//! tonic client generated from `proto/etcd/kv.proto`: the same HTTP/2 stack,
//! one channel per connection, no retries, no balancer. Keys and values are
//! the same size on both: a raftconf namespace holds a JSON document of
//! [`VALUE_BYTES`] bytes, an etcd key a value of as many bytes.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use raftconf_client::{Client, ClientOptions, Format, PutOptions, WatchEvent, WatchStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::systems::System;
use crate::load::document_text;

/// The generated etcd v3 client (package `etcdserverpb`).
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod etcdpb {
    tonic::include_proto!("etcdserverpb");
}

use etcdpb::kv_client::KvClient;
use etcdpb::maintenance_client::MaintenanceClient;
use etcdpb::watch_client::WatchClient;
use etcdpb::watch_request::RequestUnion;

/// Size of every written value (the default).
pub const VALUE_BYTES: usize = 256;

/// Bound on one call: a stuck server fails the run instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One client connection (one HTTP/2 connection) to one node of a system.
/// Clones share the connection.
#[derive(Clone)]
pub enum Conn {
    Raftconf(Client),
    Etcd(Channel),
}

impl Conn {
    /// Connects to `addr` (`host:port`).
    pub async fn open(system: System, addr: &str) -> Result<Conn> {
        match system {
            System::Raftconf => {
                let options = ClientOptions::default()
                    .request_timeout(CALL_TIMEOUT)
                    .call_timeout(CALL_TIMEOUT);
                Ok(Conn::Raftconf(
                    Client::connect_with([addr.to_string()], options).await?,
                ))
            }
            System::Etcd => Ok(Conn::Etcd(etcd_channel(addr).await?)),
        }
    }

    /// Writes value number `seq` to `key`; returns the revision it got.
    pub async fn put(&self, key: &str, seq: u64) -> Result<u64> {
        match self {
            Conn::Raftconf(client) => {
                let path = raftconf_path(key);
                let doc = document_text(VALUE_BYTES, seq);
                Ok(client
                    .put_text(&path, &doc, Format::Json, PutOptions::default())
                    .await
                    .with_context(|| format!("raftconf put {path}"))?
                    .revision)
            }
            Conn::Etcd(channel) => {
                let request = etcdpb::PutRequest {
                    key: etcd_key(key).into_bytes(),
                    value: etcd_value(seq),
                    ..Default::default()
                };
                let reply = KvClient::new(channel.clone())
                    .put(with_deadline(request))
                    .await
                    .with_context(|| format!("etcd put {key}"))?
                    .into_inner();
                Ok(reply.header.map_or(0, |h| h.revision as u64))
            }
        }
    }

    /// Reads `key`: linearizable, or served from the node's own state.
    pub async fn get(&self, key: &str, linearizable: bool) -> Result<()> {
        match self {
            Conn::Raftconf(client) => {
                let path = raftconf_path(key);
                let result = if linearizable {
                    client.get(&path).await
                } else {
                    client.get_serializable(&path).await
                };
                result.with_context(|| format!("raftconf get {path}"))?;
            }
            Conn::Etcd(channel) => {
                let request = etcdpb::RangeRequest {
                    key: etcd_key(key).into_bytes(),
                    serializable: !linearizable,
                    ..Default::default()
                };
                let reply = KvClient::new(channel.clone())
                    .range(with_deadline(request))
                    .await
                    .with_context(|| format!("etcd get {key}"))?
                    .into_inner();
                if reply.kvs.is_empty() {
                    bail!("etcd get {key}: no such key");
                }
            }
        }
        Ok(())
    }

    /// Subscribes to `key` from `from_revision` (inclusive; `None`: from
    /// now) and waits until the server has confirmed the subscription
    /// (raftconf: the first event, etcd: `created`).
    pub async fn subscribe(&self, key: &str, from_revision: Option<u64>) -> Result<Sub> {
        match self {
            Conn::Raftconf(client) => {
                let path = raftconf_path(key);
                let mut stream = client
                    .watch([path.clone()], from_revision.unwrap_or(0))
                    .await?;
                if from_revision.is_none() {
                    // From 0 the stream starts with a snapshot of the namespace.
                    match next_raftconf(&mut stream).await? {
                        WatchEvent::Snapshot { .. } => {}
                        other => bail!("raftconf watch {path}: first event {other:?}"),
                    }
                }
                Ok(Sub::Raftconf(stream))
            }
            Conn::Etcd(channel) => {
                let (requests, rx) = mpsc::channel(1);
                let create = etcdpb::WatchCreateRequest {
                    key: etcd_key(key).into_bytes(),
                    start_revision: from_revision.map_or(0, |r| r as i64),
                    ..Default::default()
                };
                requests
                    .send(etcdpb::WatchRequest {
                        request_union: Some(RequestUnion::CreateRequest(create)),
                    })
                    .await
                    .context("etcd watch: request stream closed")?;
                let mut responses = WatchClient::new(channel.clone())
                    .watch(ReceiverStream::new(rx))
                    .await
                    .with_context(|| format!("etcd watch {key}"))?
                    .into_inner();
                let first = tokio::time::timeout(CALL_TIMEOUT, responses.message())
                    .await
                    .context("etcd watch: no answer")??
                    .context("etcd watch: stream ended")?;
                if !first.created || first.canceled {
                    bail!("etcd watch {key} not created: {:?}", first.cancel_reason);
                }
                Ok(Sub::Etcd {
                    _requests: requests,
                    responses: Box::new(responses),
                    pending: first.events.iter().filter_map(event_revision).collect(),
                })
            }
        }
    }
}

/// One subscription to one key.
pub enum Sub {
    Raftconf(WatchStream),
    Etcd {
        /// Kept open: the request half of the stream.
        _requests: mpsc::Sender<etcdpb::WatchRequest>,
        responses: Box<tonic::Streaming<etcdpb::WatchResponse>>,
        /// Revisions received with the `created` answer, not yet returned.
        pending: Vec<u64>,
    },
}

impl Sub {
    /// The revisions of the next events that arrive (one or more: etcd
    /// batches events of several revisions into one response).
    pub async fn next_revisions(&mut self) -> Result<Vec<u64>> {
        match self {
            Sub::Raftconf(stream) => {
                loop {
                    match next_raftconf(stream).await? {
                        WatchEvent::Change { revision, .. } => return Ok(vec![revision]),
                        WatchEvent::Progress { .. } => continue,
                        WatchEvent::Snapshot {
                            revision, reason, ..
                        } => {
                            bail!("raftconf watch: a snapshot at {revision} ({reason}) instead of events")
                        }
                    }
                }
            }
            Sub::Etcd {
                responses, pending, ..
            } => {
                if !pending.is_empty() {
                    return Ok(std::mem::take(pending));
                }
                loop {
                    let response = responses
                        .message()
                        .await
                        .context("etcd watch")?
                        .context("etcd watch: stream ended")?;
                    if response.canceled {
                        bail!("etcd watch canceled: {}", response.cancel_reason);
                    }
                    let revisions: Vec<u64> =
                        response.events.iter().filter_map(event_revision).collect();
                    if !revisions.is_empty() {
                        return Ok(revisions);
                    }
                }
            }
        }
    }
}

async fn next_raftconf(stream: &mut WatchStream) -> Result<WatchEvent> {
    match stream.next().await {
        Some(Ok(event)) => Ok(event),
        Some(Err(e)) => Err(e).context("raftconf watch"),
        None => bail!("raftconf watch: stream ended"),
    }
}

fn event_revision(event: &etcdpb::Event) -> Option<u64> {
    event.kv.as_ref().map(|kv| kv.mod_revision as u64)
}

/// The raftconf namespace standing for bench key `key` (tenant `bench`,
/// environment `run`, created when the cluster starts).
fn raftconf_path(key: &str) -> String {
    format!("bench/run/{key}")
}

fn etcd_key(key: &str) -> String {
    format!("/bench/{key}")
}

/// An etcd value of [`VALUE_BYTES`] bytes that differs with `seq`.
fn etcd_value(seq: u64) -> Vec<u8> {
    let mut value = format!("{seq:020}").into_bytes();
    value.resize(VALUE_BYTES, b'x');
    value
}

fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    request
}

async fn etcd_channel(addr: &str) -> Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))
        .with_context(|| format!("etcd endpoint {addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to etcd at {addr}"))
}

/// The client address of the etcd leader, once every endpoint answers and
/// one of them is the leader it names.
pub async fn etcd_leader(endpoints: &[String]) -> Result<Option<String>> {
    let mut leader = None;
    for addr in endpoints {
        let channel = etcd_channel(addr).await?;
        let status = MaintenanceClient::new(channel)
            .status(with_deadline(etcdpb::StatusRequest {}))
            .await?
            .into_inner();
        let member = status.header.map_or(0, |h| h.member_id);
        if status.leader == 0 {
            return Ok(None);
        }
        if status.leader == member {
            leader = Some(addr.clone());
        }
    }
    Ok(leader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_same_size_on_both_systems() {
        assert_eq!(etcd_value(7).len(), VALUE_BYTES);
        assert_ne!(etcd_value(7), etcd_value(8));
        assert_eq!(document_text(VALUE_BYTES, 7).len(), VALUE_BYTES);
    }
}
