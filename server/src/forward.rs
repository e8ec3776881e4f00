//! Any node answers: writes that reach a follower are forwarded to the
//! leader, and linearizable reads on a follower get a read index from it.
//!
//! **Writes** ([`serve_write`]). A node that knows it leads proposes the
//! write itself (the leader stamps time and author, as always). Otherwise the
//! request goes, unchanged (same write id, same author metadata, a deadline),
//! to the leader's client address over the public gRPC API, and the leader's
//! answer is returned as if the caller had sent it there, plus the
//! `x-raftconf-leader` hint so that the client goes there directly next time.
//! A forwarded request is marked ([`FORWARDED_BY`]) and never forwarded a
//! second time: a node that is no longer the leader answers `UNAVAILABLE`
//! naming the leader it knows, and the first node tries again.
//!
//! While no leader is known or reachable (an election), the node waits for
//! one, at most [`crate::service::ServiceSettings::election_wait`], then
//! answers `UNAVAILABLE`. Only failures that prove the write was not
//! proposed lead to another attempt: the leader said `UNAVAILABLE`, or no
//! connection could be made. Anything after the request may have left (a
//! reset connection, a missed deadline) is `UNKNOWN`, never `UNAVAILABLE`.
//!
//! **Reads** ([`linearizable_revision`]): the leader confirms its leadership
//! with a quorum and returns its read index over the peer port (`ReadIndex`);
//! this node waits until it has applied that far and serves from its own state.

use std::future::Future;
use std::pin::Pin;

use std::time::{Duration, Instant};

use raftconf_raft::{NodeId, ReadError, WriteError};
use tonic::metadata::{KeyAndValueRef, MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tracing::debug;

use crate::metadata;
use crate::network::PeerChannels;
use crate::service::{author, ServiceContext};
use crate::status::ApiError;

/// Request metadata: the node that forwarded this write (it is not forwarded again).
pub const FORWARDED_BY: &str = "x-raftconf-forwarded-by";

/// The deadline of a forwarded write when the caller set none: above the
/// leader's own commit wait (10 s), so the leader's answer arrives first.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(12);

/// Deadline of one `ReadIndex` call to the leader.
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest pause between two attempts while the leader is unknown or unreachable.
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(300);
/// Shortest pause before waiting for a leader again.
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(5);

/// A boxed future (borrowing the service and the request): how a service's
/// local write path is passed to [`serve_write`].
pub type LocalWrite<'a, Resp> = Pin<Box<dyn Future<Output = Result<Resp, ApiError>> + Send + 'a>>;

/// A boxed gRPC call on the leader: how a service's forwarding call is passed.
pub type RemoteWrite<Resp> =
    Pin<Box<dyn Future<Output = Result<Response<Resp>, Status>> + Send + 'static>>;

/// One lazily connected channel per leader client address, reused by every
/// forwarded write.
#[derive(Clone)]
pub struct Forwarder {
    channels: PeerChannels,
}

impl Forwarder {
    /// A forwarder using the node's pool of channels to other nodes.
    pub fn new(channels: PeerChannels) -> Self {
        Forwarder { channels }
    }

    /// The shared channel to another node's client address (also used to
    /// gather from every node, e.g. delivery tracking).
    pub fn client_channel(&self, addr: &str) -> Result<Channel, String> {
        self.channels.get(addr)
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        self.channels
            .get(addr)
            .map_err(|e| format!("the leader's client address: {e}"))
    }
}

/// Where a write goes next.
enum Target {
    /// Propose it here.
    Local,
    /// Forward it to the client address of node `id` (0 = known only by address).
    Leader { id: NodeId, addr: String },
}

/// How a forwarded attempt ended, when it did not succeed.
enum Failed {
    /// The leader's answer (a rejection): returned to the caller as is.
    Answer(Status),
    /// Certainly not proposed there: try again (another leader, later).
    NotApplied {
        reason: String,
        hint: Option<String>,
    },
    /// May have been proposed: the caller must retry with the same write id.
    Unknown(String),
}

/// Serves one write `req` that arrived with `md`: proposes it here when
/// this node leads (`local`, given the author), else forwards it to the
/// leader (`remote`, given the leader's channel and a copy of the request
/// with the caller's author, a deadline and the forwarding mark), waiting
/// for a leader during an election. See the module docs.
pub async fn serve_write<'s, Req, Resp>(
    ctx: &ServiceContext,
    md: &MetadataMap,
    req: &Req,
    local: impl Fn(String) -> LocalWrite<'s, Resp>,
    remote: impl Fn(Channel, Request<Req>) -> RemoteWrite<Resp>,
) -> Result<Response<Resp>, Status>
where
    Req: Clone,
{
    let node = &ctx.node;
    let me = node.node_id();
    let author = author(md);
    let forwarded = md.get(FORWARDED_BY).is_some();
    let started = Instant::now();
    let deadline = started + grpc_timeout(md).unwrap_or(DEFAULT_FORWARD_TIMEOUT);
    let wait_until = deadline.min(started + ctx.settings.election_wait);
    let mut next: Option<Target> = None;
    let mut last_failure;
    let mut attempt = 0u32;
    loop {
        let target = next.take().unwrap_or_else(|| choose_target(ctx, forwarded));
        let wait = match target {
            Target::Local => match local(author.clone()).await {
                Err(ApiError::Write(WriteError::NotLeader { leader_id, leader })) if !forwarded => {
                    match (leader_id, leader) {
                        (Some(id), Some(info)) if id != me && !info.client_addr.is_empty() => {
                            // Not proposed here; Raft names the leader: go there now.
                            last_failure = format!("this node is not the leader (node {id} is)");
                            next = Some(Target::Leader {
                                id,
                                addr: info.client_addr,
                            });
                            Wait::Nothing
                        }
                        _ => {
                            last_failure =
                                "no leader is known (an election is in progress)".to_string();
                            Wait::ForLeader { other_than: None }
                        }
                    }
                }
                other => return other.map(Response::new).map_err(|e| ctx.status(e)),
            },
            Target::Leader { id, addr } => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                match forward(ctx, &addr, req, &author, me, remaining, &remote).await {
                    Ok(response) => return Ok(response),
                    Err(Failed::Answer(status)) => return Err(status),
                    Err(Failed::Unknown(reason)) => {
                        return Err(ctx.status(ApiError::Write(WriteError::Unknown(format!(
                            "forwarded to the leader at {addr}: {reason}"
                        )))))
                    }
                    Err(Failed::NotApplied { reason, hint }) => {
                        debug!(leader = %addr, %reason, "forwarding failed; not applied");
                        last_failure = format!("the leader at {addr} did not take it: {reason}");
                        match hint.filter(|h| *h != addr) {
                            // It names another leader: try that one next.
                            Some(hint) => {
                                next = Some(Target::Leader { id: 0, addr: hint });
                                Wait::Pause
                            }
                            None => Wait::ForLeader {
                                other_than: (id != 0).then_some(id),
                            },
                        }
                    }
                }
            }
        };
        if Instant::now() >= wait_until {
            return Err(ctx.status(ApiError::Write(WriteError::Unavailable(format!(
                "no leader took the write within {:?} ({last_failure}); an election may be in \
                 progress or a quorum may be down",
                ctx.settings.election_wait
            )))));
        }
        let pause = retry_pause(attempt);
        match wait {
            Wait::Nothing => {}
            Wait::Pause => tokio::time::sleep(pause).await,
            Wait::ForLeader { other_than } => {
                // A floor, so that stale metrics cannot make this spin.
                tokio::time::sleep(RETRY_PAUSE_MIN).await;
                wait_for_leader_change(ctx, other_than, Instant::now() + pause, wait_until).await;
            }
        }
        attempt += 1;
    }
}

/// What to wait for before the next attempt at a write.
enum Wait {
    /// Nothing: the next attempt goes where Raft said the leader is.
    Nothing,
    /// A short pause (following a leader hint after a refusal).
    Pause,
    /// A leader other than `other_than` (any leader when `None`), or the
    /// pause, whichever comes first.
    ForLeader { other_than: Option<NodeId> },
}

/// The pause before attempt `attempt + 1`: 50, 100, 200, then 300 ms.
fn retry_pause(attempt: u32) -> Duration {
    RETRY_PAUSE_MAX.min(Duration::from_millis(50) * 2u32.pow(attempt.min(3)))
}

/// This node when it leads, when no other leader is known, or when the
/// request was forwarded here already; else the leader's client address.
fn choose_target(ctx: &ServiceContext, forwarded: bool) -> Target {
    let me = ctx.node.node_id();
    let leader = ctx.node.leader();
    match (leader.leader_id, leader.leader) {
        (Some(id), Some(info)) if id != me && !forwarded && !info.client_addr.is_empty() => {
            Target::Leader {
                id,
                addr: info.client_addr,
            }
        }
        _ => Target::Local,
    }
}

/// Sends one forwarded attempt to the leader at `addr`.
async fn forward<Req: Clone, Resp>(
    ctx: &ServiceContext,
    addr: &str,
    req: &Req,
    author: &str,
    me: NodeId,
    remaining: Duration,
    remote: &impl Fn(Channel, Request<Req>) -> RemoteWrite<Resp>,
) -> Result<Response<Resp>, Failed> {
    if remaining.is_zero() {
        return Err(Failed::NotApplied {
            reason: "the caller's deadline passed before it could be sent".into(),
            hint: None,
        });
    }
    let channel = ctx
        .forwarder
        .channel(addr)
        .map_err(|reason| Failed::NotApplied { reason, hint: None })?;
    let mut request = Request::new(req.clone());
    request.set_timeout(remaining);
    let md = request.metadata_mut();
    if let Ok(v) = MetadataValue::try_from(author) {
        md.insert(metadata::AUTHOR, v);
    }
    md.insert(FORWARDED_BY, MetadataValue::from(me));
    let status = match tokio::time::timeout(remaining, remote(channel, request)).await {
        Ok(Ok(mut response)) => {
            if let Ok(v) = MetadataValue::try_from(addr) {
                response.metadata_mut().insert(metadata::LEADER, v);
            }
            return Ok(response);
        }
        Ok(Err(status)) => status,
        Err(_) => return Err(Failed::Unknown(format!("no answer within {remaining:?}"))),
    };
    let sent_by_server = std::error::Error::source(&status).is_none();
    if !sent_by_server {
        return Err(if is_connect_error(&status) {
            Failed::NotApplied {
                reason: format!("cannot connect: {}", status.message()),
                hint: None,
            }
        } else {
            Failed::Unknown(format!(
                "the connection failed after the request was sent: {}",
                status.message()
            ))
        });
    }
    match status.code() {
        // The server's promise: certainly not applied.
        Code::Unavailable => Err(Failed::NotApplied {
            reason: status.message().to_string(),
            hint: status
                .metadata()
                .get(metadata::LEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }),
        Code::Cancelled | Code::DeadlineExceeded => Err(Failed::Unknown(format!(
            "the leader gave up: {}",
            status.message()
        ))),
        _ => Err(Failed::Answer(relay(&status, addr))),
    }
}

/// The leader's refusal as this node's answer: its code, message, details
/// (every schema violation) and raftconf metadata (the header, the current
/// version of a CAS miss …), and nothing of the transport's own headers.
fn relay(status: &Status, leader_addr: &str) -> Status {
    let mut out = Status::with_details(
        status.code(),
        status.message(),
        status.details().to_vec().into(),
    );
    let md = out.metadata_mut();
    for entry in status.metadata().iter() {
        if let KeyAndValueRef::Ascii(key, value) = entry {
            if key.as_str().starts_with("x-raftconf-") {
                md.insert(key.clone(), value.clone());
            }
        }
    }
    if !md.contains_key(metadata::LEADER) {
        if let Ok(v) = MetadataValue::try_from(leader_addr) {
            md.insert(metadata::LEADER, v);
        }
    }
    out
}

/// Whether the status comes from failing to connect (nothing was sent).
fn is_connect_error(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Waits until this node sees a leader other than `from` (any leader when
/// `None`), or until `pause_until` (then the caller simply tries again), but
/// never past `wait_until`.
async fn wait_for_leader_change(
    ctx: &ServiceContext,
    from: Option<NodeId>,
    pause_until: Instant,
    wait_until: Instant,
) {
    let until = pause_until.min(wait_until);
    let mut metrics = ctx.node.raft().metrics();
    loop {
        let leader = metrics.borrow_and_update().current_leader;
        if leader.is_some() && leader != from {
            return;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match tokio::time::timeout(left, metrics.changed()).await {
            Ok(Ok(())) => {}
            // Raft stopped (the wait ends at once), or the pause is over.
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// The revision a linearizable read is served at: after a read barrier here
/// when this node leads, else after applying the leader's read index.
/// Waits for a leader during an election, at most `election_wait`.
pub async fn linearizable_revision(ctx: &ServiceContext) -> Result<u64, ApiError> {
    let node = &ctx.node;
    let me = node.node_id();
    let started = Instant::now();
    let wait_until = started + ctx.settings.election_wait;
    let mut attempt = 0u32;
    loop {
        let leader = node.leader();
        let failure = match (leader.leader_id, leader.leader) {
            (Some(id), Some(info)) if id != me => {
                match ctx
                    .peers
                    .read_index(&info.peer_addr, READ_INDEX_TIMEOUT)
                    .await
                {
                    Ok(reply) => {
                        let revision = node
                            .wait_applied(reply.index, ctx.settings.min_revision_wait)
                            .await?;
                        return Ok(revision);
                    }
                    Err(status) => {
                        debug!(leader = id, %status, "read index from the leader failed");
                        (
                            Some(id),
                            format!(
                                "the leader (node {id}) gave no read index: {}",
                                status.message()
                            ),
                        )
                    }
                }
            }
            _ => match node.read_barrier().await {
                Ok(barrier) => return Ok(node.state().revision().max(barrier)),
                // Raft may know a leader the metrics do not show yet: wait
                // for any leader (not for another one than it).
                Err(ReadError::NotLeader { leader_id, .. }) => (
                    None,
                    match leader_id {
                        Some(id) => format!("this node is not the leader (node {id} is)"),
                        None => "no leader is known (an election is in progress)".to_string(),
                    },
                ),
                Err(e) => return Err(e.into()),
            },
        };
        let (failed_leader, reason) = failure;
        if Instant::now() >= wait_until {
            return Err(ApiError::Unavailable(format!(
                "cannot serve a linearizable read: {reason} (waited {:?}); retry, or read with \
                 consistency=serializable",
                ctx.settings.election_wait
            )));
        }
        tokio::time::sleep(RETRY_PAUSE_MIN).await;
        let pause_until = Instant::now() + retry_pause(attempt);
        wait_for_leader_change(ctx, failed_leader, pause_until, wait_until).await;
        attempt += 1;
    }
}

/// The caller's deadline (`grpc-timeout`), when it set one.
pub fn grpc_timeout(md: &MetadataMap) -> Option<Duration> {
    let text = md.get("grpc-timeout")?.to_str().ok()?;
    if text.len() < 2 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        let mut md = MetadataMap::new();
        assert_eq!(grpc_timeout(&md), None);
        for (text, want) in [
            ("4S", Duration::from_secs(4)),
            ("1500m", Duration::from_millis(1500)),
            ("2M", Duration::from_secs(120)),
            ("7u", Duration::from_micros(7)),
        ] {
            md.insert("grpc-timeout", text.parse().expect("ascii"));
            assert_eq!(grpc_timeout(&md), Some(want), "{text}");
        }
        md.insert("grpc-timeout", "soon".parse().expect("ascii"));
        assert_eq!(grpc_timeout(&md), None);
    }

    #[test]
    fn a_relayed_refusal_keeps_raftconf_metadata_only() {
        let mut s = Status::failed_precondition("version mismatch");
        let md = s.metadata_mut();
        md.insert(metadata::CURRENT_VERSION, "3".parse().expect("ascii"));
        md.insert("content-type", "application/grpc".parse().expect("ascii"));
        let out = relay(&s, "127.0.0.1:7070");
        assert_eq!(out.code(), Code::FailedPrecondition);
        assert_eq!(out.message(), "version mismatch");
        let get = |k: &str| out.metadata().get(k).and_then(|v| v.to_str().ok());
        assert_eq!(get(metadata::CURRENT_VERSION), Some("3"));
        assert_eq!(get(metadata::LEADER), Some("127.0.0.1:7070"));
        assert_eq!(get("content-type"), None);
    }
}
