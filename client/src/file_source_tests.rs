//! The file source sees every way a file is saved, yields a version per
//! change of content, and reports text that does not parse with its position.

use std::fs;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

const DEADLINE: Duration = Duration::from_secs(10);

/// The next event, within the deadline.
async fn next(source: &mut FileSource) -> Result<WatchEvent> {
    tokio::time::timeout(DEADLINE, source.next_event())
        .await
        .expect("an event within the deadline")
        .expect("the source goes on")
}

/// The document and local revision of a snapshot.
fn doc(event: WatchEvent) -> (u64, Value) {
    match event {
        WatchEvent::Snapshot {
            revision, entries, ..
        } => {
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].mod_revision, revision);
            (revision, entries[0].value.clone().expect("a value"))
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

/// Nothing arrives for a while (used only to show a no-op stays quiet; the
/// assertion that matters comes after, with the next real change).
async fn quiet(source: &mut FileSource) {
    let r = tokio::time::timeout(Duration::from_millis(300), source.next_event()).await;
    assert!(r.is_err(), "expected nothing, got {r:?}");
}

#[tokio::test]
async fn reads_then_reloads_in_place_edits_renames_and_recreations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("app.json");
    fs::write(&file, r#"{"workers": 1}"#).expect("write");
    let mut source = FileSource::open(&file).expect("open");
    assert_eq!(source.label(), file.display().to_string());
    assert_eq!(
        doc(next(&mut source).await.expect("first")),
        (1, json!({"workers": 1}))
    );

    // In place.
    fs::write(&file, r#"{"workers": 2}"#).expect("write");
    assert_eq!(
        doc(next(&mut source).await.expect("edit")).1,
        json!({"workers": 2})
    );

    // Save by rename, as vim does.
    let tmp = dir.path().join(".app.json.swp");
    fs::write(&tmp, r#"{"workers": 3}"#).expect("write");
    fs::rename(&tmp, &file).expect("rename");
    assert_eq!(
        doc(next(&mut source).await.expect("rename")).1,
        json!({"workers": 3})
    );

    // The same bytes again: nothing.
    fs::write(&file, r#"{"workers": 3}"#).expect("write");
    quiet(&mut source).await;

    // Deleted, then created again.
    fs::remove_file(&file).expect("remove");
    quiet(&mut source).await;
    fs::write(&file, r#"{"workers": 4}"#).expect("write");
    let (revision, value) = doc(next(&mut source).await.expect("recreated"));
    assert_eq!(value, json!({"workers": 4}));
    assert_eq!(revision, 4, "one local revision per version yielded");

    // Another file in the directory is not this one.
    fs::write(dir.path().join("other.json"), "{}").expect("write");
    quiet(&mut source).await;
}

#[tokio::test]
async fn text_that_does_not_parse_is_an_error_with_its_position_and_a_fix_recovers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("app.yaml");
    fs::write(&file, "workers: 1\n").expect("write");
    let mut source = FileSource::open(&file).expect("open");
    assert_eq!(
        doc(next(&mut source).await.expect("first")).1,
        json!({"workers": 1})
    );

    fs::write(&file, "workers: 1\n  bad: [\n").expect("write");
    let err = next(&mut source).await.expect_err("does not parse");
    let message = err.to_string();
    assert!(
        message.starts_with(&file.display().to_string()),
        "{message}"
    );
    assert!(message.contains("line 2"), "{message}");

    fs::write(&file, "workers: 5\n").expect("write");
    assert_eq!(
        doc(next(&mut source).await.expect("fixed")).1,
        json!({"workers": 5})
    );
}

#[tokio::test]
async fn toml_files_and_refused_openings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("app.toml");
    fs::write(&file, "workers = 2\n[db]\nurl = \"x\"\n").expect("write");
    let mut source = FileSource::open(&file).expect("open");
    assert_eq!(
        doc(next(&mut source).await.expect("first")).1,
        json!({"workers": 2, "db": {"url": "x"}})
    );

    let err = FileSource::open(&dir.path().join("app.ini")).expect_err("extension");
    assert!(
        err.to_string().contains(".json, .yaml, .yml or .toml"),
        "{err}"
    );
    let err = FileSource::open(&dir.path().join("missing.json")).expect_err("missing");
    assert!(err.to_string().contains("cannot read"), "{err}");
    fs::write(dir.path().join("bad.json"), "{").expect("write");
    let err = FileSource::open(&dir.path().join("bad.json")).expect_err("bad");
    assert!(matches!(err, Error::File { .. }), "{err}");
}

/// Reading the file (the source's own reads, or anyone's) is not a change:
/// with nothing written, nothing is read again and nothing yielded.
#[tokio::test]
async fn reads_are_not_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("app.json");
    fs::write(&file, r#"{"workers": 1}"#).expect("write");
    let mut source = FileSource::open(&file).expect("open");
    next(&mut source).await.expect("first");
    for _ in 0..5 {
        fs::read(&file).expect("read");
    }
    quiet(&mut source).await;
    assert_eq!(source.rereads, 0, "reads are not changes, nor are our own");
}

/// The file's directory deleted and made again (a volume remounted, a
/// deploy that replaces the whole directory): the watch on the old
/// directory is gone with it, so the source watches the new one and reads
/// the file there.
#[tokio::test]
async fn a_directory_deleted_and_made_again_is_watched_again() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("conf");
    fs::create_dir(&dir).expect("mkdir");
    let file = dir.join("app.json");
    fs::write(&file, r#"{"workers": 1}"#).expect("write");
    let mut source = FileSource::open(&file).expect("open");
    assert_eq!(
        doc(next(&mut source).await.expect("first")).1,
        json!({"workers": 1})
    );

    fs::remove_dir_all(&dir).expect("rmdir");
    quiet(&mut source).await;
    fs::create_dir(&dir).expect("mkdir again");
    fs::write(&file, r#"{"workers": 2}"#).expect("write");
    assert_eq!(
        doc(next(&mut source).await.expect("in the new directory")).1,
        json!({"workers": 2})
    );
    // And the new directory is watched: a later edit is seen too.
    fs::write(&file, r#"{"workers": 3}"#).expect("write");
    assert_eq!(
        doc(next(&mut source).await.expect("edit")).1,
        json!({"workers": 3})
    );
}
