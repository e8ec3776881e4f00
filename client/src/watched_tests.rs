//! Tests of the `Watched<T>` processing path with a scripted event source:
//! what is taken, what is refused, what is reported to the server.

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use validator::Validate;

use super::*;
use crate::types::{ChangeKind, NamespaceEntry};
use crate::watch::Change;

const PATH: &str = "pay/prod/checkout";

#[derive(Debug, Deserialize, Validate, PartialEq)]
struct Config {
    #[validate(length(min = 1))]
    greeting: String,
    #[validate(range(min = 1, max = 64))]
    workers: u32,
}

/// Events pushed by the test; acks and refusals recorded.
struct FakeSource {
    events: mpsc::UnboundedReceiver<Result<WatchEvent>>,
    log: Arc<Mutex<Vec<String>>>,
    dropped: Arc<AtomicBool>,
}

impl EventSource for FakeSource {
    fn next_event(&mut self) -> impl Future<Output = Option<Result<WatchEvent>>> + Send {
        self.events.recv()
    }
    fn ack(&mut self, revision: u64) {
        self.log
            .lock()
            .expect("log")
            .push(format!("ack {revision}"));
    }
    fn refuse(&mut self, revision: u64, path: &str, reasons: Vec<String>) {
        self.log
            .lock()
            .expect("log")
            .push(format!("refuse {revision} {path}: {}", reasons.join(" | ")));
    }
    fn last_error(&self) -> Option<String> {
        Some("127.0.0.1:1: connection refused".into())
    }
}

impl Drop for FakeSource {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

struct Harness {
    events: mpsc::UnboundedSender<Result<WatchEvent>>,
    log: Arc<Mutex<Vec<String>>>,
    dropped: Arc<AtomicBool>,
    changes: Arc<Mutex<Vec<(u32, u32, u64)>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Harness {
    fn send(&self, event: WatchEvent) {
        self.events.send(Ok(event)).expect("source alive");
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

fn snapshot(revision: u64, docs: &[(&str, u64, Value)]) -> WatchEvent {
    WatchEvent::Snapshot {
        revision,
        entries: docs
            .iter()
            .map(|(path, mod_revision, value)| NamespaceEntry {
                path: path.to_string(),
                version: 1,
                mod_revision: *mod_revision,
                value: Some(value.clone()),
            })
            .collect(),
        reason: "start".into(),
    }
}

fn put(revision: u64, path: &str, value: Value) -> WatchEvent {
    WatchEvent::Change {
        revision,
        changes: vec![Change {
            kind: ChangeKind::Put,
            path: path.into(),
            version: revision,
            value: Some(value),
        }],
        author: "ops".into(),
        time_ms: 0,
        message: String::new(),
    }
}

fn delete(revision: u64, path: &str) -> WatchEvent {
    WatchEvent::Change {
        revision,
        changes: vec![Change {
            kind: ChangeKind::Delete,
            path: path.into(),
            version: revision,
            value: None,
        }],
        author: "ops".into(),
        time_ms: 0,
        message: String::new(),
    }
}

fn good(greeting: &str, workers: u32) -> Value {
    json!({"greeting": greeting, "workers": workers})
}

/// A `Watched<Config>` with `.validate()` and recording hooks, fed by a fake source.
async fn start(first: Vec<WatchEvent>, timeout: Duration) -> (Harness, Result<Watched<Config>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let harness = Harness {
        events: tx,
        log: Arc::default(),
        dropped: Arc::default(),
        changes: Arc::default(),
        errors: Arc::default(),
    };
    for event in first {
        harness.send(event);
    }
    let source = FakeSource {
        events: rx,
        log: harness.log.clone(),
        dropped: harness.dropped.clone(),
    };
    let changes = harness.changes.clone();
    let errors = harness.errors.clone();
    let client = Client::connect(["127.0.0.1:1"])
        .await
        .expect("valid endpoint");
    let builder = client
        .watched::<Config>(PATH)
        .validate()
        .validate_with(|c: &Config| {
            if c.greeting == "forbidden" {
                Err("greeting: must not be \"forbidden\"".into())
            } else {
                Ok(())
            }
        })
        .on_change(move |old, new, revision| {
            changes
                .lock()
                .expect("changes")
                .push((old.workers, new.workers, revision))
        })
        .on_error(move |err| errors.lock().expect("errors").push(err.to_string()));
    let watched = start_with(
        Shape::One(PATH.into()),
        source,
        builder.hooks,
        timeout,
        Arc::default(),
    )
    .await;
    (harness, watched)
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn starts_from_the_snapshot_and_takes_later_puts() {
    let other = ("pay/prod/other", 2, json!({"x": 1}));
    let (h, watched) = start(
        vec![
            WatchEvent::Progress { revision: 3 },
            snapshot(5, &[other, (PATH, 4, good("hi", 2))]),
        ],
        SECOND,
    )
    .await;
    let watched = watched.expect("first value");
    assert_eq!(
        *watched.load(),
        Config {
            greeting: "hi".into(),
            workers: 2
        }
    );
    assert_eq!(watched.revision(), 4, "the revision that wrote the value");
    assert_eq!(watched.processed_revision(), 5);
    assert_eq!(h.log(), ["ack 5"]);

    h.send(put(6, PATH, good("hello", 3)));
    assert!(watched.wait_for_revision(6, SECOND).await);
    assert_eq!(watched.load().workers, 3);
    assert_eq!(watched.revision(), 6);
    assert_eq!(*h.changes.lock().expect("changes"), [(2, 3, 6)]);
    assert_eq!(watched.errors(), 0);
    assert_eq!(h.log(), ["ack 5", "ack 6"]);
}

#[tokio::test]
async fn unrelated_revisions_count_as_processed() {
    let (h, watched) = start(vec![snapshot(5, &[(PATH, 4, good("hi", 2))])], SECOND).await;
    let watched = watched.expect("first value");
    h.send(put(7, "pay/prod/other", json!({})));
    h.send(WatchEvent::Progress { revision: 9 });
    assert!(watched.wait_for_revision(9, SECOND).await);
    assert_eq!(watched.revision(), 4);
    assert!(h.changes.lock().expect("changes").is_empty());
    assert!(
        !watched
            .wait_for_revision(10, Duration::from_millis(50))
            .await
    );
    // The same document again (a later snapshot) is not a change.
    h.send(snapshot(12, &[(PATH, 4, good("hi", 2))]));
    assert!(watched.wait_for_revision(12, SECOND).await);
    assert!(h.changes.lock().expect("changes").is_empty());
    assert_eq!(h.log(), ["ack 5", "ack 7", "ack 9", "ack 12"]);
}

/// A schema set or deleted for the watched namespace arrives as a change of
/// its path whose value is the schema: it is not a document, so the value
/// stays and nothing is refused.
#[tokio::test]
async fn schema_changes_are_not_documents() {
    let (h, watched) = start(vec![snapshot(5, &[(PATH, 4, good("hi", 2))])], SECOND).await;
    let watched = watched.expect("first value");
    for (revision, kind, value) in [
        (6, ChangeKind::SchemaSet, Some(json!({"type": "object"}))),
        (7, ChangeKind::SchemaDelete, None),
    ] {
        h.send(WatchEvent::Change {
            revision,
            changes: vec![Change {
                kind,
                path: PATH.into(),
                version: 1,
                value,
            }],
            author: "ops".into(),
            time_ms: 0,
            message: String::new(),
        });
    }
    assert!(watched.wait_for_revision(7, SECOND).await);
    assert_eq!(watched.revision(), 4);
    assert_eq!(watched.errors(), 0);
    assert!(h.changes.lock().expect("changes").is_empty());
    assert_eq!(h.log(), ["ack 5", "ack 6", "ack 7"]);
}

#[tokio::test]
async fn bad_documents_are_refused_and_the_old_value_stays() {
    let (h, watched) = start(vec![snapshot(5, &[(PATH, 4, good("hi", 2))])], SECOND).await;
    let watched = watched.expect("first value");

    // Does not deserialize.
    h.send(put(6, PATH, json!({"greeting": "hi"})));
    // Fails the derived rules (two fields).
    h.send(put(7, PATH, good("", 0)));
    // Fails the custom hook.
    h.send(put(8, PATH, good("forbidden", 2)));
    // A delete.
    h.send(delete(9, PATH));
    assert!(watched.wait_for_revision(9, SECOND).await);

    assert_eq!(watched.load().greeting, "hi");
    assert_eq!(watched.revision(), 4);
    assert_eq!(watched.errors(), 4);
    assert!(h.changes.lock().expect("changes").is_empty());
    let log = h.log();
    assert_eq!(log[0], "ack 5");
    assert!(
        log[1].starts_with(
            "refuse 6 pay/prod/checkout: does not deserialize: missing field `workers`"
        ),
        "{log:?}"
    );
    assert!(
        log[2].starts_with("refuse 7 pay/prod/checkout: greeting: length"),
        "{log:?}"
    );
    assert!(
        log[2].contains(" | workers: range (max=64, min=1, value=0)"),
        "{log:?}"
    );
    assert!(log[3].contains("must not be \"forbidden\""), "{log:?}");
    assert_eq!(
        log[4],
        "refuse 9 pay/prod/checkout: namespace pay/prod/checkout was deleted"
    );
    let errors = h.errors.lock().expect("errors").clone();
    assert_eq!(errors.len(), 4);
    assert!(
        errors[1].contains("at revision 7 failed validation"),
        "{errors:?}"
    );
    assert!(
        errors[3].contains("was deleted at revision 9"),
        "{errors:?}"
    );

    // A good document afterwards is taken again.
    h.send(put(10, PATH, good("back", 5)));
    assert!(watched.wait_for_revision(10, SECOND).await);
    assert_eq!(watched.load().workers, 5);
    assert_eq!(*h.changes.lock().expect("changes"), [(2, 5, 10)]);
}

#[tokio::test]
async fn start_fails_when_the_namespace_is_missing_or_refused() {
    let (_h, missing) = start(
        vec![snapshot(5, &[("pay/prod/other", 1, json!({}))])],
        SECOND,
    )
    .await;
    match missing {
        Err(Error::NotFound(message)) => assert!(message.contains("revision 5"), "{message}"),
        other => panic!("expected NotFound, got {other:?}"),
    }

    let (h, refused) = start(vec![snapshot(5, &[(PATH, 4, good("hi", 99))])], SECOND).await;
    match refused {
        Err(Error::Validation {
            revision, reasons, ..
        }) => {
            assert_eq!(revision, 4);
            assert_eq!(reasons.len(), 1, "{reasons:?}");
        }
        other => panic!("expected Validation, got {other:?}"),
    }
    assert!(
        h.log()[0].starts_with("refuse 4 "),
        "the document's revision: {:?}",
        h.log()
    );
}

#[tokio::test]
async fn start_times_out_naming_the_last_error() {
    let (_h, watched) = start(vec![], Duration::from_millis(50)).await;
    match watched {
        Err(Error::Timeout(message)) => {
            assert!(message.contains(PATH), "{message}");
            assert!(message.contains("connection refused"), "{message}");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stream_error_is_reported_and_dropping_stops_the_task() {
    let (h, watched) = start(vec![snapshot(5, &[(PATH, 4, good("hi", 2))])], SECOND).await;
    let watched = watched.expect("first value");
    let clone = watched.clone();
    h.events
        .send(Err(Error::NotFound("environment deleted".into())))
        .expect("source alive");
    for _ in 0..100 {
        if watched.errors() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(watched.errors(), 1);
    assert!(watched.is_running(), "an error alone does not end the task");
    drop(watched);
    assert!(!h.dropped.load(Ordering::SeqCst), "a clone still holds it");
    drop(clone);
    for _ in 0..100 {
        if h.dropped.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        h.dropped.load(Ordering::SeqCst),
        "the task and its source are gone"
    );
}

#[test]
fn validation_reasons_name_nested_fields() {
    #[derive(Validate)]
    struct Inner {
        #[validate(range(min = 1))]
        port: u16,
    }
    #[derive(Validate)]
    struct Outer {
        #[validate(nested)]
        inner: Inner,
        #[validate(nested)]
        items: Vec<Inner>,
        #[validate(length(min = 2, message = "too short"))]
        name: String,
    }
    let outer = Outer {
        inner: Inner { port: 0 },
        items: vec![Inner { port: 1 }, Inner { port: 0 }],
        name: "x".into(),
    };
    let reasons = validation_reasons(&outer.validate().expect_err("invalid"));
    assert_eq!(
        reasons,
        [
            "inner.port: range (min=1, value=0)",
            "items[1].port: range (min=1, value=0)",
            "name: too short (min=2, value=\"x\")",
        ]
    );
}

/// A document that says which revision wrote it, three times over: a value
/// mixed from two revisions would not agree with itself.
#[derive(Debug, Deserialize)]
struct Stamped {
    rev: u64,
    copy: u64,
    pad: Vec<u64>,
}

impl Stamped {
    fn json(rev: u64) -> Value {
        json!({"rev": rev, "copy": rev, "pad": vec![rev; 16]})
    }

    fn whole(&self) -> bool {
        self.copy == self.rev && self.pad.iter().all(|p| *p == self.rev)
    }
}

#[derive(Debug, Deserialize)]
struct Pair {
    a: Stamped,
    b: Stamped,
}

/// A fake source fed by the test; acks and refusals go to the log.
fn fake_source() -> (Harness, FakeSource) {
    let (tx, rx) = mpsc::unbounded_channel();
    let harness = Harness {
        events: tx,
        log: Arc::default(),
        dropped: Arc::default(),
        changes: Arc::default(),
        errors: Arc::default(),
    };
    let source = FakeSource {
        events: rx,
        log: harness.log.clone(),
        dropped: harness.dropped.clone(),
    };
    (harness, source)
}

/// Readers on plain threads call `load()` in a loop while revisions arrive.
/// Returns how many loads were made.
fn spawn_readers<T: Send + Sync + 'static>(
    watched: &Watched<T>,
    stop: &Arc<AtomicBool>,
    check: fn(&T, u64) -> u64,
) -> Vec<std::thread::JoinHandle<u64>> {
    (0..3)
        .map(|_| {
            let watched = watched.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                let mut loads = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (value, revision) = watched.load_with_revision();
                    let seen = check(&value, revision);
                    assert!(seen >= last, "went back from {last} to {seen}");
                    last = seen;
                    loads += 1;
                }
                loads
            })
        })
        .collect()
}

/// The concurrency guarantee of `load()`: while thousands of revisions are
/// swapped in, every value a reader sees is one whole committed document
/// (never fields of two revisions), it agrees with the revision read with it,
/// and one reader never sees revisions go backwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_torn_or_older_value_while_thousands_of_revisions_apply() {
    const REVISIONS: u64 = 5_000;
    let (h, source) = fake_source();
    h.send(snapshot(1, &[(PATH, 1, Stamped::json(1))]));
    let hooks = Hooks::default();
    let watched: Watched<Stamped> = start_with(
        Shape::One(PATH.into()),
        source,
        hooks,
        SECOND,
        Arc::default(),
    )
    .await
    .expect("first value");
    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_readers(&watched, &stop, |v: &Stamped, revision| {
        assert!(v.whole(), "torn value {v:?}");
        assert_eq!(v.rev, revision, "value and revision read together");
        v.rev
    });
    for rev in 2..=REVISIONS {
        h.send(put(rev, PATH, Stamped::json(rev)));
    }
    assert!(
        watched
            .wait_for_revision(REVISIONS, Duration::from_secs(30))
            .await
    );
    stop.store(true, Ordering::Relaxed);
    let loads: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    assert!(loads > 0);
    assert_eq!(watched.load().rev, REVISIONS);
    let stats = watched.stats();
    assert_eq!(stats.reloads, REVISIONS - 1);
    assert_eq!(stats.refusals, 0);
}

/// A transaction that writes two namespaces of a set is one event; readers
/// of the set see both new documents or neither, never one of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_changes_atomically_per_transaction() {
    const REVISIONS: u64 = 2_000;
    let (h, source) = fake_source();
    h.send(snapshot(
        1,
        &[
            ("t/e/a", 1, Stamped::json(1)),
            ("t/e/b", 1, Stamped::json(1)),
            ("t/e/other", 1, json!("not part of the set")),
        ],
    ));
    let shape = Shape::for_targets(&["t/e/a".into(), "t/e/b".into()]).expect("a set");
    let watched: Watched<Pair> =
        start_with(shape, source, Hooks::default(), SECOND, Arc::default())
            .await
            .expect("first value");
    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_readers(&watched, &stop, |v: &Pair, revision| {
        assert!(v.a.whole() && v.b.whole(), "torn document {v:?}");
        assert_eq!(v.a.rev, v.b.rev, "half a transaction: {v:?}");
        assert_eq!(v.a.rev, revision);
        v.a.rev
    });
    for rev in 2..=REVISIONS {
        h.send(WatchEvent::Change {
            revision: rev,
            changes: ["t/e/a", "t/e/b"]
                .iter()
                .map(|path| Change {
                    kind: ChangeKind::Put,
                    path: path.to_string(),
                    version: rev,
                    value: Some(Stamped::json(rev)),
                })
                .collect(),
            author: "ops".into(),
            time_ms: 0,
            message: String::new(),
        });
    }
    assert!(
        watched
            .wait_for_revision(REVISIONS, Duration::from_secs(30))
            .await
    );
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader");
    }
    assert_eq!(watched.load().b.rev, REVISIONS);
    assert_eq!(watched.path(), "t/e/a,t/e/b");
}

/// In a set, a change that breaks the whole value is refused for the
/// namespace that changed, a deleted member keeps the last value, and an
/// unrelated namespace of the environment is not looked at.
#[tokio::test]
async fn a_set_refuses_per_changed_namespace_and_keeps_deleted_members() {
    let (h, source) = fake_source();
    h.send(snapshot(
        3,
        &[
            ("t/e/a", 2, Stamped::json(2)),
            ("t/e/b", 3, Stamped::json(3)),
        ],
    ));
    let shape = Shape::for_targets(&["t/e/".into()]).expect("a prefix");
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let hooks = Hooks {
        on_error: Some(Box::new({
            let errors = errors.clone();
            move |e: &Error| errors.lock().expect("errors").push(e.to_string())
        })),
        ..Hooks::default()
    };
    let watched: Watched<Pair> = start_with(shape, source, hooks, SECOND, Arc::default())
        .await
        .expect("first value");
    assert_eq!(watched.revision(), 3, "the newest document's revision");

    h.send(put(4, "t/e/b", json!({"rev": "not a number"})));
    h.send(delete(5, "t/e/a"));
    // A new namespace with a good b: still refused, `a` is gone.
    h.send(put(6, "t/e/b", Stamped::json(6)));
    assert!(watched.wait_for_revision(6, SECOND).await);
    assert_eq!(watched.load().b.rev, 3);
    assert_eq!(watched.stats().refusals, 3);
    let log = h.log();
    assert!(
        log[1].starts_with("refuse 4 t/e/b: does not deserialize"),
        "{log:?}"
    );
    assert_eq!(log[2], "refuse 5 t/e/a: namespace t/e/a was deleted");
    assert_eq!(log[3], "refuse 6 t/e/b: namespace t/e/a was deleted");
    assert_eq!(log.len(), 4, "each refused document reported once: {log:?}");
    assert!(
        errors.lock().expect("errors")[1].contains("t/e/a was deleted"),
        "{errors:?}"
    );

    // `a` comes back: the set is whole again and taken.
    h.send(put(7, "t/e/a", Stamped::json(7)));
    assert!(watched.wait_for_revision(7, SECOND).await);
    let now = watched.load();
    assert_eq!((now.a.rev, now.b.rev), (7, 6));
    assert_eq!(watched.revision(), 7);
    assert_eq!(watched.stats().reloads, 1);
}

/// The file source behind the public builder: edits reload, an edit that
/// does not parse or fails validation is refused and the old value stays.
#[tokio::test]
async fn a_file_handle_reloads_edits_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, "greeting: hi\nworkers: 2\n").expect("write");
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = errors.clone();
    let watched = Watched::<Config>::from_file(&file)
        .validate()
        .on_error(move |e| record.lock().expect("errors").push(e.to_string()))
        .start()
        .await
        .expect("first value");
    assert_eq!(watched.load().workers, 2);
    assert_eq!(watched.revision(), 1);

    let wait = Duration::from_secs(10);
    std::fs::write(&file, "greeting: hi\nworkers: 0\n").expect("write");
    assert!(
        watched.wait_for_revision(2, wait).await,
        "refused version processed"
    );
    std::fs::write(&file, "greeting: [\n").expect("write");
    let deadline = tokio::time::Instant::now() + wait;
    while watched.stats().stream_errors == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(watched.load().workers, 2, "the old value stays");
    let stats = watched.stats();
    assert_eq!((stats.refusals, stats.stream_errors), (1, 1), "{stats:?}");
    let errors = errors.lock().expect("errors").clone();
    assert!(errors[0].contains("workers: range"), "{errors:?}");
    assert!(errors[1].contains("line"), "{errors:?}");

    // Save by rename, valid again.
    let tmp = dir.path().join("app.yaml.new");
    std::fs::write(&tmp, "greeting: hello\nworkers: 8\n").expect("write");
    std::fs::rename(&tmp, &file).expect("rename");
    assert!(watched.wait_for_revision(3, wait).await);
    assert_eq!(watched.load().greeting, "hello");
}

/// A handle whose cache says it exposed revision 8 must not start from a
/// node that is behind: that node's snapshot and changes build the view,
/// and the first value is taken once the stream reaches revision 8.
#[tokio::test]
async fn the_first_value_is_never_older_than_the_cached_revision() {
    let (h, mut source) = fake_source();
    h.send(snapshot(5, &[(PATH, 4, good("old", 1))]));
    h.send(put(6, PATH, good("newer", 2)));
    h.send(WatchEvent::Progress { revision: 7 });
    h.send(WatchEvent::Progress { revision: 9 });
    let hooks: Hooks<Config> = Hooks::default();
    let mut tracker = Tracker::new(Shape::One(PATH.into()), hooks);
    let (value, processed) = first_value(&mut tracker, &mut source, 8)
        .await
        .expect("a first value");
    assert_eq!(processed, 9);
    assert_eq!(value.greeting, "newer");
    assert_eq!(view_revision(&tracker.taken), 6);
}
