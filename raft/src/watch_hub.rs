//! The watch hub: fan-out of applied changes to subscribers.
//!
//! Apply publishes each [`ChangeEvent`] once (an `Arc`, shared by every
//! subscriber) into a bounded broadcast queue and never waits. A subscriber
//! that falls behind the queue is caught up from the replay window kept in
//! the state machine; one whose start revision is older than the window gets
//! a snapshot of its range instead (never stranded).

use crate::model::WatchItem;
use crate::Result;

/// One watch: yields [`WatchItem`]s in revision order, with no gap and no duplicate.
pub struct Subscription {}

impl Subscription {
    /// The next item: a change, a snapshot, or (when idle for the progress
    /// interval) a progress event. Errors when the node shuts down.
    pub async fn next(&mut self) -> Result<WatchItem> {
        todo!()
    }
}
