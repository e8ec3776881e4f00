//! Unit tests of the log store: durability callbacks, recovery, truncate,
//! purge, rolling, group commit.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

use super::segment::{self, RECORD_HEADER_LEN};
use super::{LogStore, LogStoreOptions};
use crate::command::{Command, Proposal, Request, ENTRY_FORMAT_VERSION};
use crate::types::{Entry, LogId, Vote};

const DEADLINE: Duration = Duration::from_secs(10);

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// A normal entry carrying a request whose size varies with `index`.
fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Proposal {
            requests: vec![Request {
                format: ENTRY_FORMAT_VERSION,
                client_id: "client-1".to_string(),
                request_id: index,
                author: "tester".to_string(),
                time_ms: 1_700_000_000_000 + index as i64,
                message: "x".repeat((index % 17) as usize * 10),
                command: Command::CreateTenant {
                    tenant: format!("tenant-{index}"),
                },
            }],
        }),
    }
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(|i| entry(term, i)).collect()
}

fn small_segments() -> LogStoreOptions {
    LogStoreOptions {
        segment_bytes: 1024,
        ..LogStoreOptions::default()
    }
}

/// Appends and waits until the entries are durable.
fn append(store: &mut LogStore, batch: Vec<Entry>) {
    let (tx, rx) = mpsc::channel();
    store
        .append_with(batch, move |r| {
            let _ = tx.send(r);
        })
        .expect("append");
    rx.recv_timeout(DEADLINE)
        .expect("append completed in time")
        .expect("append durable");
}

fn read_all(store: &LogStore) -> Vec<Entry> {
    store
        .shared
        .read_entries(0, u64::MAX, None)
        .expect("read entries")
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|d| d.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(segment::parse_file_name)
                .is_some()
        })
        .collect();
    files.sort();
    files
}

fn state(store: &LogStore) -> (Option<LogId>, Option<LogId>) {
    store.shared.log_state()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

#[test]
fn log_store_append_read_back_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = LogStore::open(dir.path()).expect("open");
        assert_eq!(state(&store), (None, None));
        append(&mut store, entries(1, 1..=1));
        append(&mut store, entries(1, 2..=50));
        append(&mut store, entries(2, 51..=100));
        let got = read_all(&store);
        assert_eq!(
            got,
            entries(1, 1..=50)
                .into_iter()
                .chain(entries(2, 51..=100))
                .collect::<Vec<_>>()
        );
        let part = block_on(store.try_get_log_entries(10..20)).expect("range");
        assert_eq!(indexes(&part), (10..20).collect::<Vec<_>>());
        let part = block_on(store.try_get_log_entries(95..=200)).expect("range");
        assert_eq!(indexes(&part), (95..=100).collect::<Vec<_>>());
        assert_eq!(state(&store), (None, Some(log_id(2, 100))));
    }
    let mut store = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(state(&store), (None, Some(log_id(2, 100))));
    assert_eq!(indexes(&read_all(&store)), (1..=100).collect::<Vec<_>>());
    assert_eq!(read_all(&store)[41], entry(1, 42));
    append(&mut store, entries(3, 101..=101));
    let mut reader = block_on(store.get_log_reader());
    let last = block_on(reader.try_get_log_entries(101..)).expect("read");
    assert_eq!(last, vec![entry(3, 101)]);
}

#[test]
fn log_store_first_append_may_start_anywhere_then_must_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).expect("open");
    append(&mut store, entries(1, 5..=7));
    assert!(store.append_with(entries(1, 9..=9), |_| {}).is_err());
    assert!(store.append_with(entries(1, 7..=7), |_| {}).is_err());
    append(&mut store, entries(1, 8..=8));
    drop(store);
    let store = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(indexes(&read_all(&store)), vec![5, 6, 7, 8]);
}

/// Appends 1..=10 one by one, closes, returns the only segment's path.
fn ten_single_appends(dir: &Path) -> PathBuf {
    let mut store = LogStore::open(dir).expect("open");
    for i in 1..=10 {
        append(&mut store, vec![entry(1, i)]);
    }
    drop(store);
    let files = segment_files(dir);
    assert_eq!(files.len(), 1);
    files[0].clone()
}

/// Offset of the record holding the `n`-th entry (1-based) of a segment.
fn record_offset(path: &Path, n: usize) -> u64 {
    segment::record_offsets(path)[n - 1]
}

/// The tenth record was torn at `torn_at`: the log opens with nine, the tenth
/// and everything after it reads as zeros (cut, or the reserve), and appends
/// go on from there and survive a reopen.
fn check_torn_tail_recovered(dir: &Path, seg: &Path, torn_at: u64) {
    let mut store = LogStore::open(dir).expect("open after torn write");
    assert_eq!(indexes(&read_all(&store)), (1..=9).collect::<Vec<_>>());
    assert_eq!(state(&store), (None, Some(log_id(1, 9))));
    let buf = fs::read(seg).expect("read");
    assert!(
        buf[torn_at as usize..].iter().all(|&b| b == 0),
        "nothing of the torn record is left"
    );
    append(&mut store, vec![entry(2, 10)]);
    append(&mut store, vec![entry(2, 11)]);
    drop(store);
    let store = LogStore::open(dir).expect("reopen");
    let got = read_all(&store);
    assert_eq!(indexes(&got), (1..=11).collect::<Vec<_>>());
    assert_eq!(got[9], entry(2, 10));
}

/// Appends entries `1..=n` one at a time to a log of small segments; returns
/// its segment files (three or more).
fn single_appends_in_small_segments(dir: &Path, n: u64) -> Vec<PathBuf> {
    {
        let mut store = LogStore::open_with(dir, small_segments()).expect("open");
        for i in 1..=n {
            append(&mut store, vec![entry(1, i)]);
        }
    }
    let files = segment_files(dir);
    assert!(files.len() >= 3, "{files:?}");
    files
}

/// Cuts `seg` at `len` (as a file written without a reserve would end).
fn cut(seg: &Path, len: u64) {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(seg)
        .expect("open seg");
    file.set_len(len).expect("cut");
}

#[test]
fn log_store_torn_tail_short_payload_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = ten_single_appends(dir.path());
    let torn_at = record_offset(&seg, 10);
    // The end of the record never reached the disk: the reserve's zeros.
    let mut buf = fs::read(&seg).expect("read");
    let end = segment::records_end(&seg) as usize;
    buf[end - 5..end].fill(0);
    fs::write(&seg, &buf).expect("write");
    check_torn_tail_recovered(dir.path(), &seg, torn_at);
}

#[test]
fn log_store_torn_tail_short_payload_at_the_end_of_the_file_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = ten_single_appends(dir.path());
    let torn_at = record_offset(&seg, 10);
    cut(&seg, segment::records_end(&seg) - 5);
    check_torn_tail_recovered(dir.path(), &seg, torn_at);
}

#[test]
fn log_store_torn_tail_short_header_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = ten_single_appends(dir.path());
    let torn_at = record_offset(&seg, 10);
    cut(&seg, torn_at + 3);
    check_torn_tail_recovered(dir.path(), &seg, torn_at);
}

#[test]
fn log_store_torn_tail_crc_mismatch_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = ten_single_appends(dir.path());
    let torn_at = record_offset(&seg, 10);
    let mut buf = fs::read(&seg).expect("read");
    let last = segment::records_end(&seg) as usize - 1;
    buf[last] ^= 0xff;
    fs::write(&seg, &buf).expect("write");
    check_torn_tail_recovered(dir.path(), &seg, torn_at);
}

#[test]
fn log_store_torn_tail_zeroes_are_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = ten_single_appends(dir.path());
    let mut buf = fs::read(&seg).expect("read");
    // The last record never reached the disk: the file was extended with zeroes.
    let at = record_offset(&seg, 10);
    buf[at as usize..].fill(0);
    buf.extend_from_slice(&[0u8; 4096]);
    fs::write(&seg, &buf).expect("write");
    check_torn_tail_recovered(dir.path(), &seg, at);
}

#[test]
fn log_store_appends_land_in_a_reserve_that_reopening_keeps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = ten_single_appends(dir.path());
    let len = fs::metadata(&seg).expect("meta").len();
    assert_eq!(
        len,
        record_offset(&seg, 2) + segment::RESERVE_BYTES,
        "the first append reserved room past itself, the next nine landed in it"
    );
    let mut store = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(indexes(&read_all(&store)), (1..=10).collect::<Vec<_>>());
    assert_eq!(fs::metadata(&seg).expect("meta").len(), len, "not cut");
    append(&mut store, vec![entry(1, 11)]);
    assert_eq!(fs::metadata(&seg).expect("meta").len(), len);
    drop(store);
    let store = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(indexes(&read_all(&store)), (1..=11).collect::<Vec<_>>());
}

#[test]
fn log_store_sealed_segments_are_cut_to_their_records() {
    // The roll cuts the reserve off (durably, before the next segment
    // exists), so zeros after a sealed segment's records are not an end
    // there: records that were fsynced have gone.
    let dir = tempfile::tempdir().expect("tempdir");
    let files = single_appends_in_small_segments(dir.path(), 60);
    let sealed = &files[0];
    let len = fs::metadata(sealed).expect("meta").len();
    assert_eq!(len, segment::records_end(sealed), "cut at the roll");
    let last_record = record_offset(sealed, 2);
    cut(sealed, last_record);
    cut(sealed, len);
    let err = LogStore::open_with(dir.path(), small_segments())
        .err()
        .expect("must refuse to open");
    assert!(err.to_string().contains("fsynced"), "{err}");
}

#[test]
fn log_store_corruption_in_the_middle_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = ten_single_appends(dir.path());
    let mut buf = fs::read(&seg).expect("read");
    let at = record_offset(&seg, 5) as usize + RECORD_HEADER_LEN as usize + 3;
    buf[at] ^= 0x55;
    fs::write(&seg, &buf).expect("write");
    let err = LogStore::open(dir.path())
        .err()
        .expect("must refuse to open");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let msg = err.to_string();
    assert!(
        msg.contains("crc mismatch") && msg.contains("corruption"),
        "{msg}"
    );
    // Nothing was cut.
    assert_eq!(fs::read(&seg).expect("read").len(), buf.len());
}

#[test]
fn log_store_bad_length_in_the_middle_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = ten_single_appends(dir.path());
    let mut buf = fs::read(&seg).expect("read");
    let at = record_offset(&seg, 3) as usize;
    buf[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&seg, &buf).expect("write");
    let err = LogStore::open(dir.path())
        .err()
        .expect("must refuse to open");
    assert!(err.to_string().contains("bad record length"), "{err}");
}

#[test]
fn log_store_corruption_in_a_sealed_segment_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = single_appends_in_small_segments(dir.path(), 40);
    // Chop the tail of the first (sealed) segment: not a torn write there.
    let len = fs::metadata(&files[0]).expect("meta").len();
    cut(&files[0], len - 2);
    let err = LogStore::open(dir.path())
        .err()
        .expect("must refuse to open");
    assert!(err.to_string().contains("fsynced"), "{err}");
}

#[test]
fn log_store_missing_middle_segment_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = LogStore::open_with(dir.path(), small_segments()).expect("open");
        append(&mut store, entries(1, 1..=40));
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    fs::remove_file(&files[1]).expect("remove");
    let err = LogStore::open(dir.path())
        .err()
        .expect("must refuse to open");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn log_store_torn_segment_creation_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seg = ten_single_appends(dir.path());
    // The roll cut the segment to its records, then a crash while creating
    // the next segment left a partial header.
    cut(&seg, segment::records_end(&seg));
    fs::write(dir.path().join(segment::file_name(11)), b"RCON").expect("write");
    fs::write(dir.path().join("vote.tmp"), b"partial").expect("write");
    let mut store = LogStore::open(dir.path()).expect("open");
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(!dir.path().join("vote.tmp").exists());
    assert_eq!(indexes(&read_all(&store)), (1..=10).collect::<Vec<_>>());
    append(&mut store, vec![entry(1, 11)]);
}

#[test]
fn log_store_segments_roll_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = LogStore::open_with(dir.path(), small_segments()).expect("open");
        append(&mut store, entries(1, 1..=30));
        for i in 31..=200 {
            append(&mut store, vec![entry(1, i)]);
        }
        assert_eq!(indexes(&read_all(&store)), (1..=200).collect::<Vec<_>>());
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 10, "{} segments", files.len());
    let max_record = 1024; // the entries here are far smaller
    let (active, sealed) = files.split_last().expect("segments");
    for f in sealed {
        assert!(fs::metadata(f).expect("meta").len() < 1024 + max_record);
    }
    assert!(segment::records_end(active) < 1024 + max_record);
    let store = LogStore::open_with(dir.path(), small_segments()).expect("reopen");
    assert_eq!(read_all(&store), entries(1, 1..=200));
}

#[test]
fn log_store_truncate_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = LogStore::open_with(dir.path(), small_segments()).expect("open");
        append(&mut store, entries(1, 1..=60));
        let before = segment_files(dir.path()).len();
        store.truncate_from(log_id(1, 8)).expect("truncate");
        assert!(segment_files(dir.path()).len() < before);
        assert_eq!(state(&store), (None, Some(log_id(1, 7))));
        assert_eq!(indexes(&read_all(&store)), (1..=7).collect::<Vec<_>>());
        // Truncating past the end changes nothing.
        store.truncate_from(log_id(1, 100)).expect("truncate");
        assert_eq!(state(&store), (None, Some(log_id(1, 7))));
    }
    let mut store = LogStore::open_with(dir.path(), small_segments()).expect("reopen");
    assert_eq!(state(&store), (None, Some(log_id(1, 7))));
    append(&mut store, entries(2, 8..=70));
    store.truncate_from(log_id(2, 65)).expect("truncate");
    drop(store);
    let mut store = LogStore::open_with(dir.path(), small_segments()).expect("reopen");
    let got = read_all(&store);
    assert_eq!(indexes(&got), (1..=64).collect::<Vec<_>>());
    assert_eq!(got[7], entry(2, 8));
    store.truncate_from(log_id(1, 1)).expect("truncate all");
    assert_eq!(state(&store), (None, None));
    assert!(segment_files(dir.path()).is_empty());
    append(&mut store, entries(3, 1..=2));
    drop(store);
    let store = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(read_all(&store), entries(3, 1..=2));
}

#[test]
fn log_store_purge_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = LogStore::open_with(dir.path(), small_segments()).expect("open");
        append(&mut store, entries(1, 1..=60));
        let before = segment_files(dir.path()).len();
        store.purge_upto(log_id(1, 30)).expect("purge");
        assert!(segment_files(dir.path()).len() < before);
        assert_eq!(state(&store), (Some(log_id(1, 30)), Some(log_id(1, 60))));
        assert_eq!(indexes(&read_all(&store)), (31..=60).collect::<Vec<_>>());
        // Purging less than before changes nothing.
        store.purge_upto(log_id(1, 10)).expect("purge");
        assert_eq!(state(&store), (Some(log_id(1, 30)), Some(log_id(1, 60))));
    }
    let mut store = LogStore::open_with(dir.path(), small_segments()).expect("reopen");
    assert_eq!(state(&store), (Some(log_id(1, 30)), Some(log_id(1, 60))));
    assert_eq!(read_all(&store), entries(1, 31..=60));
    append(&mut store, entries(1, 61..=61));
    assert_eq!(indexes(&read_all(&store)), (31..=61).collect::<Vec<_>>());
}

#[test]
fn log_store_purge_past_the_end_then_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = LogStore::open(dir.path()).expect("open");
        append(&mut store, entries(1, 1..=10));
        store.purge_upto(log_id(2, 20)).expect("purge");
        assert_eq!(state(&store), (Some(log_id(2, 20)), Some(log_id(2, 20))));
        assert!(read_all(&store).is_empty());
        // Entries at or below the purge point are already purged: ignored.
        append(&mut store, entries(1, 11..=11));
        assert_eq!(state(&store), (Some(log_id(2, 20)), Some(log_id(2, 20))));
        // The log continues right after the purge point.
        assert!(store.append_with(entries(2, 22..=22), |_| {}).is_err());
        append(&mut store, entries(2, 21..=22));
        // The segment holding only purged entries is gone.
        assert_eq!(segment_files(dir.path()).len(), 1);
    }
    let store = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(state(&store), (Some(log_id(2, 20)), Some(log_id(2, 22))));
    assert_eq!(read_all(&store), entries(2, 21..=22));
}

#[test]
fn log_store_purged_state_without_entries_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = LogStore::open(dir.path()).expect("open");
        append(&mut store, entries(1, 1..=3));
        store.purge_upto(log_id(1, 3)).expect("purge");
    }
    let mut store = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(state(&store), (Some(log_id(1, 3)), Some(log_id(1, 3))));
    assert!(read_all(&store).is_empty());
    append(&mut store, entries(1, 4..=4));
    assert_eq!(state(&store), (Some(log_id(1, 3)), Some(log_id(1, 4))));
}

#[test]
fn log_store_group_commit_shares_one_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).expect("open");
    append(&mut store, entries(1, 1..=1));
    let fsyncs_before = store.fsync_count();

    store.syncer().set_paused(true);
    let done = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for i in 2..=101 {
        let done = Arc::clone(&done);
        let tx = tx.clone();
        store
            .append_with(vec![entry(1, i)], move |r| {
                r.expect("durable");
                done.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(());
            })
            .expect("append");
    }
    // Appended entries are readable before they are durable...
    assert_eq!(indexes(&read_all(&store)), (1..=101).collect::<Vec<_>>());
    // ...but none is reported durable while no fsync ran.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(done.load(Ordering::SeqCst), 0);

    store.syncer().set_paused(false);
    for _ in 2..=101 {
        rx.recv_timeout(DEADLINE).expect("completion in time");
    }
    assert_eq!(done.load(Ordering::SeqCst), 100);
    assert_eq!(
        store.fsync_count() - fsyncs_before,
        1,
        "100 appends, one fsync"
    );
}

#[test]
fn log_store_quick_appends_share_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).expect("open");
    let (tx, rx) = mpsc::channel();
    let appends = 1000;
    for i in 1..=appends {
        let tx = tx.clone();
        store
            .append_with(vec![entry(1, i)], move |r| {
                let _ = tx.send(r);
            })
            .expect("append");
    }
    for _ in 1..=appends {
        rx.recv_timeout(DEADLINE)
            .expect("completion in time")
            .expect("durable");
    }
    let fsyncs = store.fsync_count();
    assert!(
        fsyncs >= 1 && fsyncs < appends,
        "{fsyncs} fsyncs for {appends} appends"
    );
}

#[test]
fn log_store_truncate_waits_for_pending_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).expect("open");
    append(&mut store, entries(1, 1..=2));
    let reader = store.reader();
    reader.shared.syncer.set_paused(true);

    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = Arc::clone(&events);
    store
        .append_with(entries(1, 3..=5), move |r| {
            r.expect("durable");
            ev.lock().expect("lock").push("append durable");
        })
        .expect("append");
    let ev = Arc::clone(&events);
    let truncating = std::thread::spawn(move || {
        store.truncate_from(log_id(1, 4)).expect("truncate");
        ev.lock().expect("lock").push("truncated");
        store
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(events.lock().expect("lock").is_empty(), "truncate waited");
    reader.shared.syncer.set_paused(false);
    let store = truncating.join().expect("truncate thread");
    assert_eq!(
        *events.lock().expect("lock"),
        vec!["append durable", "truncated"]
    );
    assert_eq!(indexes(&read_all(&store)), vec![1, 2, 3]);
}

#[test]
fn log_store_limited_reads_respect_the_byte_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = LogStoreOptions {
        max_read_bytes: 1000,
        cache_entries: 10,
        ..LogStoreOptions::default()
    };
    let mut store = LogStore::open_with(dir.path(), options).expect("open");
    append(&mut store, entries(1, 1..=100));
    // From disk (older than the cache): the budget cuts the range short.
    let got = block_on(store.limited_get_log_entries(1, 101)).expect("read");
    assert!(got.len() > 1 && got.len() < 100, "{} entries", got.len());
    assert_eq!(got, entries(1, 1..=got.len() as u64));
    let bytes: usize = got
        .iter()
        .map(|e| bincode::serialize(e).expect("ser").len())
        .sum();
    assert!(bytes <= 1000, "{bytes} bytes");
    // From the cache (the 10 newest): the same budget applies.
    let got = block_on(store.limited_get_log_entries(91, 101)).expect("read");
    assert!(got.len() > 1 && got.len() < 10, "{} entries", got.len());
    assert_eq!(got, entries(1, 91..=90 + got.len() as u64));
    // Unlimited reads are not cut.
    let all = block_on(store.try_get_log_entries(1..101)).expect("read");
    assert_eq!(all.len(), 100);
    // One entry larger than the budget is still returned.
    let tiny = LogStoreOptions {
        max_read_bytes: 1,
        ..LogStoreOptions::default()
    };
    drop(store);
    let mut store = LogStore::open_with(dir.path(), tiny).expect("reopen");
    let got = block_on(store.limited_get_log_entries(1, 101)).expect("read");
    assert_eq!(indexes(&got), vec![1]);
}

#[test]
fn log_store_cache_stays_bounded_and_reads_match_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = LogStoreOptions {
        cache_entries: 8,
        cache_bytes: 2000,
        segment_bytes: 4096,
        ..LogStoreOptions::default()
    };
    let mut store = LogStore::open_with(dir.path(), options).expect("open");
    for i in 1..=100 {
        append(&mut store, vec![entry(1, i)]);
    }
    {
        let st = store.shared.read();
        let first = st.cache.first_index().expect("cache has entries");
        assert!(first > 100 - 8, "cache starts at {first}");
    }
    assert_eq!(read_all(&store), entries(1, 1..=100));
    store.truncate_from(log_id(1, 97)).expect("truncate");
    store.purge_upto(log_id(1, 50)).expect("purge");
    assert_eq!(read_all(&store), entries(1, 51..=96));
}

#[tokio::test]
async fn log_store_vote_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = LogStore::open(dir.path()).expect("open");
        assert_eq!(store.read_vote().await.expect("read vote"), None);
        store.save_vote(&Vote::new(3, 2)).await.expect("save vote");
        store.save_vote(&Vote::new(4, 1)).await.expect("save vote");
    }
    let mut store = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(
        store.read_vote().await.expect("read vote"),
        Some(Vote::new(4, 1))
    );
    // A damaged vote file is an error, not "no vote".
    let path = dir.path().join(super::VOTE_FILE);
    let mut buf = fs::read(&path).expect("read");
    let last = buf.len() - 1;
    buf[last] ^= 1;
    fs::write(&path, &buf).expect("write");
    assert!(store.read_vote().await.is_err());
}

#[test]
fn log_store_record_payload_starts_with_the_log_id() {
    // Open decodes only the log id at the head of each payload.
    let e = entry(7, 42);
    let bytes = bincode::serialize(&e).expect("ser");
    let id: LogId = bincode::deserialize(&bytes).expect("prefix");
    assert_eq!(id, e.log_id);
}

#[test]
fn log_store_save_vote_waits_for_pending_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).expect("open");
    let reader = store.reader();
    reader.shared.syncer.set_paused(true);

    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = Arc::clone(&events);
    store
        .append_with(entries(1, 1..=3), move |r| {
            r.expect("durable");
            ev.lock().expect("lock").push("append durable");
        })
        .expect("append");
    let ev = Arc::clone(&events);
    let saving = std::thread::spawn(move || {
        block_on(store.save_vote(&Vote::new(2, 1))).expect("save vote");
        ev.lock().expect("lock").push("vote saved");
        store
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(events.lock().expect("lock").is_empty(), "save_vote waited");
    reader.shared.syncer.set_paused(false);
    let mut store = saving.join().expect("saving thread");
    assert_eq!(
        *events.lock().expect("lock"),
        vec!["append durable", "vote saved"]
    );
    assert_eq!(
        block_on(store.read_vote()).expect("read"),
        Some(Vote::new(2, 1))
    );
}

/// Regression (model test, seed 1795326708528279531): a fresh log whose
/// first entry is 3, purged up to 0. `purge` accepted it, then `open` refused
/// the log ("purged up to 0 but the first segment starts at 3: entries are
/// missing"), the check that catches a lost segment. Now `purge` refuses a
/// purge that would leave such a hole, so the API cannot build a log that
/// open rejects.
#[test]
fn log_store_regression_purge_below_the_start_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = LogStore::open(dir.path()).expect("open");
    append(&mut store, entries(1, 3..=5));
    assert!(store.purge_upto(log_id(1, 0)).is_err());
    assert_eq!(state(&store), (None, Some(log_id(1, 5))));
    store
        .purge_upto(log_id(1, 2))
        .expect("purge up to just below the start");
    drop(store);
    let store = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(state(&store), (Some(log_id(1, 2)), Some(log_id(1, 5))));
    assert_eq!(read_all(&store), entries(1, 3..=5));
}
