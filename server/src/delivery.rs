//! Delivery tracking: what each watch subscriber last reported back.
//!
//! Subscribers send `Ack{revision}` for what they applied and `Refusal` for a
//! document they would not take. This registry keeps the latest report per
//! client id, in memory and bounded, so that later features (delivery status,
//! gray release) can ask "which revision does client X run?". It is not
//! replicated: each node knows the subscribers connected to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::SystemTime;

/// What one client last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDelivery {
    /// The labels of its latest `Subscribe` (for gray release selectors).
    pub labels: BTreeMap<String, String>,
    /// The highest revision it acknowledged (0 = none yet).
    pub acked_revision: u64,
    /// Its latest refusal: revision, path and reasons.
    pub last_refusal: Option<Refused>,
    /// When it last reported anything.
    pub updated: SystemTime,
}

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

/// The latest report per client id; the oldest entries are forgotten beyond `capacity`.
#[derive(Debug)]
pub struct DeliveryRegistry {
    capacity: usize,
    clients: Mutex<Clients>,
}

/// The map, and a counter that orders updates (for forgetting the oldest).
#[derive(Debug, Default)]
struct Clients {
    tick: u64,
    by_id: HashMap<String, (u64, ClientDelivery)>,
}

impl DeliveryRegistry {
    /// A registry remembering at most `capacity` clients.
    pub fn new(capacity: usize) -> Self {
        DeliveryRegistry {
            capacity: capacity.max(1),
            clients: Mutex::new(Clients::default()),
        }
    }

    /// Records a subscription (its labels).
    pub fn subscribed(&self, client_id: &str, labels: BTreeMap<String, String>) {
        self.update(client_id, |c| c.labels = labels);
    }

    /// Records an acknowledgement; a lower revision than one already acked is ignored.
    pub fn acked(&self, client_id: &str, revision: u64) {
        self.update(client_id, |c| {
            c.acked_revision = c.acked_revision.max(revision)
        });
    }

    /// Records a refusal.
    pub fn refused(&self, client_id: &str, refused: Refused) {
        self.update(client_id, |c| c.last_refusal = Some(refused));
    }

    /// What `client_id` last reported, if it is remembered.
    pub fn get(&self, client_id: &str) -> Option<ClientDelivery> {
        self.lock().by_id.get(client_id).map(|(_, c)| c.clone())
    }

    /// How many clients are remembered.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn update(&self, client_id: &str, f: impl FnOnce(&mut ClientDelivery)) {
        if client_id.is_empty() {
            return;
        }
        let mut guard = self.lock();
        let clients = &mut *guard;
        clients.tick += 1;
        let tick = clients.tick;
        let by_id = &mut clients.by_id;
        if !by_id.contains_key(client_id) && by_id.len() >= self.capacity {
            let oldest = by_id
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                by_id.remove(&k);
            }
        }
        let (t, entry) = by_id.entry(client_id.to_string()).or_insert_with(|| {
            (
                tick,
                ClientDelivery {
                    labels: BTreeMap::new(),
                    acked_revision: 0,
                    last_refusal: None,
                    updated: SystemTime::now(),
                },
            )
        });
        f(entry);
        *t = tick;
        entry.updated = SystemTime::now();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clients> {
        // A panic while holding this lock leaves plain data behind; keep using it.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_highest_ack_and_the_last_refusal() {
        let r = DeliveryRegistry::new(10);
        r.subscribed("a", BTreeMap::from([("region".into(), "eu".into())]));
        r.acked("a", 5);
        r.acked("a", 3);
        r.refused(
            "a",
            Refused {
                revision: 6,
                path: "t/e/n".into(),
                reasons: vec!["bad".into()],
            },
        );
        let c = r.get("a").expect("recorded");
        assert_eq!(c.acked_revision, 5);
        assert_eq!(c.labels.get("region").map(String::as_str), Some("eu"));
        assert_eq!(c.last_refusal.map(|x| x.revision), Some(6));
        r.acked("", 9);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn is_bounded() {
        let r = DeliveryRegistry::new(2);
        r.acked("a", 1);
        r.acked("b", 1);
        r.acked("c", 1);
        assert_eq!(r.len(), 2);
        assert!(r.get("a").is_none());
    }
}
