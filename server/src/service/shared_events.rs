//! The encoded responses of the latest events, shared by their subscribers.
//!
//! A write's event goes to every subscriber whose targets it matches, most
//! often whole (the hub hands each of them the same `Arc`). Converting it to
//! protobuf, encoding it and building its response header for each of them
//! was per-subscriber work, and each subscriber's queue held its own copy of
//! the document. Here the first pump to send an event encodes its whole
//! response once; the pumps after it find the bytes by the event's `Arc` and
//! queue a reference to them. A filtered part of an event, or one read back
//! from the replay window for one subscriber, is its own `Arc`: it is encoded
//! for that subscriber alone, as before.
//!
//! The response header is the one built for the first subscriber: this
//! node's view as of that moment (a few milliseconds earlier than a header
//! built for each would be), which is what a header says.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use raftconf_api::codec::WatchReply;
use raftconf_api::v1 as pb;
use raftconf_raft::model::ChangeEvent;

/// Events kept encoded: a write's fan-out reads the newest one or two.
const KEPT: usize = 8;

/// The encoded responses of the latest shared events (see the module docs).
#[derive(Default)]
pub struct SharedEvents {
    /// Oldest first. Holding the `Arc` keeps its address from being reused,
    /// so an address found here is this event.
    recent: Mutex<VecDeque<(Arc<ChangeEvent>, WatchReply)>>,
}

impl SharedEvents {
    /// The response carrying `event` with the header `header` builds: the
    /// shared bytes if `event` was encoded before, else encoded now (and kept,
    /// if anyone else holds `event` and so may ask for it).
    pub fn reply(
        &self,
        event: &Arc<ChangeEvent>,
        header: impl FnOnce() -> pb::ResponseHeader,
    ) -> WatchReply {
        if let Some(reply) = self.find(event) {
            return reply;
        }
        let response = pb::WatchResponse {
            header: Some(header()),
            event: Some(pb::watch_response::Event::Change(
                crate::convert::change_event(event),
            )),
            watch_ids: Vec::new(),
        };
        // Only this subscriber holds it: nobody else can ask for it.
        if Arc::strong_count(event) == 1 {
            return WatchReply::message(response);
        }
        let reply = WatchReply::encoded(&response);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // Another pump may have encoded it meanwhile: either copy will do.
        if !recent.iter().any(|(e, _)| Arc::ptr_eq(e, event)) {
            if recent.len() == KEPT {
                recent.pop_front();
            }
            recent.push_back((Arc::clone(event), reply.clone()));
        }
        reply
    }

    fn find(&self, event: &Arc<ChangeEvent>) -> Option<WatchReply> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .iter()
            .rev()
            .find(|(e, _)| Arc::ptr_eq(e, event))
            .map(|(_, reply)| reply.clone())
    }
}

#[cfg(test)]
mod tests {
    use raftconf_raft::model::{Change, ChangeKind};

    use super::*;

    fn event(revision: u64) -> Arc<ChangeEvent> {
        Arc::new(ChangeEvent {
            revision,
            author: "ops".into(),
            time_ms: 1,
            message: String::new(),
            changes: vec![Change {
                kind: ChangeKind::Put,
                path: "t/e/n".into(),
                version: revision,
                value: Some(format!(r#"{{"r":{revision}}}"#)),
            }],
        })
    }

    fn header(revision: u64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            revision,
            ..Default::default()
        }
    }

    fn decoded(reply: &WatchReply) -> pb::WatchResponse {
        reply.to_message().expect("decodes")
    }

    #[test]
    fn a_shared_event_is_encoded_once_and_carries_the_first_header() {
        let shared = SharedEvents::default();
        let ev = event(5);
        let held_by_the_hub = Arc::clone(&ev);
        let first = shared.reply(&ev, || header(5));
        assert!(matches!(first, WatchReply::Encoded(_)));
        let second = shared.reply(&ev, || panic!("not built again"));
        let (WatchReply::Encoded(a), WatchReply::Encoded(b)) = (&first, &second) else {
            panic!("both shared");
        };
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bytes, not a copy");
        let response = decoded(&second);
        assert_eq!(response.header, Some(header(5)));
        let Some(pb::watch_response::Event::Change(change)) = response.event else {
            panic!("a change event");
        };
        assert_eq!(change, crate::convert::change_event(&held_by_the_hub));
    }

    #[test]
    fn an_equal_event_of_its_own_is_encoded_for_its_subscriber() {
        let shared = SharedEvents::default();
        let ev = event(5);
        let _hub = Arc::clone(&ev);
        shared.reply(&ev, || header(5));
        // Read back from the replay window for one subscriber: its own Arc.
        let own = event(5);
        let reply = shared.reply(&own, || header(6));
        assert!(matches!(reply, WatchReply::Message(_)));
        assert_eq!(decoded(&reply).header, Some(header(6)));
    }

    #[test]
    fn only_the_latest_events_are_kept() {
        let shared = SharedEvents::default();
        let events: Vec<_> = (1..=KEPT as u64 + 1).map(event).collect();
        let _hub = events.clone();
        for ev in &events {
            shared.reply(ev, || header(ev.revision));
        }
        assert!(shared.find(&events[0]).is_none(), "the oldest left");
        for ev in &events[1..] {
            assert!(shared.find(ev).is_some());
        }
        // A re-encoded old event still gets the right content.
        let again = shared.reply(&events[0], || header(99));
        assert_eq!(decoded(&again).header, Some(header(99)));
    }
}
