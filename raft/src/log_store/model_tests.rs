//! Randomised operation sequences (append, truncate, purge, reopen, torn tail)
//! checked against a `BTreeMap` model after every step.
//!
//! Seeded: set `LOG_STORE_SEED=<n>` to replay one run; a failure prints its
//! seed; `LOG_STORE_DEBUG=1` traces each step. A failing seed belongs in
//! `tests.rs` as a named regression test.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use openraft::{CommittedLeaderId, EntryPayload};

use super::{LogStore, LogStoreOptions};
use crate::types::{Entry, LogId};

/// xorshift64*: enough randomness for choosing operations, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// What the log must hold.
#[derive(Default)]
struct Model {
    entries: BTreeMap<u64, Entry>,
    purged: Option<LogId>,
    term: u64,
}

impl Model {
    fn last(&self) -> Option<LogId> {
        match (self.entries.values().next_back(), self.purged) {
            (Some(e), _) => Some(e.log_id),
            (None, p) => p,
        }
    }

    fn next_index(&self) -> Option<u64> {
        self.last().map(|id| id.index + 1)
    }
}

fn entry(term: u64, index: u64, rng: &mut Rng) -> Entry {
    let log_id = LogId::new(CommittedLeaderId::new(term, 1), index);
    Entry {
        log_id,
        payload: if rng.range(0, 3) == 0 {
            EntryPayload::Blank
        } else {
            EntryPayload::Normal(crate::command::Proposal {
                requests: vec![crate::command::Request {
                    format: crate::command::ENTRY_FORMAT_VERSION,
                    client_id: "model".to_string(),
                    request_id: index,
                    author: "model".to_string(),
                    time_ms: 0,
                    message: "m".repeat(rng.range(0, 200) as usize),
                    command: crate::command::Command::CreateTenant {
                        tenant: format!("t{index}"),
                    },
                }],
            })
        },
    }
}

fn options() -> LogStoreOptions {
    LogStoreOptions {
        segment_bytes: 700,
        cache_entries: 5,
        cache_bytes: 600,
        max_read_bytes: 1 << 20,
    }
}

fn append(store: &mut LogStore, batch: Vec<Entry>) {
    let (tx, rx) = mpsc::channel();
    store
        .append_with(batch, move |r| {
            let _ = tx.send(r);
        })
        .expect("append");
    rx.recv_timeout(Duration::from_secs(10))
        .expect("completion in time")
        .expect("durable");
}

/// Tears the last record of the last segment, as a crash during its write
/// would: its last bytes read as zeros (the write landed in the segment's
/// reserve) or, with `cut`, are not in the file at all (a segment written
/// without a reserve). Returns false when the last segment holds no record
/// (only its header, fsynced at creation): a crash cannot tear anything there.
fn tear_last_record(dir: &Path, cut: bool) -> bool {
    let mut segs: Vec<_> = fs::read_dir(dir)
        .expect("read dir")
        .map(|d| d.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg-"))
        })
        .collect();
    segs.sort();
    let last = segs.last().expect("a segment");
    let offsets = super::segment::record_offsets(last);
    let end = *offsets.last().expect("at least the end");
    if end <= super::segment::HEADER_LEN {
        return false;
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .open(last)
        .expect("open segment");
    if cut {
        file.set_len(end - 3).expect("chop");
    } else {
        // Its end and its checksum (the end alone may have been zeros).
        let start = offsets[offsets.len() - 2];
        file.write_all_at(&[0u8; 4], start + 4).expect("zero crc");
        file.write_all_at(&[0u8; 3], end - 3).expect("zero end");
    }
    true
}

fn check(store: &LogStore, model: &Model, step: usize, op: &str) {
    let got = store
        .shared
        .read_entries(0, u64::MAX, None)
        .expect("read entries");
    let want: Vec<Entry> = model.entries.values().cloned().collect();
    assert_eq!(
        got.iter().map(|e| e.log_id).collect::<Vec<_>>(),
        want.iter().map(|e| e.log_id).collect::<Vec<_>>(),
        "step {step} ({op}): log ids"
    );
    assert_eq!(got, want, "step {step} ({op}): entries");
    assert_eq!(
        store.shared.log_state(),
        (model.purged, model.last()),
        "step {step} ({op}): log state"
    );
}

fn run(seed: u64, steps: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(seed | 1);
    let mut store = LogStore::open_with(dir.path(), options()).expect("open");
    let mut model = Model {
        term: 1,
        ..Model::default()
    };
    for step in 0..steps {
        let op = match rng.range(0, 99) {
            0..=54 => {
                let first = model.next_index().unwrap_or_else(|| rng.range(0, 3));
                let n = rng.range(1, 6);
                if rng.range(0, 9) == 0 {
                    model.term += 1;
                }
                let batch: Vec<Entry> = (first..first + n)
                    .map(|i| entry(model.term, i, &mut rng))
                    .collect();
                for e in &batch {
                    model.entries.insert(e.log_id.index, e.clone());
                }
                append(&mut store, batch);
                "append"
            }
            55..=69 => {
                let Some(last) = model.last() else { continue };
                let lo = model.purged.map_or(0, |p| p.index + 1);
                let at = rng.range(lo, last.index + 1);
                store
                    .truncate_from(LogId::new(CommittedLeaderId::new(model.term, 1), at))
                    .expect("truncate");
                model.entries.split_off(&at);
                "truncate"
            }
            70..=79 => {
                let Some(last) = model.last() else { continue };
                let upto = rng.range(last.index.saturating_sub(8), last.index + 3);
                if model.purged.is_some_and(|p| p.index >= upto) {
                    continue;
                }
                let id = model.entries.get(&upto).map_or(
                    LogId::new(CommittedLeaderId::new(model.term, 1), upto),
                    |e| e.log_id,
                );
                let first = model.entries.keys().next().copied();
                if model.purged.is_none() && first.is_some_and(|f| f > upto + 1) {
                    // Below the start of the log: a hole, refused.
                    assert!(
                        store.purge_upto(id).is_err(),
                        "step {step}: purge below start"
                    );
                    check(&store, &model, step, "refused purge");
                    continue;
                }
                store.purge_upto(id).expect("purge");
                model.entries = model.entries.split_off(&(upto + 1));
                model.purged = Some(id);
                "purge"
            }
            80..=91 => {
                drop(store);
                store = LogStore::open_with(dir.path(), options()).expect("reopen");
                "reopen"
            }
            _ => {
                // A torn write of the newest record (never acknowledged in a
                // real crash; here it stands for one).
                if model.entries.is_empty() {
                    continue;
                }
                drop(store);
                let chopped = tear_last_record(dir.path(), rng.range(0, 2) == 0);
                store =
                    LogStore::open_with(dir.path(), options()).expect("reopen after torn write");
                if chopped {
                    model.entries.pop_last();
                }
                "torn tail"
            }
        };
        if std::env::var("LOG_STORE_DEBUG").is_ok() {
            eprintln!(
                "step {step}: {op} -> last {:?} purged {:?}",
                model.last().map(|i| i.index),
                model.purged.map(|p| p.index)
            );
        }
        check(&store, &model, step, op);
    }
}

#[test]
fn log_store_random_operations_match_the_model() {
    let seeds: Vec<u64> = match std::env::var("LOG_STORE_SEED") {
        Ok(s) => vec![s.parse().expect("LOG_STORE_SEED is a number")],
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            (0..4).map(|i| now.wrapping_add(i * 7919)).collect()
        }
    };
    for seed in seeds {
        println!("log store model test: LOG_STORE_SEED={seed}");
        let result = std::panic::catch_unwind(|| run(seed, 300));
        if let Err(panic) = result {
            eprintln!("log store model test failed: replay with LOG_STORE_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}
