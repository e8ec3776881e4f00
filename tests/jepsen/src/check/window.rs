//! Where an operation that names no revision of its own was decided, as a
//! range of revisions, from real time: the *lifetime window*.
//!
//! A refusal is decided on some state `S` (the state apply had reached, or
//! the leader's state after a read barrier). Every op that completed before
//! the refused one was invoked is in that state: an acknowledged write at
//! revision `r` was applied before the refused write was proposed, a get
//! served at `r` was linearized at `r`, so `S ≥ r`. Every op invoked after
//! the refusal completed comes after it: a write acknowledged at `r` was
//! applied after `S` (`S ≤ r − 1`), a get served at `r` saw at least `S`
//! (`S ≤ r`). So `S` lies in `[L, U]` with `L` the highest such revision
//! before and `U` the lowest such bound after (the final revision when
//! nothing follows). In a linearizable history the window is never empty.

use super::{ClientOp, Outcome};

/// An inclusive range of revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
}

/// The windows of every op of a history.
pub(crate) struct Windows {
    /// (completion time, revision) of every op that says where it took
    /// effect, by completion time, with the running maximum of revisions.
    before: Vec<(u64, u64)>,
    /// (invocation time, bound) of the same ops, by invocation time, with the
    /// running minimum (from the end) of their bounds.
    after: Vec<(u64, u64)>,
    /// The bound when nothing follows.
    last: u64,
}

impl Windows {
    /// Windows over `ops`, in a run whose final revision is `last`.
    pub(crate) fn new(ops: &[ClientOp<'_>], last: u64) -> Self {
        let mut before = Vec::new();
        let mut after = Vec::new();
        for op in ops {
            let (t, revision, write) = match op.outcome {
                Outcome::Ok { t, result } if result.revision > 0 => {
                    (t, result.revision, op.op.is_write())
                }
                Outcome::Fail {
                    t,
                    revision: Some(r),
                    ..
                } => (t, r, false),
                _ => continue,
            };
            before.push((t, revision));
            after.push((op.invoke_t, revision.saturating_sub(u64::from(write))));
        }
        before.sort_unstable();
        let mut high = 0;
        for entry in &mut before {
            high = high.max(entry.1);
            entry.1 = high;
        }
        after.sort_unstable();
        let mut low = last;
        for entry in after.iter_mut().rev() {
            low = low.min(entry.1);
            entry.1 = low;
        }
        Windows {
            before,
            after,
            last,
        }
    }

    /// The window of `op`; `lo > hi` when real time and revisions disagree
    /// (the `linearizable` verdict says where).
    pub(crate) fn of(&self, op: &ClientOp<'_>) -> Window {
        let done_before = self.before.partition_point(|&(t, _)| t < op.invoke_t);
        let lo = done_before
            .checked_sub(1)
            .and_then(|i| self.before.get(i))
            .map_or(0, |&(_, r)| r);
        let hi = match op.complete_t() {
            None => self.last,
            Some(done) => {
                let first_after = self.after.partition_point(|&(t, _)| t <= done);
                self.after.get(first_after).map_or(self.last, |&(_, b)| b)
            }
        };
        Window { lo, hi }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::ClientOps;
    use super::{Window, Windows};
    use crate::history::FailReason;

    #[test]
    fn a_refusal_lies_between_what_completed_before_and_what_began_after() {
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1")).ok_write(1, 1, 3, 1);
        // Op 2 runs concurrently with the put at 4 and the get at 5.
        h.invoke(2, 2, put(B, "b-refused"))
            .invoke(1, 3, put(A, "a2"))
            .ok_write(1, 3, 4, 2)
            .invoke(3, 4, get(A))
            .ok_get(3, 4, 5, Some("a2"), 2, 4)
            .fail(
                2,
                2,
                FailReason::Other {
                    message: "x".into(),
                },
                None,
            );
        // Invoked after op 2 completed: a get at 6 and a write at 8.
        h.invoke(1, 5, get(A)).ok_get(1, 5, 6, Some("a2"), 2, 4);
        h.invoke(1, 6, put(A, "a3")).ok_write(1, 6, 8, 3);
        let ops = ClientOps::from_history(&h.events);
        let windows = Windows::new(&ops.ops, 10);
        let window = |id| {
            let op = ops.ops.iter().find(|o| o.op_id == id).expect("op");
            windows.of(op)
        };
        assert_eq!(window(2), Window { lo: 3, hi: 6 });
        assert_eq!(window(1), Window { lo: 0, hi: 3 }, "nothing before it");
        assert_eq!(window(6), Window { lo: 6, hi: 10 }, "nothing after it");
    }

    #[test]
    fn an_indeterminate_op_may_be_decided_until_the_end() {
        let mut h = History::default();
        h.invoke(1, 1, put(A, "a1")).ok_write(1, 1, 3, 1);
        h.invoke(2, 2, put(B, "b1")).info(2, 2);
        h.invoke(1, 3, put(A, "a2")).ok_write(1, 3, 4, 2);
        let ops = ClientOps::from_history(&h.events);
        let op = ops.ops.iter().find(|o| o.op_id == 2).expect("op");
        assert_eq!(Windows::new(&ops.ops, 9).of(op), Window { lo: 3, hi: 9 });
    }
}
