//! The pumps of one client connection's watch streams, run as one task.
//!
//! A write reaches every subscription at once: the hub's queue wakes each
//! waiting pump. With one task per pump, 10,000 subscribers 10 per connection
//! are 10,000 tasks in the run queues, in the order they last waited, so the
//! ten pumps of one connection are far apart. Each hands its event to its
//! stream, and the connection's task (see `crate::coalesce`) writes what is
//! queued when it gets its turn: one event per `sendto`, measured, where one
//! write could have carried all ten.
//!
//! Here the pumps of one connection are futures of one task
//! ([`FuturesUnordered`]). The hub's wake-up of a pump marks it ready inside
//! the group and wakes the group's task once; that task then polls every ready
//! pump of the connection in one turn, so the connection's streams queue
//! their events together and one write carries them. A connection whose
//! address is unknown gets a task per pump, as before.
//!
//! A pump that panics ends its own stream only, as it did as a task of its
//! own: the group catches the panic, logs it and runs the other pumps on.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use std::panic::AssertUnwindSafe;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;

/// One watch stream's pump.
pub type Pump = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The running groups, by the client connection's address.
#[derive(Default)]
pub struct PumpGroups {
    groups: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Pump>>>,
}

impl PumpGroups {
    /// Runs `pump` in the group of the connection from `peer`, starting the
    /// group if it has none.
    pub fn spawn(self: &Arc<Self>, peer: Option<SocketAddr>, pump: Pump) {
        // Unwinding drops what the pump holds (its stream's sender among
        // them), so its stream ends and the client resumes elsewhere; nothing
        // the pump shares with others is left half-changed by a panic that
        // stops it between two awaits.
        let pump: Pump = Box::pin(AssertUnwindSafe(pump).catch_unwind().map(|ended| {
            if ended.is_err() {
                tracing::error!(
                    "a watch stream's pump panicked; that stream ends, the others run on"
                );
            }
        }));
        let Some(peer) = peer else {
            tokio::spawn(pump);
            return;
        };
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let pump = match groups.get(&peer) {
            Some(group) => match group.send(pump) {
                Ok(()) => return,
                // The group ended without removing itself (it does so
                // under this lock, and pumps' panics are caught: this is
                // not expected): start another.
                Err(mpsc::error::SendError(pump)) => pump,
            },
            None => pump,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(pump);
        groups.insert(peer, tx);
        drop(groups);
        tokio::spawn(run_group(Arc::clone(self), peer, rx));
    }

    /// Connections with a running group.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Runs the pumps of one connection until none is left and no new one came.
async fn run_group(
    groups: Arc<PumpGroups>,
    peer: SocketAddr,
    mut new: mpsc::UnboundedReceiver<Pump>,
) {
    let mut pumps = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some(pump) = new.recv() => pumps.push(pump),
            Some(()) = pumps.next(), if !pumps.is_empty() => {}
            // Only if the service is gone with no pump left.
            else => return,
        }
        if pumps.is_empty() {
            // Leave under the lock that `spawn` sends under: a pump sent
            // before this is taken here; one sent after finds no group and
            // starts a new one.
            let mut all = groups.groups.lock().unwrap_or_else(|e| e.into_inner());
            match new.try_recv() {
                Ok(pump) => pumps.push(pump),
                Err(_) => {
                    all.remove(&peer);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    fn addr(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// A pump that runs until `stop` fires, counting itself in `done`.
    fn pump(done: &Arc<AtomicUsize>) -> (Pump, oneshot::Sender<()>) {
        let (stop, stopped) = oneshot::channel::<()>();
        let done = Arc::clone(done);
        let pump = Box::pin(async move {
            let _ = stopped.await;
            done.fetch_add(1, Ordering::SeqCst);
        });
        (pump, stop)
    }

    async fn until(what: &str, mut ok: impl FnMut() -> bool) {
        for _ in 0..500 {
            if ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn pumps_of_one_connection_share_a_group_that_ends_with_them() {
        let groups = Arc::new(PumpGroups::default());
        let done = Arc::new(AtomicUsize::new(0));
        let (a, stop_a) = pump(&done);
        let (b, stop_b) = pump(&done);
        let (c, stop_c) = pump(&done);
        let (d, stop_d) = pump(&done);
        groups.spawn(addr(1), a);
        groups.spawn(addr(1), b);
        groups.spawn(addr(2), c);
        groups.spawn(None, d);
        assert_eq!(groups.len(), 2, "one group per known connection");

        stop_a.send(()).expect("running");
        until("the first pump to end", || done.load(Ordering::SeqCst) == 1).await;
        assert_eq!(groups.len(), 2, "the group lives while a pump does");
        stop_b.send(()).expect("running");
        until("the group of port 1 to end", || groups.len() == 1).await;

        // A pump for a connection whose group ended starts a new group.
        let (e, stop_e) = pump(&done);
        groups.spawn(addr(1), e);
        assert_eq!(groups.len(), 2);
        for stop in [stop_c, stop_d, stop_e] {
            stop.send(()).expect("running");
        }
        until("every pump to end", || done.load(Ordering::SeqCst) == 5).await;
        until("every group to end", || groups.len() == 0).await;
    }

    /// A pump that panics ends alone: the other pumps of its connection keep
    /// running in the same group, and the group ends with the last of them.
    #[tokio::test]
    async fn a_panicking_pump_ends_alone() {
        let groups = Arc::new(PumpGroups::default());
        let done = Arc::new(AtomicUsize::new(0));
        let (a, stop_a) = pump(&done);
        let (trigger, triggered) = oneshot::channel::<()>();
        groups.spawn(addr(1), a);
        groups.spawn(
            addr(1),
            Box::pin(async move {
                let _ = triggered.await;
                panic!("a pump's bug");
            }),
        );
        trigger.send(()).expect("running");
        // Give the group turns to run the panicking pump.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(groups.len(), 1, "the group runs on");
        stop_a.send(()).expect("the sibling still runs");
        until("the sibling to end", || done.load(Ordering::SeqCst) == 1).await;
        until("the group to end", || groups.len() == 0).await;
    }
}
