//! Delivery tracking: what each watch subscription reported back.
//!
//! Subscribers send `Ack{revision}` for what they processed and `Refusal` for
//! a document they would not take. This registry keeps, per watch stream on
//! this node, the client id and labels, what it subscribed to, the highest
//! revision it acknowledged and its latest refusal of each namespace, and
//! whether the stream is still open. A closed stream is remembered for
//! [`DISCONNECTED_TTL`] (the subscriber may have moved to another node, or be
//! gone), and the registry is bounded: past its capacity the oldest closed
//! entries are forgotten first. In memory and not replicated: each node knows
//! its own subscribers; `Watch.Clients` gathers them from every node.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use raftconf_schema::{NsPath, Target};

/// How long a closed subscription stays listed.
pub const DISCONNECTED_TTL: Duration = Duration::from_secs(600);

/// A refused document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The revision of the refused document.
    pub revision: u64,
    /// The namespace.
    pub path: String,
    /// Why (deserialization or validation messages).
    pub reasons: Vec<String>,
}

/// One watch stream, as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// The client's id (from its `Subscribe`).
    pub client_id: String,
    /// Its labels (for gray release selectors).
    pub labels: BTreeMap<String, String>,
    /// The paths and prefixes it subscribed to, as given.
    pub paths: Vec<String>,
    /// The highest revision it acknowledged (0 = none yet).
    pub acked_revision: u64,
    /// Its latest refusal of each namespace, by path.
    pub refusals: BTreeMap<String, Refused>,
    /// Whether the stream is still open.
    pub connected: bool,
    /// When it last reported anything (or connected, or closed).
    pub updated: SystemTime,
}

impl Subscriber {
    /// Whether it subscribed to `path` (the namespace or its environment).
    pub fn covers(&self, path: &NsPath) -> bool {
        self.paths
            .iter()
            .filter_map(|p| p.parse::<Target>().ok())
            .any(|t| t.matches(path))
    }
}

/// Identifies one subscription in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

/// Every subscription of this node, open or recently closed.
#[derive(Debug)]
pub struct DeliveryRegistry {
    capacity: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    subs: HashMap<u64, Subscriber>,
}

impl DeliveryRegistry {
    /// A registry of at most `capacity` subscriptions.
    pub fn new(capacity: usize) -> Self {
        Self::with_ttl(capacity, DISCONNECTED_TTL)
    }

    /// A registry that forgets closed subscriptions after `ttl`.
    pub fn with_ttl(capacity: usize, ttl: Duration) -> Self {
        DeliveryRegistry {
            capacity: capacity.max(1),
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records a new open subscription.
    pub fn subscribed(
        &self,
        client_id: &str,
        labels: BTreeMap<String, String>,
        paths: Vec<String>,
    ) -> SubscriptionId {
        let mut inner = self.lock();
        self.prune(&mut inner);
        if inner.subs.len() >= self.capacity {
            // The oldest closed one, else the oldest of all.
            let victim = inner
                .subs
                .iter()
                .min_by_key(|(_, s)| (s.connected, s.updated))
                .map(|(id, s)| (*id, s.connected, s.client_id.clone()));
            if let Some((id, connected, client_id)) = victim {
                if connected {
                    tracing::warn!(
                        %client_id,
                        capacity = self.capacity,
                        "delivery registry full of open streams: no longer tracking the oldest"
                    );
                }
                inner.subs.remove(&id);
            }
        }
        inner.next_id += 1;
        let id = inner.next_id;
        inner.subs.insert(
            id,
            Subscriber {
                client_id: client_id.to_string(),
                labels,
                paths,
                acked_revision: 0,
                refusals: BTreeMap::new(),
                connected: true,
                updated: SystemTime::now(),
            },
        );
        SubscriptionId(id)
    }

    /// Records an acknowledgement; a lower revision than one already acked is ignored.
    pub fn acked(&self, id: SubscriptionId, revision: u64) {
        self.update(id, |s| s.acked_revision = s.acked_revision.max(revision));
    }

    /// Records a refusal (the latest per namespace is kept).
    pub fn refused(&self, id: SubscriptionId, refused: Refused) {
        self.update(id, |s| {
            s.refusals.insert(refused.path.clone(), refused);
        });
    }

    /// Records that the stream closed.
    pub fn disconnected(&self, id: SubscriptionId) {
        self.update(id, |s| s.connected = false);
    }

    /// The subscriptions that cover `path`, open ones and closed ones not yet
    /// forgotten.
    pub fn covering(&self, path: &NsPath) -> Vec<Subscriber> {
        let mut inner = self.lock();
        self.prune(&mut inner);
        let mut out: Vec<Subscriber> = inner
            .subs
            .values()
            .filter(|s| s.covers(path))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    /// How many subscriptions are remembered.
    pub fn len(&self) -> usize {
        self.lock().subs.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn update(&self, id: SubscriptionId, f: impl FnOnce(&mut Subscriber)) {
        if let Some(s) = self.lock().subs.get_mut(&id.0) {
            f(s);
            s.updated = SystemTime::now();
        }
    }

    /// Forgets closed subscriptions older than the TTL.
    fn prune(&self, inner: &mut Inner) {
        let now = SystemTime::now();
        inner.subs.retain(|_, s| {
            s.connected
                || now
                    .duration_since(s.updated)
                    .map_or(true, |age| age < self.ttl)
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> NsPath {
        p.parse().expect("a path")
    }

    #[test]
    fn keeps_the_highest_ack_and_the_last_refusal_per_namespace() {
        let r = DeliveryRegistry::new(10);
        let labels = BTreeMap::from([("region".to_string(), "eu".to_string())]);
        let a = r.subscribed("a", labels, vec!["t/e/".into()]);
        r.acked(a, 5);
        r.acked(a, 3);
        for (revision, ns) in [(6, "t/e/x"), (8, "t/e/x"), (7, "t/e/y")] {
            r.refused(
                a,
                Refused {
                    revision,
                    path: ns.into(),
                    reasons: vec!["bad".into()],
                },
            );
        }
        let subs = r.covering(&path("t/e/x"));
        assert_eq!(subs.len(), 1);
        let s = &subs[0];
        assert_eq!(s.acked_revision, 5);
        assert_eq!(s.labels.get("region").map(String::as_str), Some("eu"));
        assert_eq!(s.refusals["t/e/x"].revision, 8);
        assert_eq!(s.refusals["t/e/y"].revision, 7);
        assert!(s.connected);
    }

    #[test]
    fn covers_by_path_or_environment_prefix_only() {
        let r = DeliveryRegistry::new(10);
        r.subscribed("exact", BTreeMap::new(), vec!["t/e/x".into()]);
        r.subscribed("prefix", BTreeMap::new(), vec!["t/e/".into()]);
        r.subscribed(
            "other",
            BTreeMap::new(),
            vec!["t/f/".into(), "t/e/y".into()],
        );
        let ids: Vec<String> = r
            .covering(&path("t/e/x"))
            .into_iter()
            .map(|s| s.client_id)
            .collect();
        assert_eq!(ids, ["exact", "prefix"]);
    }

    #[test]
    fn closed_subscriptions_stay_listed_until_the_ttl_and_the_registry_is_bounded() {
        let r = DeliveryRegistry::with_ttl(3, Duration::from_millis(50));
        let a = r.subscribed("a", BTreeMap::new(), vec!["t/e/x".into()]);
        r.disconnected(a);
        let listed = r.covering(&path("t/e/x"));
        assert_eq!(listed.len(), 1);
        assert!(!listed[0].connected);
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            r.covering(&path("t/e/x")).is_empty(),
            "forgotten after the TTL"
        );

        // Past capacity, a closed entry goes before any open one.
        let b = r.subscribed("b", BTreeMap::new(), vec!["t/e/x".into()]);
        r.subscribed("c", BTreeMap::new(), vec!["t/e/x".into()]);
        r.subscribed("d", BTreeMap::new(), vec!["t/e/x".into()]);
        r.disconnected(b);
        r.subscribed("e", BTreeMap::new(), vec!["t/e/x".into()]);
        assert_eq!(r.len(), 3);
        let ids: Vec<String> = r
            .covering(&path("t/e/x"))
            .into_iter()
            .map(|s| s.client_id)
            .collect();
        assert_eq!(ids, ["c", "d", "e"]);
        // Reports for a forgotten subscription change nothing.
        r.acked(b, 9);
        assert_eq!(r.len(), 3);
    }
}
