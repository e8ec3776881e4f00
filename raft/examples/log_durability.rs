//! Run with `cargo run --release -p raftconf-raft --example log_durability`
//! (optionally followed by a directory; the default is `./target/durability-bench`).
//!
//! Measures what a durable Raft log write costs on this disk: raftconf's log
//! store (one `fdatasync` per append, group commit) against sled 0.34 made
//! durable by hand (`flush()` + `fdatasync` of its `db` file, since `flush`
//! alone is `sync_file_range`). Prints one table. Use a directory on the disk
//! the server will use: `/tmp` may be tmpfs, where fsync costs nothing.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
use raftconf_raft::command::{Command, Proposal, Request, ENTRY_FORMAT_VERSION};
use raftconf_raft::log_store::LogStore;
use raftconf_raft::types::Entry;

/// Encoded size of one entry, as the brief of the measurement says.
const ENTRY_BYTES: usize = 256;
const SINGLE_OPS: usize = 2000;
const BATCH: usize = 64;
const BATCH_OPS: usize = 300;
const VOTE_OPS: usize = 500;
const IN_FLIGHT: usize = 16;
const IN_FLIGHT_OPS: usize = 5000;

fn main() -> anyhow::Result<()> {
    let base = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/durability-bench"));
    std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
    let base = base.canonicalize()?;

    let rows = vec![
        raw_fdatasync(&base)?,
        log_store_single(&base)?,
        log_store_batches(&base)?,
        sled_single(&base)?,
        sled_batches(&base)?,
        log_store_in_flight(&base)?,
        vote_saves(&base)?,
    ];

    println!();
    println!(
        "durable log writes on {} ({} B entries)",
        base.display(),
        ENTRY_BYTES
    );
    println!();
    println!(
        "| {:<52} | {:>5} | {:>9} | {:>9} | {:>10} | {:>7} |",
        "case", "ops", "p50 µs", "p99 µs", "entries/s", "fsyncs"
    );
    println!(
        "|{:-<54}|{:->7}|{:->11}|{:->11}|{:->12}|{:->9}|",
        "", "", "", "", "", ""
    );
    for r in rows {
        println!(
            "| {:<52} | {:>5} | {:>9.0} | {:>9.0} | {:>10} | {:>7} |",
            r.case,
            r.ops,
            micros(r.p50),
            micros(r.p99),
            r.entries_per_sec
                .map_or("-".to_string(), |e| format!("{e:.0}")),
            r.fsyncs.map_or("-".to_string(), |f| f.to_string()),
        );
    }
    println!();
    println!("p50/p99: per operation (one append, one batch, one vote save), until durable.");
    println!("fsyncs: group-commit fdatasyncs of the log store (sled rows: one per op).");
    Ok(())
}

struct Row {
    case: String,
    ops: usize,
    p50: Duration,
    p99: Duration,
    /// `None` for rows that write no entries.
    entries_per_sec: Option<f64>,
    fsyncs: Option<u64>,
}

impl Row {
    fn new(case: &str, mut samples: Vec<Duration>, entries: usize, total: Duration) -> Row {
        samples.sort();
        let pick = |q: usize| samples[(samples.len() * q / 100).min(samples.len() - 1)];
        Row {
            case: case.to_string(),
            ops: samples.len(),
            p50: pick(50),
            p99: pick(99),
            entries_per_sec: (entries > 0).then(|| entries as f64 / total.as_secs_f64()),
            fsyncs: None,
        }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A normal entry whose bincode encoding is `ENTRY_BYTES` long.
fn entry(index: u64) -> Entry {
    let mut e = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            requests: vec![Request {
                format: ENTRY_FORMAT_VERSION,
                client_id: "bench".to_string(),
                request_id: index,
                author: "bench".to_string(),
                time_ms: 1_700_000_000_000,
                message: String::new(),
                command: Command::CreateTenant {
                    tenant: "payments".to_string(),
                },
            }],
        }),
    };
    let size = bincode::serialized_size(&e).unwrap_or(0) as usize;
    if let EntryPayload::Normal(proposal) = &mut e.payload {
        for req in &mut proposal.requests {
            req.message = "m".repeat(ENTRY_BYTES.saturating_sub(size));
        }
    }
    e
}

fn fresh_dir(base: &Path, name: &str) -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix(name).tempdir_in(base)?)
}

/// Appends and waits until durable; returns how long that took.
fn durable_append(store: &mut LogStore, entries: Vec<Entry>) -> anyhow::Result<Duration> {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    store.append_with(entries, move |r| {
        let _ = tx.send(r);
    })?;
    rx.recv()??;
    Ok(start.elapsed())
}

fn log_store_single(base: &Path) -> anyhow::Result<Row> {
    let dir = fresh_dir(base, "log-single")?;
    let mut store = LogStore::open(dir.path())?;
    let mut index = 0;
    for _ in 0..50 {
        index += 1;
        durable_append(&mut store, vec![entry(index)])?;
    }
    let before = store.fsync_count();
    let start = Instant::now();
    let mut samples = Vec::with_capacity(SINGLE_OPS);
    for _ in 0..SINGLE_OPS {
        index += 1;
        samples.push(durable_append(&mut store, vec![entry(index)])?);
    }
    let mut row = Row::new(
        "(a) LogStore: append 1 entry, wait for fsync",
        samples,
        SINGLE_OPS,
        start.elapsed(),
    );
    row.fsyncs = Some(store.fsync_count() - before);
    Ok(row)
}

fn log_store_batches(base: &Path) -> anyhow::Result<Row> {
    let dir = fresh_dir(base, "log-batch")?;
    let mut store = LogStore::open(dir.path())?;
    let mut index = 0u64;
    let mut batch = || {
        let b: Vec<Entry> = (1..=BATCH as u64).map(|i| entry(index + i)).collect();
        index += BATCH as u64;
        b
    };
    for _ in 0..10 {
        durable_append(&mut store, batch())?;
    }
    let before = store.fsync_count();
    let start = Instant::now();
    let mut samples = Vec::with_capacity(BATCH_OPS);
    for _ in 0..BATCH_OPS {
        samples.push(durable_append(&mut store, batch())?);
    }
    let mut row = Row::new(
        "(b) LogStore: append 64 entries, wait for fsync",
        samples,
        BATCH_OPS * BATCH,
        start.elapsed(),
    );
    row.fsyncs = Some(store.fsync_count() - before);
    Ok(row)
}

/// sled made durable by hand: `flush()` then `fdatasync` of its `db` file.
struct DurableSled {
    db: sled::Db,
    file: File,
    _dir: tempfile::TempDir,
}

impl DurableSled {
    fn open(base: &Path, name: &str) -> anyhow::Result<DurableSled> {
        let dir = fresh_dir(base, name)?;
        let db = sled::Config::new().path(dir.path()).open()?;
        let file = File::open(dir.path().join("db")).context("sled's db file")?;
        Ok(DurableSled {
            db,
            file,
            _dir: dir,
        })
    }

    fn write(&self, entries: &[Entry]) -> anyhow::Result<Duration> {
        let start = Instant::now();
        for e in entries {
            self.db
                .insert(e.log_id.index.to_be_bytes(), bincode::serialize(e)?)?;
        }
        self.db.flush()?;
        self.file.sync_data()?;
        Ok(start.elapsed())
    }
}

fn sled_single(base: &Path) -> anyhow::Result<Row> {
    let sled = DurableSled::open(base, "sled-single")?;
    for i in 0..50 {
        sled.write(&[entry(i)])?;
    }
    let start = Instant::now();
    let mut samples = Vec::with_capacity(SINGLE_OPS);
    for i in 0..SINGLE_OPS as u64 {
        samples.push(sled.write(&[entry(1000 + i)])?);
    }
    Ok(Row::new(
        "(c) sled: insert 1 + flush() + fdatasync(db)",
        samples,
        SINGLE_OPS,
        start.elapsed(),
    ))
}

fn sled_batches(base: &Path) -> anyhow::Result<Row> {
    let sled = DurableSled::open(base, "sled-batch")?;
    let mut index = 0u64;
    let mut batch = || {
        let b: Vec<Entry> = (1..=BATCH as u64).map(|i| entry(index + i)).collect();
        index += BATCH as u64;
        b
    };
    for _ in 0..10 {
        sled.write(&batch())?;
    }
    let start = Instant::now();
    let mut samples = Vec::with_capacity(BATCH_OPS);
    for _ in 0..BATCH_OPS {
        samples.push(sled.write(&batch())?);
    }
    Ok(Row::new(
        "(d) sled: insert 64 + flush() + fdatasync(db)",
        samples,
        BATCH_OPS * BATCH,
        start.elapsed(),
    ))
}

/// Group commit at work: 1-entry appends, up to `IN_FLIGHT` not yet durable.
fn log_store_in_flight(base: &Path) -> anyhow::Result<Row> {
    let dir = fresh_dir(base, "log-inflight")?;
    let mut store = LogStore::open(dir.path())?;
    let (tx, rx) = mpsc::channel::<(Instant, std::io::Result<()>)>();
    let before = store.fsync_count();
    let start = Instant::now();
    let mut samples = Vec::with_capacity(IN_FLIGHT_OPS);
    let mut in_flight = 0;
    for index in 1..=IN_FLIGHT_OPS as u64 {
        if in_flight == IN_FLIGHT {
            let (submitted, r) = rx.recv()?;
            r?;
            samples.push(submitted.elapsed());
            in_flight -= 1;
        }
        let tx = tx.clone();
        let submitted = Instant::now();
        store.append_with(vec![entry(index)], move |r| {
            let _ = tx.send((submitted, r));
        })?;
        in_flight += 1;
    }
    for _ in 0..in_flight {
        let (submitted, r) = rx.recv()?;
        r?;
        samples.push(submitted.elapsed());
    }
    let mut row = Row::new(
        "(e) LogStore: 1-entry appends, 16 in flight",
        samples,
        IN_FLIGHT_OPS,
        start.elapsed(),
    );
    row.fsyncs = Some(store.fsync_count() - before);
    Ok(row)
}

/// The atomic small-file write (vote, committed, purge marker).
fn vote_saves(base: &Path) -> anyhow::Result<Row> {
    let dir = fresh_dir(base, "vote")?;
    let mut store = LogStore::open(dir.path())?;
    let start = Instant::now();
    let mut samples = Vec::with_capacity(VOTE_OPS);
    for term in 1..=VOTE_OPS as u64 {
        let t = Instant::now();
        futures::executor::block_on(store.save_vote(&Vote::new(term, 1)))?;
        samples.push(t.elapsed());
    }
    Ok(Row::new(
        "(f) save_vote/committed: tmp+fsync+rename+dir fsync",
        samples,
        0,
        start.elapsed(),
    ))
}

/// Baseline: the cost of the disk alone, without the log store's thread handoff.
fn raw_fdatasync(base: &Path) -> anyhow::Result<Row> {
    use std::os::unix::fs::FileExt;
    let dir = fresh_dir(base, "raw")?;
    let file = File::create(dir.path().join("raw.log"))?;
    let record = vec![0x5au8; ENTRY_BYTES + 8];
    let mut offset = 0u64;
    let mut write = || -> anyhow::Result<Duration> {
        let t = Instant::now();
        file.write_all_at(&record, offset)?;
        file.sync_data()?;
        offset += record.len() as u64;
        Ok(t.elapsed())
    };
    for _ in 0..50 {
        write()?;
    }
    let start = Instant::now();
    let mut samples = Vec::with_capacity(SINGLE_OPS);
    for _ in 0..SINGLE_OPS {
        samples.push(write()?);
    }
    Ok(Row::new(
        "(0) baseline: pwrite 264 B + fdatasync, same thread",
        samples,
        SINGLE_OPS,
        start.elapsed(),
    ))
}
