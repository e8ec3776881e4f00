//! The endpoint set: one lazily connected channel per server, the leader hint,
//! which endpoint to try next, and what a failed attempt means.
//!
//! The rule that keeps writes safe lives in [`classify`]: a failure is
//! "not sent" only when the server said `UNAVAILABLE` or no connection could be
//! made; anything else after the request may have left (a reset connection, a
//! timeout, `UNKNOWN`) is ambiguous.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::LEADER_METADATA;
use crate::{ClientOptions, Error, Result};

/// One server as the client knows it.
#[derive(Clone)]
struct Node {
    /// `host:port`, as configured or as learned from a leader hint.
    addr: String,
    /// Connects on first use and reconnects by itself.
    channel: Channel,
}

/// The servers a [`crate::Client`] talks to.
pub(crate) struct Endpoints {
    /// Configured endpoints first, then any learned from leader hints.
    nodes: RwLock<Vec<Node>>,
    /// Index of the endpoint that answered last: reads and watches start there.
    preferred: AtomicUsize,
    /// The leader's client address, from the last response that named it.
    leader: RwLock<Option<String>>,
    options: ClientOptions,
}

impl Endpoints {
    /// Builds lazily connected channels for `addrs` (`host:port`, or full URIs).
    pub(crate) fn new(addrs: Vec<String>, options: ClientOptions) -> Result<Self> {
        if addrs.is_empty() {
            return Err(Error::InvalidArgument(
                "no endpoints given: pass at least one host:port".into(),
            ));
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let addr = addr.trim().to_string();
            if nodes.iter().any(|n| n.addr == addr) {
                continue;
            }
            let channel = connect_lazy(&addr, &options)?;
            nodes.push(Node { addr, channel });
        }
        Ok(Endpoints {
            nodes: RwLock::new(nodes),
            preferred: AtomicUsize::new(0),
            leader: RwLock::new(None),
            options,
        })
    }

    pub(crate) fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Every endpoint address, configured or learned.
    pub(crate) fn addrs(&self) -> Vec<String> {
        read(&self.nodes).iter().map(|n| n.addr.clone()).collect()
    }

    /// The current leader hint.
    pub(crate) fn leader(&self) -> Option<String> {
        read(&self.leader).clone()
    }

    /// The channel for `addr`, adding the endpoint if it is new (a leader hint
    /// may name an address the caller did not configure).
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel> {
        if let Some(node) = read(&self.nodes).iter().find(|n| n.addr == addr) {
            return Ok(node.channel.clone());
        }
        let channel = connect_lazy(addr, &self.options)?;
        let mut nodes = write(&self.nodes);
        if let Some(node) = nodes.iter().find(|n| n.addr == addr) {
            return Ok(node.channel.clone());
        }
        tracing::debug!(endpoint = addr, "learned a new endpoint from a leader hint");
        nodes.push(Node {
            addr: addr.to_string(),
            channel: channel.clone(),
        });
        Ok(channel)
    }

    /// Endpoints in the order to try them: the leader hint first when
    /// `leader_first`, then the preferred endpoint, then the rest in rotation.
    pub(crate) fn order(&self, leader_first: bool) -> Vec<String> {
        let nodes = read(&self.nodes);
        let start = self.preferred.load(Ordering::Relaxed) % nodes.len().max(1);
        let mut order: Vec<String> = Vec::with_capacity(nodes.len() + 1);
        if leader_first {
            if let Some(leader) = self.leader() {
                order.push(leader);
            }
        }
        for i in 0..nodes.len() {
            let addr = &nodes[(start + i) % nodes.len()].addr;
            if !order.contains(addr) {
                order.push(addr.clone());
            }
        }
        order
    }

    /// Remembers that `addr` answered: later reads and watches start there.
    pub(crate) fn mark_good(&self, addr: &str) {
        if let Some(i) = read(&self.nodes).iter().position(|n| n.addr == addr) {
            self.preferred.store(i, Ordering::Relaxed);
        }
    }

    /// Moves the preference past `addr` (a watch that broke there reconnects elsewhere).
    pub(crate) fn mark_bad(&self, addr: &str) {
        let nodes = read(&self.nodes);
        if let Some(i) = nodes.iter().position(|n| n.addr == addr) {
            let _ = self.preferred.compare_exchange(
                i,
                (i + 1) % nodes.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Records the leader named in `metadata` (or a response header); returns it
    /// if it differs from the hint held so far.
    pub(crate) fn note_leader(&self, addr: &str) -> Option<String> {
        let addr = addr.trim();
        if addr.is_empty() {
            return None;
        }
        // Every watch event carries the hint, nearly always unchanged: a
        // shared lock for that, the exclusive one only to change it.
        if read(&self.leader).as_deref() == Some(addr) {
            return None;
        }
        let mut leader = write(&self.leader);
        if leader.as_deref() == Some(addr) {
            return None;
        }
        tracing::debug!(leader = addr, "leader hint");
        *leader = Some(addr.to_string());
        Some(addr.to_string())
    }

    /// [`Endpoints::note_leader`] from response or error metadata.
    pub(crate) fn note_leader_metadata(&self, metadata: &MetadataMap) -> Option<String> {
        let addr = metadata.get(LEADER_METADATA)?.to_str().ok()?;
        self.note_leader(addr)
    }
}

fn connect_lazy(addr: &str, options: &ClientOptions) -> Result<Channel> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| Error::InvalidArgument(format!("endpoint {addr:?} is not host:port: {e}")))?;
    Ok(endpoint
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(options.keep_alive_interval)
        .keep_alive_timeout(options.keep_alive_timeout)
        .keep_alive_while_idle(true)
        .connect_lazy())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A panic while holding these short, non-async locks leaves valid data.
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a failed attempt says about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request certainly did not take effect: the server answered
    /// `UNAVAILABLE`, or no connection could be made. Safe to send elsewhere.
    NotSent,
    /// The request may have taken effect: `UNKNOWN`, a timeout, a connection
    /// that broke after the request left. A write may only be re-sent with the
    /// same write id.
    Ambiguous,
    /// The server's answer: return it.
    Final,
}

/// Classifies a failed attempt. A status the transport produced locally carries
/// its cause as `source()`; one the server sent does not.
pub(crate) fn classify(status: &Status) -> Failure {
    if is_connect_error(status) {
        return Failure::NotSent;
    }
    let local = std::error::Error::source(status).is_some();
    match status.code() {
        Code::Unavailable if !local => Failure::NotSent,
        Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled => {
            Failure::Ambiguous
        }
        _ if local => Failure::Ambiguous,
        _ => Failure::Final,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(addrs: &[&str]) -> Endpoints {
        Endpoints::new(
            addrs.iter().map(|s| s.to_string()).collect(),
            ClientOptions::default(),
        )
        .expect("valid endpoints")
    }

    #[tokio::test]
    async fn order_prefers_the_leader_for_writes_and_the_last_good_for_reads() {
        let e = endpoints(&["a:1", "b:2", "c:3", "b:2"]);
        assert_eq!(e.addrs(), ["a:1", "b:2", "c:3"], "duplicates dropped");
        assert_eq!(e.order(true), ["a:1", "b:2", "c:3"]);
        e.mark_good("b:2");
        assert_eq!(e.order(false), ["b:2", "c:3", "a:1"]);
        assert_eq!(e.note_leader("c:3"), Some("c:3".into()));
        assert_eq!(e.note_leader("c:3"), None, "unchanged hint");
        assert_eq!(e.order(true), ["c:3", "b:2", "a:1"]);
        assert_eq!(e.order(false), ["b:2", "c:3", "a:1"]);
        e.mark_bad("b:2");
        assert_eq!(e.order(false), ["c:3", "a:1", "b:2"]);
        // A hint naming an unknown address adds it.
        e.note_leader("d:4");
        e.channel("d:4").expect("valid address");
        assert_eq!(e.order(true), ["d:4", "c:3", "a:1", "b:2"]);
    }

    #[tokio::test]
    async fn leader_hint_comes_from_metadata() {
        let e = endpoints(&["a:1"]);
        let mut status = Status::unavailable("not the leader");
        status
            .metadata_mut()
            .insert(LEADER_METADATA, "b:2".parse().expect("ascii"));
        assert_eq!(
            e.note_leader_metadata(status.metadata()),
            Some("b:2".into())
        );
        assert_eq!(e.leader(), Some("b:2".into()));
    }

    #[test]
    fn bad_endpoints_are_refused() {
        assert!(Endpoints::new(vec![], ClientOptions::default()).is_err());
        assert!(Endpoints::new(vec!["a b:1".into()], ClientOptions::default()).is_err());
    }

    #[test]
    fn failures_are_classified_for_write_safety() {
        // Sent by the server (no local source).
        assert_eq!(
            classify(&Status::unavailable("no leader")),
            Failure::NotSent
        );
        assert_eq!(classify(&Status::unknown("maybe")), Failure::Ambiguous);
        assert_eq!(
            classify(&Status::deadline_exceeded("slow")),
            Failure::Ambiguous
        );
        assert_eq!(classify(&Status::not_found("x")), Failure::Final);
        assert_eq!(classify(&Status::failed_precondition("x")), Failure::Final);
        assert_eq!(classify(&Status::internal("bug")), Failure::Final);
        // Could not connect: nothing was sent.
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let connect = Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        assert_eq!(connect.code(), Code::Unavailable);
        assert_eq!(classify(&connect), Failure::NotSent);
        // Broke after sending (a local error that is not a connect error).
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let broken = Status::from_error(Box::new(reset));
        assert_eq!(classify(&broken), Failure::Ambiguous);
    }
}
