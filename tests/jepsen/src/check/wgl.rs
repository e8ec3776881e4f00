//! A Wing–Gong linearizability search (with Lowe's cache of visited
//! configurations, as Porcupine does it) over the client-visible results
//! alone: invocation and completion times, operations and what they
//! returned; revisions are ignored.
//!
//! Namespaces are independent registers, so each is searched on its own
//! (P-compositionality). The register is `(value, version)`: a put sets the
//! value and bumps the version, a CAS does so only if its condition holds, a
//! delete clears the value and bumps the version; a get sees the value and
//! version (only "no value" for a missing namespace). An `Ok` write must
//! have produced the version it reported (a transaction reports none). A
//! `Fail` with `NotFound` or `VersionMismatch` must linearize where its
//! condition was false; a `Fail` for another reason is left out. An
//! indeterminate write may take effect at any point after its invocation, or
//! never; an indeterminate get is left out.
//!
//! A transaction is projected onto each of its namespaces: its write there
//! is an operation of that register, with the transaction's invocation,
//! completion and outcome (acknowledged: it took effect; indeterminate: it
//! may have, or not; refused: left out, since the refusal does not say which
//! namespace's condition failed). So the search checks per-namespace
//! linearizability only. That a transaction took effect on all its
//! namespaces at one point, or on none, is checked by the revision-based
//! check (`linear.rs`: all its writes at its one revision, in real-time
//! order), by `lost.rs` (one log entry holding exactly its writes; no torn
//! transaction) and by `watch.rs` (each event one whole log entry).
//!
//! Two reductions keep runs with many indeterminate writes tractable, both
//! exact (they drop no linearization that could matter):
//!
//! - Values no get ever returned are indistinguishable to every operation,
//!   so they are one value ("unread"); states that differ only there merge.
//! - Indeterminate writes with the same effect (say, every put of an unread
//!   value, or every delete) are interchangeable, so of each such class only
//!   the earliest-invoked one not yet linearized is ever tried. And they are
//!   tried only once no operation with a known outcome can go next: an
//!   indeterminate write takes effect only when something needs it to.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::Value;

use super::{value_key, ClientOp, Outcome};
use crate::history::{FailReason, NsWrite};

/// Beyond this much memory of visited configurations a search gives up (and
/// fails) rather than exhaust the machine.
const CACHE_BYTES_LIMIT: usize = 1 << 30;

/// The id of every value no get returned.
const UNREAD: u32 = u32::MAX;

/// What the search concluded over every namespace.
pub(crate) struct SearchReport {
    /// Namespaces searched.
    pub(crate) namespaces: usize,
    /// Operations that took part (left-out ones not counted).
    pub(crate) ops: usize,
    /// One line per namespace that is not linearizable or whose search did
    /// not finish.
    pub(crate) failures: Vec<String>,
    /// How many of the failures are searches that did not finish.
    pub(crate) unfinished: usize,
}

/// Searches every namespace, smallest first, all within `deadline`.
pub(crate) fn search_all(
    ops: &[ClientOp<'_>],
    deadline: Instant,
    limit_text: &str,
) -> SearchReport {
    let mut by_ns: HashMap<&str, Vec<Part<'_, '_>>> = HashMap::new();
    for client in ops {
        let writes = client.op.writes();
        if writes.is_empty() {
            if let Some(ns) = client.op.ns() {
                by_ns.entry(ns).or_default().push(Part {
                    client,
                    write: None,
                });
            }
        }
        for w in writes {
            by_ns.entry(w.ns).or_default().push(Part {
                client,
                write: Some(w),
            });
        }
    }
    let mut namespaces: Vec<(&str, Vec<Part<'_, '_>>)> = by_ns.into_iter().collect();
    namespaces.sort_by(|(a, ops_a), (b, ops_b)| ops_a.len().cmp(&ops_b.len()).then(a.cmp(b)));
    let mut report = SearchReport {
        namespaces: namespaces.len(),
        ops: 0,
        failures: Vec::new(),
        unfinished: 0,
    };
    for (ns, ops) in namespaces {
        let register = Register::new(&ops);
        report.ops += register.ops.len();
        match register.search(deadline) {
            Found::Linearizable => {}
            Found::NotLinearizable(stuck) => report.failures.push(format!(
                "{ns}: not linearizable ({} ops): the longest linearization found has {} ops, after which {}",
                register.ops.len(),
                stuck.depth,
                register.explain(&stuck),
            )),
            Found::GaveUp { why, depth } => {
                report.unfinished += 1;
                let why = match why {
                    GaveUp::Time => format!("search did not finish in {limit_text}"),
                    GaveUp::Memory => format!(
                        "search gave up after {} MiB of visited configurations",
                        CACHE_BYTES_LIMIT >> 20
                    ),
                };
                report.failures.push(format!(
                    "{ns}: {why} ({} ops, longest linearization found so far: {depth} ops)",
                    register.ops.len()
                ));
            }
        }
    }
    report
}

/// One operation as one namespace sees it: a get, or the operation's write
/// on that namespace (a transaction has one on each of its namespaces).
#[derive(Clone, Copy)]
struct Part<'a, 'h> {
    client: &'a ClientOp<'h>,
    /// `None` for a get.
    write: Option<NsWrite<'h>>,
}

/// The register's state: the value's id (`None`: no value) and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct State {
    value: Option<u32>,
    version: u64,
}

/// When a write takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cond {
    Always,
    /// The namespace does not exist (CAS with expected version 0).
    Absent,
    /// It exists (delete).
    Live,
    /// It exists at this version (CAS).
    Version(u64),
    /// Never (a delete that requires the namespace not to exist).
    Never,
}

impl Cond {
    /// When `w` may take effect.
    fn of(w: &NsWrite<'_>) -> Self {
        match (w.value, w.expect_version) {
            (Some(_), None) => Cond::Always,
            (Some(_), Some(0)) => Cond::Absent,
            (None, None) => Cond::Live,
            (None, Some(0)) => Cond::Never,
            (_, Some(v)) => Cond::Version(v),
        }
    }

    fn holds(self, s: State) -> bool {
        match self {
            Cond::Never => false,
            Cond::Always => true,
            Cond::Absent => s.value.is_none(),
            Cond::Live => s.value.is_some(),
            Cond::Version(v) => s.value.is_some() && s.version == v,
        }
    }
}

/// What an operation does to the register, and what it requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Effect {
    /// An `Ok` get: the register must hold this (version not compared when
    /// there is no value).
    Read { value: Option<u32>, version: u64 },
    /// A write (value `None`: delete) that takes effect when `cond` holds;
    /// `new_version` is what an `Ok` one reported, `None` when
    /// indeterminate.
    Write {
        value: Option<u32>,
        cond: Cond,
        new_version: Option<u64>,
    },
    /// A definite failure: `cond` must not hold.
    Refused { cond: Cond },
}

impl Effect {
    /// The version the register must be at for this op to go, when the op
    /// says: versions never go down, so once the register is past it the
    /// op can never go.
    fn pinned_version(self) -> Option<u64> {
        match self {
            Effect::Read {
                value: Some(_),
                version,
            } => Some(version),
            Effect::Write {
                new_version: Some(v),
                ..
            } => v.checked_sub(1),
            _ => None,
        }
    }

    fn step(self, s: State) -> Option<State> {
        match self {
            Effect::Read {
                value: Some(v),
                version,
            } => (s.value == Some(v) && s.version == version).then_some(s),
            Effect::Read { value: None, .. } => s.value.is_none().then_some(s),
            Effect::Write {
                value,
                cond,
                new_version,
            } => {
                let next = State {
                    value,
                    version: s.version + 1,
                };
                (cond.holds(s) && new_version.is_none_or(|v| v == next.version)).then_some(next)
            }
            Effect::Refused { cond } => (!cond.holds(s)).then_some(s),
        }
    }
}

struct RegisterOp<'a, 'h> {
    client: &'a ClientOp<'h>,
    effect: Effect,
    /// `None` for an indeterminate write (it returns "at infinity").
    return_t: Option<u64>,
}

/// One namespace's operations, ready to search.
struct Register<'a, 'h> {
    ops: Vec<RegisterOp<'a, 'h>>,
    /// The indeterminate writes, in classes of equal effect, each sorted by
    /// invocation time.
    classes: Vec<Vec<usize>>,
    /// The values some get returned, by id.
    values: Vec<&'h Value>,
}

/// The deepest point the search reached: how many ops were linearized
/// (which, and the state then), and the op whose return came next.
struct Stuck {
    depth: usize,
    op: usize,
    state: State,
    linearized: Vec<u64>,
}

enum GaveUp {
    Time,
    Memory,
}

enum Found {
    Linearizable,
    NotLinearizable(Stuck),
    GaveUp { why: GaveUp, depth: usize },
}

/// Where the search looks for the next operation to linearize.
#[derive(Clone, Copy)]
enum Cursor {
    /// At an entry of the list of calls and returns of the operations with
    /// a known outcome.
    Known(usize),
    /// At a class of indeterminate writes; only writes invoked by `bound`
    /// (the first pending return) may go.
    Unknown { class: usize, bound: u64 },
}

impl<'a, 'h> Register<'a, 'h> {
    fn new(parts: &[Part<'a, 'h>]) -> Self {
        // Only values some get returned keep their identity.
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut values: Vec<&'h Value> = Vec::new();
        for part in parts {
            if let (Outcome::Ok { result, .. }, None) = (part.client.outcome, part.write) {
                if let Some(v) = &result.value {
                    ids.entry(value_key(v)).or_insert_with(|| {
                        values.push(v);
                        u32::try_from(values.len() - 1).unwrap_or(UNREAD)
                    });
                }
            }
        }
        let id = |v: &Value| ids.get(&value_key(v)).copied().unwrap_or(UNREAD);

        let mut ops = Vec::with_capacity(parts.len());
        let mut class_of: HashMap<Effect, usize> = HashMap::new();
        let mut classes: Vec<Vec<usize>> = Vec::new();
        for &Part { client, write } in parts {
            let cond = write.as_ref().map_or(Cond::Always, Cond::of);
            let written = write.and_then(|w| w.value).map(id);
            let (effect, return_t) = match (client.outcome, write) {
                (Outcome::Ok { t, result }, None) => (
                    Effect::Read {
                        value: result.value.as_ref().map(id),
                        version: result.version,
                    },
                    Some(t),
                ),
                (Outcome::Ok { t, result }, Some(_)) => (
                    Effect::Write {
                        value: written,
                        cond,
                        // A transaction's answer names no versions.
                        new_version: (!client.op.is_transaction()).then_some(result.version),
                    },
                    Some(t),
                ),
                // A refused transaction does not say which namespace refused.
                (Outcome::Fail { .. }, _) if client.op.is_transaction() => continue,
                (
                    Outcome::Fail {
                        t,
                        reason: FailReason::NotFound,
                        ..
                    },
                    _,
                ) => (Effect::Refused { cond: Cond::Live }, Some(t)),
                (
                    Outcome::Fail {
                        t,
                        reason: FailReason::VersionMismatch { .. },
                        ..
                    },
                    Some(NsWrite {
                        expect_version: Some(_),
                        ..
                    }),
                ) => (Effect::Refused { cond }, Some(t)),
                // No effect and nothing learned (linear.rs reports a version
                // mismatch of an op without a version condition).
                (Outcome::Fail { .. }, _) => continue,
                (Outcome::Info { .. }, None) => continue,
                (Outcome::Info { .. }, Some(_)) => (
                    Effect::Write {
                        value: written,
                        cond,
                        new_version: None,
                    },
                    None,
                ),
            };
            // A completion stamped before its invocation is malformed
            // (reported by linear.rs); take it as instantaneous.
            let return_t = return_t.map(|t| t.max(client.invoke_t));
            if return_t.is_none() {
                let class = *class_of.entry(effect).or_insert_with(|| {
                    classes.push(Vec::new());
                    classes.len() - 1
                });
                if let Some(members) = classes.get_mut(class) {
                    members.push(ops.len());
                }
            }
            ops.push(RegisterOp {
                client,
                effect,
                return_t,
            });
        }
        for members in &mut classes {
            members.sort_by_key(|&i| ops[i].client.invoke_t);
        }
        Register {
            ops,
            classes,
            values,
        }
    }

    /// Why the op at the deepest point could not go.
    fn explain(&self, stuck: &Stuck) -> String {
        let op = &self.ops[stuck.op];
        let held = self.describe(stuck.state);
        let Some(after) = op.effect.step(stuck.state) else {
            return format!(
                "{} cannot take effect: the register holds {held}",
                op.client
            );
        };
        let pending = |i: usize| {
            stuck
                .linearized
                .get(i / 64)
                .is_some_and(|w| w & (1 << (i % 64)) == 0)
        };
        let blocker = self
            .ops
            .iter()
            .enumerate()
            .filter(|&(i, other)| i != stuck.op && other.return_t.is_some() && pending(i))
            .filter_map(|(_, other)| Some((other.effect.pinned_version()?, other)))
            .filter(|&(v, _)| v < after.version)
            .min_by_key(|&(v, other)| (v, other.client.invoke_t));
        match blocker {
            Some((v, other)) => format!(
                "{} cannot take effect: the register holds {held}, and it would leave v{v} behind, which {} needs",
                op.client, other.client
            ),
            None => format!("nothing fits before {} returns: the register holds {held}", op.client),
        }
    }

    fn describe(&self, s: State) -> String {
        match (s.value, s.version) {
            (Some(UNREAD), version) => format!("a value no get read, v{version}"),
            (Some(id), version) => match self.values.get(id as usize) {
                Some(v) => format!("{v} v{version}"),
                None => format!("value #{id} v{version}"),
            },
            (None, 0) => "nothing (never created)".to_string(),
            (None, version) => format!("nothing (deleted at v{version})"),
        }
    }

    /// The search. The operations with a known outcome form a doubly linked
    /// list of call and return entries in time order. From the head, find
    /// the first call whose effect is possible and whose (linearized set,
    /// state) was not seen before; linearize it (lift its entries out) and
    /// start over. Reaching a return means no call before it can go: try
    /// an indeterminate write invoked by then, one per class; failing that,
    /// undo the last choice and try the one after it.
    fn search(&self, deadline: Instant) -> Found {
        let n = self.ops.len();
        // (time, return?, op): calls before returns at the same time, so
        // ops that touch at one instant count as concurrent.
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (i, op) in self.ops.iter().enumerate() {
            if let Some(t) = op.return_t {
                order.push((op.client.invoke_t, false, i));
                order.push((t, true, i));
            }
        }
        order.sort_unstable();
        // Entries 1..=len; 0 is the head, len + 1 the tail.
        let len = order.len();
        let tail = len + 1;
        let mut next: Vec<usize> = (1..=len + 1).chain([tail]).collect();
        let mut prev: Vec<usize> = [0].into_iter().chain(0..=len).collect();
        let mut entry_op = vec![0; len + 2];
        let mut entry_t = vec![u64::MAX; len + 2];
        let mut entry_is_return = vec![false; len + 2];
        let mut return_entry: Vec<usize> = vec![0; n];
        for (k, &(t, is_return, op)) in order.iter().enumerate() {
            entry_op[k + 1] = op;
            entry_t[k + 1] = t;
            entry_is_return[k + 1] = is_return;
            if is_return {
                return_entry[op] = k + 1;
            }
        }
        let mut remaining = len / 2;
        // The pinned versions of the known-outcome ops not linearized yet
        // (version → how many).
        let mut pins: BTreeMap<u64, usize> = BTreeMap::new();
        for op in &self.ops {
            if let (Some(v), Some(_)) = (op.effect.pinned_version(), op.return_t) {
                *pins.entry(v).or_default() += 1;
            }
        }
        // How many of each class are linearized (always its earliest).
        let mut taken = vec![0usize; self.classes.len()];
        let zobrist: Vec<u64> = (0..n as u64).map(splitmix64).collect();

        let words = n.div_ceil(64);
        let mut linearized = vec![0u64; words];
        let mut hash = 0u64;
        let mut state = State {
            value: None,
            version: 0,
        };
        let mut cache: HashMap<(u64, State), Vec<Box<[u64]>>> = HashMap::new();
        let mut cache_bytes = 0usize;
        // The choices made: where the cursor was, and the state before.
        let mut stack: Vec<(Cursor, State)> = Vec::new();
        let mut best: Option<Stuck> = None;
        let mut steps = 0u64;
        let mut cursor = Cursor::Known(next[0]);

        while remaining > 0 {
            steps += 1;
            if steps.is_multiple_of(1024) && Instant::now() >= deadline {
                return Found::GaveUp {
                    why: GaveUp::Time,
                    depth: best.map_or(stack.len(), |b| b.depth.max(stack.len())),
                };
            }
            // The op the cursor proposes, or where it goes when there is none.
            let candidate = match cursor {
                Cursor::Known(e) if e != tail && !entry_is_return[e] => Some(entry_op[e]),
                Cursor::Known(e) => {
                    if e != tail && best.as_ref().is_none_or(|b| stack.len() > b.depth) {
                        best = Some(Stuck {
                            depth: stack.len(),
                            op: entry_op[e],
                            state,
                            linearized: linearized.clone(),
                        });
                    }
                    cursor = Cursor::Unknown {
                        class: 0,
                        bound: entry_t[e],
                    };
                    continue;
                }
                Cursor::Unknown { class, bound } if class < self.classes.len() => self.classes
                    [class]
                    .get(taken[class])
                    .copied()
                    .filter(|&op| self.ops[op].client.invoke_t <= bound),
                Cursor::Unknown { .. } => {
                    // Nothing can go next: undo the last choice.
                    let Some((choice, before)) = stack.pop() else {
                        return match best {
                            Some(stuck) => Found::NotLinearizable(stuck),
                            // Unreachable: a pending return records one.
                            None => Found::GaveUp {
                                why: GaveUp::Time,
                                depth: 0,
                            },
                        };
                    };
                    state = before;
                    cursor = match choice {
                        Cursor::Known(call) => {
                            let op = entry_op[call];
                            // Put back the return, then the call.
                            for e in [return_entry[op], call] {
                                next[prev[e]] = e;
                                prev[next[e]] = e;
                            }
                            remaining += 1;
                            if let Some(v) = self.ops[op].effect.pinned_version() {
                                *pins.entry(v).or_default() += 1;
                            }
                            hash ^= zobrist[op];
                            linearized[op / 64] &= !(1 << (op % 64));
                            Cursor::Known(next[call])
                        }
                        Cursor::Unknown { class, bound } => {
                            taken[class] -= 1;
                            let op = self.classes[class][taken[class]];
                            hash ^= zobrist[op];
                            linearized[op / 64] &= !(1 << (op % 64));
                            Cursor::Unknown {
                                class: class + 1,
                                bound,
                            }
                        }
                    };
                    continue;
                }
            };

            let accepted = candidate.and_then(|op| {
                let effect = self.ops[op].effect;
                let after = effect.step(state)?;
                // Pointless if it leaves the register past a version some
                // other pending op needs.
                let own_pin = effect
                    .pinned_version()
                    .filter(|_| self.ops[op].return_t.is_some());
                let lowest_other = pins.iter().find_map(|(&v, &count)| {
                    (count > usize::from(own_pin == Some(v))).then_some(v)
                });
                if lowest_other.is_some_and(|v| after.version > v) {
                    return None;
                }
                let after_hash = hash ^ zobrist[op];
                linearized[op / 64] |= 1 << (op % 64);
                let key = (after_hash, after);
                let seen = cache
                    .get(&key)
                    .is_some_and(|sets| sets.iter().any(|s| **s == linearized[..]));
                if seen {
                    linearized[op / 64] &= !(1 << (op % 64));
                    return None;
                }
                cache_bytes += words * 8 + 64;
                cache
                    .entry(key)
                    .or_default()
                    .push(linearized.clone().into_boxed_slice());
                Some((op, after, after_hash))
            });
            if cache_bytes > CACHE_BYTES_LIMIT {
                return Found::GaveUp {
                    why: GaveUp::Memory,
                    depth: best.map_or(stack.len(), |b| b.depth.max(stack.len())),
                };
            }
            match (accepted, cursor) {
                (Some((op, after, after_hash)), Cursor::Known(call)) => {
                    stack.push((cursor, state));
                    state = after;
                    hash = after_hash;
                    remaining -= 1;
                    if let Some(v) = self.ops[op].effect.pinned_version() {
                        if let Some(count) = pins.get_mut(&v) {
                            *count -= 1;
                            if *count == 0 {
                                pins.remove(&v);
                            }
                        }
                    }
                    // Lift the call, then its return.
                    for e in [call, return_entry[op]] {
                        next[prev[e]] = next[e];
                        prev[next[e]] = prev[e];
                    }
                    cursor = Cursor::Known(next[0]);
                }
                (Some((_, after, after_hash)), Cursor::Unknown { class, .. }) => {
                    stack.push((cursor, state));
                    state = after;
                    hash = after_hash;
                    taken[class] += 1;
                    cursor = Cursor::Known(next[0]);
                }
                (None, Cursor::Known(e)) => cursor = Cursor::Known(next[e]),
                (None, Cursor::Unknown { class, bound }) => {
                    cursor = Cursor::Unknown {
                        class: class + 1,
                        bound,
                    }
                }
            }
        }
        Found::Linearizable
    }
}

/// A fixed pseudo-random key per operation for the incremental hash of the
/// linearized set.
fn splitmix64(i: u64) -> u64 {
    let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
