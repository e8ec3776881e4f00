//! [`ReadLease`]: linearizable reads on the leader without a heartbeat round
//! for each, while a lease confirmed by a quorum holds.
//!
//! Why it is safe. openraft 0.9 gives every follower a leader lease: a
//! follower that last heard from the leader at time t neither votes for
//! another candidate nor calls an election before t + `election_timeout_max`
//! (`Engine::handle_vote_req`, and its election timer; a restarted follower
//! counts t from its start). A read round (`ensure_linearizable`) that
//! started at T0 sends fresh heartbeats and returns only once a quorum has
//! answered them, so a quorum heard from this leader at T0 or later, and no
//! other node can win an election before T0 + `election_timeout_max`,
//! except with this leader's own vote: openraft gives a leader's vote no lease
//! and grants it to a candidate with a long enough log. The node therefore
//! revokes its lease before it handles any vote request and before it
//! changes the membership, and again once openraft is done with either
//! ([`ReadLease::revoke`]); a round that was running at a revocation grants
//! none, so neither does a round whose heartbeats went out before the vote
//! was given away.
//!
//! So until T0 + the read lease (shorter than `election_timeout_max`, the
//! difference covering clocks that tick at slightly different rates on
//! different hosts), this node is the only leader, and the commit index its
//! Raft core holds is the cluster's. A leased read asks the core for it (one
//! hand-off to the core task, no network) and checks the lease again after
//! the answer: it held, unrevoked, all the while. The read index is that
//! commit index (or this node's applied index, if higher): every write
//! acknowledged, and every write another read has already seen (a follower
//! may apply an entry before the leader does), is at or below it, and the
//! reader waits until it has applied that far, as after a round. A leader
//! paused after the check (SIGSTOP, a VM stall) still answers with a state
//! that was current inside the read's own interval. Time is `Instant` (the
//! monotonic clock, openraft's too): wall-clock steps do not move it.
//!
//! What it rests on, then, is that a node's monotonic clock does not run
//! much slower than its peers' (a VM whose clock stops while the others'
//! run breaks it, as it breaks every lease). `--no-read-lease` turns it off:
//! every linearizable read then takes a round, as etcd's do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::{LogId, ServerState};

use crate::types::{NodeId, NodeInfo};

/// The leadership a lease belongs to: a lease holds only while the node
/// still leads the same term with the same membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leadership {
    term: u64,
    membership: Option<LogId<NodeId>>,
}

impl Leadership {
    /// This node's leadership according to `metrics`, if it leads.
    pub(crate) fn of(metrics: &openraft::RaftMetrics<NodeId, NodeInfo>) -> Option<Self> {
        let me = metrics.id;
        let leads = metrics.state == ServerState::Leader
            && metrics.current_leader == Some(me)
            && metrics.vote.committed
            && metrics.vote.leader_id.node_id == me;
        leads.then(|| Leadership {
            term: metrics.vote.leader_id.term,
            membership: *metrics.membership_config.log_id(),
        })
    }
}

/// A lease found holding, from [`ReadLease::holding`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holding {
    leadership: Leadership,
    generation: u64,
}

impl Holding {
    /// The term the lease was confirmed in.
    pub(crate) fn term(&self) -> u64 {
        self.leadership.term
    }
}

/// One read round in progress, from [`ReadLease::start_round`].
#[derive(Debug)]
pub(crate) struct Round {
    /// Taken before the round's heartbeats were sent.
    started: Instant,
    /// [`ReadLease`]'s revocation count when the round started.
    generation: u64,
    /// The leadership the round confirms (`None`: not leading, no lease).
    leadership: Option<Leadership>,
}

/// The lease of one node; see the module docs.
#[derive(Debug)]
pub(crate) struct ReadLease {
    /// `None`: leases are off, every read takes a round.
    length: Option<Duration>,
    held: Mutex<Held>,
    /// Rounds started, for tests and diagnostics.
    rounds: AtomicU64,
}

#[derive(Debug, Default)]
struct Held {
    /// The lease and whose it is, if one holds.
    lease: Option<(Instant, Leadership)>,
    /// Revocations so far: a round that saw another count grants nothing.
    generation: u64,
}

impl ReadLease {
    /// Leases of `length` (`None`: no leases).
    pub(crate) fn new(length: Option<Duration>) -> Self {
        ReadLease {
            length,
            held: Mutex::new(Held::default()),
            rounds: AtomicU64::new(0),
        }
    }

    /// Call just before a read round, with the leadership it is to confirm.
    pub(crate) fn start_round(&self, leadership: Option<Leadership>) -> Round {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        let generation = self.lock().generation;
        Round {
            started: Instant::now(),
            generation,
            leadership,
        }
    }

    /// Call after `round` confirmed this node's leadership with a quorum,
    /// with the leadership seen now: grants a lease from the round's start,
    /// unless the lease was revoked meanwhile or the leadership changed.
    pub(crate) fn confirm(&self, round: Round, now: Option<Leadership>) {
        let (Some(length), Some(leadership)) = (self.length, round.leadership) else {
            return;
        };
        if now != Some(leadership) {
            return;
        }
        let until = round.started + length;
        let mut held = self.lock();
        if held.generation != round.generation {
            return;
        }
        held.lease = Some((until, leadership));
    }

    /// The lease, if one holds now for the node's leadership `now`: a read
    /// arriving now may then skip the round.
    pub(crate) fn holding(&self, now: Option<Leadership>) -> Option<Holding> {
        let now = now?;
        let held = self.lock();
        let (until, leadership) = held.lease?;
        (leadership == now && Instant::now() < until).then_some(Holding {
            leadership,
            generation: held.generation,
        })
    }

    /// Whether the lease `holding` was taken from still holds: neither
    /// revoked nor expired since (so it held all the time in between).
    pub(crate) fn still(&self, holding: &Holding) -> bool {
        self.holding(Some(holding.leadership))
            .is_some_and(|now| now.generation == holding.generation)
    }

    #[cfg(test)]
    fn holds(&self, now: Option<Leadership>) -> bool {
        self.holding(now).is_some()
    }

    /// Ends the lease at once, and the one any running round would grant.
    pub(crate) fn revoke(&self) {
        let mut held = self.lock();
        held.generation += 1;
        held.lease = None;
    }

    /// Read rounds started so far.
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // Nothing panics while holding it; a poisoned lock still has a
        // consistent value.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leading(term: u64) -> Option<Leadership> {
        Some(Leadership {
            term,
            membership: None,
        })
    }

    #[test]
    fn a_confirmed_round_grants_a_lease_to_its_leadership_only() {
        let lease = ReadLease::new(Some(Duration::from_secs(60)));
        assert!(!lease.holds(leading(3)), "no lease before any round");
        let round = lease.start_round(leading(3));
        assert!(
            !lease.holds(leading(3)),
            "a running round grants nothing yet"
        );
        lease.confirm(round, leading(3));
        assert!(lease.holds(leading(3)));
        assert!(!lease.holds(leading(4)), "another term");
        assert!(!lease.holds(None), "not leading");
        let other_membership = Some(Leadership {
            term: 3,
            membership: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 9)),
        });
        assert!(!lease.holds(other_membership), "another membership");
        assert_eq!(lease.rounds(), 1);
    }

    #[test]
    fn a_lease_ends_its_length_after_the_round_started() {
        let lease = ReadLease::new(Some(Duration::from_millis(30)));
        let round = lease.start_round(leading(1));
        std::thread::sleep(Duration::from_millis(40));
        lease.confirm(round, leading(1));
        assert!(
            !lease.holds(leading(1)),
            "a round that took longer than the lease grants an expired one"
        );
        let round = lease.start_round(leading(1));
        lease.confirm(round, leading(1));
        assert!(lease.holds(leading(1)));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!lease.holds(leading(1)), "expired");
    }

    #[test]
    fn a_revocation_ends_the_lease_and_voids_running_rounds() {
        let lease = ReadLease::new(Some(Duration::from_secs(60)));
        let round = lease.start_round(leading(2));
        lease.confirm(round, leading(2));
        let running = lease.start_round(leading(2));
        lease.revoke();
        assert!(!lease.holds(leading(2)), "revoked");
        lease.confirm(running, leading(2));
        assert!(
            !lease.holds(leading(2)),
            "a round that started before the revocation grants nothing"
        );
        let after = lease.start_round(leading(2));
        lease.confirm(after, leading(2));
        assert!(lease.holds(leading(2)), "a round after it does");
    }

    #[test]
    fn no_lease_without_leadership_or_length() {
        let lease = ReadLease::new(Some(Duration::from_secs(60)));
        let round = lease.start_round(None);
        lease.confirm(round, leading(1));
        assert!(!lease.holds(leading(1)), "the round began as no leader");
        let round = lease.start_round(leading(1));
        lease.confirm(round, leading(2));
        assert!(
            !lease.holds(leading(1)),
            "the term changed during the round"
        );
        assert!(!lease.holds(leading(2)));

        let off = ReadLease::new(None);
        let round = off.start_round(leading(1));
        off.confirm(round, leading(1));
        assert!(!off.holds(leading(1)), "leases turned off");
    }
}
