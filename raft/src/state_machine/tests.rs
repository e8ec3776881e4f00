//! Apply semantics: revisions, versions, history, de-duplication, rejections,
//! snapshots, and independence from batch boundaries.

use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};

use super::*;
use crate::command::{
    Command, Precondition, Proposal, ProposalResponse, Rejection, Request, Response,
    ENTRY_FORMAT_VERSION,
};
use crate::model::{ChangeKind, WatchItem};

fn request(n: u64, command: Command, request_id: u64) -> Request {
    Request {
        format: ENTRY_FORMAT_VERSION,
        client_id: "c1".into(),
        request_id,
        author: "alice".into(),
        time_ms: 1_000 + n as i64,
        message: format!("change {n}"),
        command,
    }
}

/// An entry carrying one request.
fn entry(index: u64, command: Command, request_id: u64) -> Entry {
    entry_of(index, vec![request(index, command, request_id)])
}

fn entry_of(index: u64, requests: Vec<Request>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal { requests }),
    }
}

/// The only answer of a one-request entry.
fn only(mut r: Vec<ProposalResponse>) -> Response {
    assert_eq!(r.len(), 1);
    let mut p = r.remove(0).responses;
    assert_eq!(p.len(), 1);
    p.remove(0)
}

fn put(path: &str, value: &str, if_version: Option<u64>) -> Command {
    Command::Put {
        path: path.parse().expect("valid path"),
        value: value.into(),
        precondition: Precondition {
            if_version,
            if_revision: None,
        },
    }
}

fn delete(path: &str) -> Command {
    Command::Delete {
        path: path.parse().expect("valid path"),
        precondition: Precondition::default(),
    }
}

fn setup() -> Vec<Command> {
    vec![
        Command::CreateTenant {
            tenant: "pay".into(),
        },
        Command::CreateEnvironment {
            tenant: "pay".into(),
            env: "prod".into(),
        },
    ]
}

fn open(dir: &std::path::Path) -> StateMachine {
    let mut cfg = NodeConfig::new(1, dir);
    cfg.history_depth = 3;
    cfg.replay_window = 4;
    StateMachine::open(&cfg).expect("open state machine")
}

/// Applies commands as entries 1..=n, in apply calls of `batch` entries.
async fn apply_all(sm: &mut StateMachine, commands: &[Command], batch: usize) -> Vec<Response> {
    apply_grouped(sm, commands, batch, 1).await
}

/// A snapshot of `sm`'s state as it is now, built as openraft builds one.
async fn build_snapshot(sm: &mut StateMachine) -> openraft::Snapshot<TypeConfig> {
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build")
}

/// Applies commands `per_entry` to an entry (one proposal), `batch` entries per apply call.
async fn apply_grouped(
    sm: &mut StateMachine,
    commands: &[Command],
    batch: usize,
    per_entry: usize,
) -> Vec<Response> {
    let requests: Vec<Request> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| request(i as u64 + 1, c.clone(), i as u64 + 1))
        .collect();
    let entries: Vec<Entry> = requests
        .chunks(per_entry)
        .enumerate()
        .map(|(i, rs)| entry_of(i as u64 + 1, rs.to_vec()))
        .collect();
    let mut out = Vec::new();
    for chunk in entries.chunks(batch) {
        for p in sm.apply(chunk.to_vec()).await.expect("apply") {
            out.extend(p.responses);
        }
    }
    out
}

fn applied(r: &Response) -> (u64, u64) {
    let a = r.outcome.clone().expect("applied");
    (a.revision, a.version)
}

#[tokio::test]
async fn revisions_and_versions_follow_the_design() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let mut cmds = setup();
    cmds.extend([
        put("pay/prod/a", r#"{"v":1}"#, Some(0)),
        put("pay/prod/a", r#"{"v":2}"#, Some(1)),
        put("pay/prod/a", r#"{"v":3}"#, Some(1)), // CAS miss: no revision
        delete("pay/prod/a"),
        put("pay/prod/a", r#"{"v":4}"#, Some(0)), // re-create after a delete
        put("pay/nope/a", r#"{"v":5}"#, None),    // unknown env: no revision
    ]);
    let r = apply_all(&mut sm, &cmds, 100).await;
    assert_eq!(applied(&r[0]), (1, 0));
    assert_eq!(applied(&r[1]), (2, 0));
    assert_eq!(applied(&r[2]), (3, 1));
    assert_eq!(applied(&r[3]), (4, 2));
    assert_eq!(
        r[4].outcome,
        Err(Rejection::VersionMismatch {
            path: "pay/prod/a".into(),
            expected: 1,
            current: 2,
            exists: true
        })
    );
    assert_eq!(applied(&r[5]), (5, 3), "delete is a tombstone version");
    assert_eq!(
        applied(&r[6]),
        (6, 4),
        "re-create continues the version count"
    );
    match &r[7].outcome {
        Err(Rejection::UnknownEnvironment { known, .. }) => {
            assert_eq!(known, &vec!["prod".to_string()])
        }
        other => panic!("expected UnknownEnvironment, got {other:?}"),
    }
    let view = sm.view();
    assert_eq!(view.revision(), 6);
    let path = "pay/prod/a".parse().expect("valid");
    let doc = view.get(&path).expect("get").expect("exists");
    assert_eq!(
        (
            doc.record.version,
            doc.record.mod_revision,
            doc.record.create_revision
        ),
        (4, 6, 6)
    );
    // History is bounded to 3 versions, newest first.
    let h = view.history(&path, 0, 10).expect("history");
    assert_eq!(
        h.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![4, 3, 2]
    );
    assert_eq!(h[1].kind, ChangeKind::Delete);
    assert_eq!(h[0].author, "alice");
    // Reads at older revisions come from history.
    assert_eq!(
        view.get_at(&path, 4)
            .expect("at 4")
            .expect("exists")
            .value(),
        r#"{"v":2}"#
    );
    assert!(
        view.get_at(&path, 5).expect("at 5").is_none(),
        "deleted at 5"
    );
    assert!(matches!(
        view.get_at(&path, 3),
        Err(Error::Compacted { .. })
    ));
}

#[tokio::test]
async fn retries_are_deduplicated_and_reused_ids_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    apply_all(&mut sm, &setup(), 10).await;
    let first = entry(3, put("pay/prod/a", r#"{"v":1}"#, None), 42);
    let r1 = only(sm.apply(vec![first.clone()]).await.expect("apply"));
    let mut retry = first.clone();
    retry.log_id.index = 4;
    let r2 = only(sm.apply(vec![retry]).await.expect("apply"));
    assert_eq!(applied(&r1), (3, 1));
    assert_eq!(applied(&r2), (3, 1), "the retry gets the original answer");
    assert!(r2.outcome.clone().expect("ok").deduplicated);
    assert_eq!(sm.view().revision(), 3, "no second apply");
    let reused = entry(5, put("pay/prod/a", r#"{"v":2}"#, None), 42);
    let r3 = only(sm.apply(vec![reused]).await.expect("apply"));
    assert!(matches!(r3.outcome, Err(Rejection::RequestIdReused { .. })));
    // What the proposer asks before it refuses a retry itself.
    let view = sm.view();
    assert!(view.write_recorded("c1", 42).expect("read"));
    for (client, id) in [("c1", 43), ("c1", 41), ("c2", 42), ("c1", 0)] {
        assert!(
            !view.write_recorded(client, id).expect("read"),
            "{client} {id}"
        );
    }
}

#[tokio::test]
async fn batching_of_entries_and_requests_does_not_change_the_result() {
    let mut cmds = setup();
    for i in 0..20 {
        cmds.push(put(
            &format!("pay/prod/n{}", i % 3),
            &format!(r#"{{"i":{i}}}"#),
            None,
        ));
        if i % 7 == 0 {
            cmds.push(delete(&format!("pay/prod/n{}", i % 3)));
        }
    }
    let mut digests = Vec::new();
    // (entries per apply call, requests per entry)
    for (batch, per_entry) in [(1, 1), (3, 1), (100, 1), (1, 4), (5, 7)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(dir.path());
        let r = apply_grouped(&mut sm, &cmds, batch, per_entry).await;
        digests.push((sm.view().state_digest().expect("digest"), format!("{r:?}")));
    }
    for d in &digests[1..] {
        assert_eq!(&digests[0], d);
    }
}

#[tokio::test]
async fn snapshot_round_trip_restores_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let mut cmds = setup();
    cmds.push(put("pay/prod/a", r#"{"v":1}"#, None));
    apply_all(&mut sm, &cmds, 10).await;
    let snap = build_snapshot(&mut sm).await;
    let digest = sm.view().state_digest().expect("digest");

    let dir2 = tempfile::tempdir().expect("tempdir");
    let mut other = open(dir2.path());
    other
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .expect("install");
    assert_eq!(other.view().state_digest().expect("digest"), digest);
    let (applied_id, _) = other.applied_state().await.expect("applied");
    assert_eq!(applied_id.map(|l| l.index), Some(3));
    assert!(other
        .get_current_snapshot()
        .await
        .expect("current")
        .is_some());
}

#[tokio::test]
async fn watch_delivers_in_order_catches_up_and_snapshots_when_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let mut cmds = setup();
    cmds.push(put("pay/prod/a", r#"{"v":1}"#, None)); // rev 3
    cmds.push(put("pay/prod/b", r#"{"v":1}"#, None)); // rev 4
    apply_all(&mut sm, &cmds, 10).await;
    let view = sm.view();
    let targets = vec!["pay/prod/".parse().expect("prefix")];

    // From revision 3: replayed from the window.
    let mut w = view
        .watch(targets.clone(), 3, Duration::ZERO)
        .await
        .expect("watch");
    let revs = [next_change(&mut w).await, next_change(&mut w).await];
    assert_eq!(revs, [3, 4]);

    // Live changes arrive in order, then progress when idle.
    let more = vec![entry(5, put("pay/prod/a", r#"{"v":2}"#, None), 0)];
    sm.apply(more).await.expect("apply");
    assert_eq!(next_change(&mut w).await, 5);

    // Start revision 0: a snapshot at the current revision first.
    let mut w0 = view
        .watch(targets.clone(), 0, Duration::ZERO)
        .await
        .expect("watch");
    match w0.next().await.expect("item") {
        WatchItem::Snapshot {
            revision, entries, ..
        } => {
            assert_eq!(revision, 5);
            assert_eq!(entries.len(), 2);
        }
        other => panic!("expected snapshot, got {other:?}"),
    }

    // Window is 4 revisions: revision 1 is compacted away -> snapshot, never an error.
    let mut old = view
        .watch(targets.clone(), 1, Duration::ZERO)
        .await
        .expect("watch");
    assert!(matches!(
        old.next().await.expect("item"),
        WatchItem::Snapshot {
            reason: "compacted",
            ..
        }
    ));

    // Beyond current + 1 is out of range.
    assert!(matches!(
        view.watch(targets, 7, Duration::ZERO).await,
        Err(Error::OutOfRange { .. })
    ));
}

async fn next_change(w: &mut crate::watch_hub::Subscription) -> u64 {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("no stall")
            .expect("item")
        {
            WatchItem::Change(e) => return e.revision,
            WatchItem::Progress(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn writes_in_one_proposal_see_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    apply_all(&mut sm, &setup(), 10).await;
    let create = put("pay/prod/a", r#"{"v":1}"#, Some(0));
    let first = request(3, create.clone(), 7);
    let requests = vec![
        first.clone(),
        request(4, create, 8), // same CAS, second loses
        first,                 // retry of the first, in the same entry
        request(6, put("pay/prod/a", r#"{"v":2}"#, Some(1)), 9),
    ];
    let out = sm
        .apply(vec![entry_of(3, requests)])
        .await
        .expect("apply")
        .remove(0)
        .responses;
    assert_eq!(applied(&out[0]), (3, 1));
    assert!(matches!(
        out[1].outcome,
        Err(Rejection::VersionMismatch { current: 1, .. })
    ));
    assert_eq!(applied(&out[2]), (3, 1), "deduplicated within the entry");
    assert!(out[2].outcome.clone().expect("ok").deduplicated);
    assert_eq!(applied(&out[3]), (4, 2));
    assert_eq!(sm.view().revision(), 4);
}

/// The replay window also drops events older than `replay_max_age` (by the
/// entry's leader-stamped time), and a resume from a
/// dropped revision gets a snapshot rather than an error.
#[tokio::test]
async fn replay_window_drops_events_older_than_the_max_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = NodeConfig::new(1, dir.path());
    cfg.replay_window = 1_000;
    cfg.replay_max_age = Some(Duration::from_millis(100));
    let mut sm = StateMachine::open(&cfg).expect("open state machine");
    let at = |index: u64, time_ms: i64, command: Command| {
        let mut r = request(index, command, 0);
        r.time_ms = time_ms;
        entry_of(index, vec![r])
    };
    let [tenant, env] = <[Command; 2]>::try_from(setup()).expect("two commands");
    sm.apply(vec![
        at(1, 1_000, tenant),
        at(2, 1_050, env),
        at(3, 1_120, put("pay/prod/a", r#"{"v":1}"#, None)),
    ])
    .await
    .expect("apply");
    let view = sm.view();
    let targets = vec!["pay/prod/".parse().expect("prefix")];
    // At 1120 the cutoff is 1020: revision 1 (1000) is gone, 2 and 3 stay
    // (2 creates the environment, not a namespace: the first change is 3).
    let mut w = view
        .watch(targets.clone(), 2, Duration::ZERO)
        .await
        .expect("watch");
    assert_eq!(next_change(&mut w).await, 3);
    let mut w = view
        .watch(targets.clone(), 1, Duration::ZERO)
        .await
        .expect("watch");
    assert!(matches!(
        w.next().await.expect("item"),
        WatchItem::Snapshot {
            reason: "compacted",
            ..
        }
    ));

    // Long after: everything older is dropped; the new write's event stays.
    sm.apply(vec![at(4, 9_000, put("pay/prod/a", r#"{"v":2}"#, None))])
        .await
        .expect("apply");
    let mut w = view
        .watch(targets.clone(), 4, Duration::ZERO)
        .await
        .expect("watch");
    assert_eq!(next_change(&mut w).await, 4);
    let mut w = view.watch(targets, 3, Duration::ZERO).await.expect("watch");
    assert!(matches!(
        w.next().await.expect("item"),
        WatchItem::Snapshot {
            reason: "compacted",
            ..
        }
    ));
}

/// Deleting an environment or tenant that still holds something is refused
/// (naming what it holds) and changes nothing; forced, it deletes everything
/// in it in one revision, as one watch event of namespace deletes, and a
/// re-created namespace's version continues from its tombstone.
#[tokio::test]
async fn env_and_tenant_delete_refuse_unless_forced_then_take_one_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let mut cmds = setup();
    cmds.push(put("pay/prod/a", r#"{"v":1}"#, None)); // rev 3
    cmds.push(put("pay/prod/b", r#"{"v":1}"#, None)); // rev 4
    cmds.push(Command::DeleteEnvironment {
        tenant: "pay".into(),
        env: "prod".into(),
        force: false,
    });
    cmds.push(Command::DeleteTenant {
        tenant: "pay".into(),
        force: false,
    });
    let out = apply_all(&mut sm, &cmds, 10).await;
    match &out[4].outcome {
        Err(r @ Rejection::NotEmpty { holds, .. }) => {
            assert_eq!(holds, "2 namespaces (a, b)");
            assert!(
                r.to_string().contains("environment pay/prod still holds"),
                "{r}"
            );
        }
        other => panic!("expected NotEmpty, got {other:?}"),
    }
    assert!(
        matches!(&out[5].outcome, Err(Rejection::NotEmpty { holds, .. }) if holds == "1 environments (prod)")
    );
    let view = sm.view();
    assert_eq!(view.revision(), 4, "refusals take no revision");

    let targets = vec!["pay/prod/".parse().expect("prefix")];
    let mut w = view.watch(targets, 5, Duration::ZERO).await.expect("watch");
    let forced = vec![entry(
        7,
        Command::DeleteEnvironment {
            tenant: "pay".into(),
            env: "prod".into(),
            force: true,
        },
        0,
    )];
    let r = only(sm.apply(forced).await.expect("apply"));
    assert_eq!(r.outcome.expect("applied").revision, 5);
    loop {
        match w.next().await.expect("item") {
            WatchItem::Change(e) => {
                assert_eq!(e.revision, 5);
                let deletes: Vec<_> = e
                    .changes
                    .iter()
                    .filter(|c| c.kind == ChangeKind::Delete)
                    .map(|c| (c.path.as_str(), c.version))
                    .collect();
                assert_eq!(deletes, [("pay/prod/a", 2), ("pay/prod/b", 2)]);
                break;
            }
            WatchItem::Progress(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(view.list("pay", "prod").is_err(), "the environment is gone");
    assert!(matches!(
        view.get(&"pay/prod/a".parse().expect("path")),
        Ok(None) | Err(_)
    ));

    // Re-created, the namespace continues from its tombstone version.
    let again = vec![
        entry(
            8,
            Command::CreateEnvironment {
                tenant: "pay".into(),
                env: "prod".into(),
            },
            0,
        ),
        entry(9, put("pay/prod/a", r#"{"v":2}"#, None), 0),
    ];
    let out = sm.apply(again).await.expect("apply");
    let put_answer = out[1].responses[0].outcome.clone().expect("put applied");
    assert_eq!(put_answer.version, 3);

    // The tenant, forced: one revision for the environment and its namespace.
    let r = only(
        sm.apply(vec![entry(
            10,
            Command::DeleteTenant {
                tenant: "pay".into(),
                force: true,
            },
            0,
        )])
        .await
        .expect("apply"),
    );
    assert_eq!(r.outcome.expect("applied").revision, 8);
    assert!(
        view.list("pay", "prod").is_err(),
        "the tenant's environment is gone"
    );
}

fn set_schema(namespace: &str, schema: &str, force: bool) -> Command {
    Command::SetSchema {
        tenant: "pay".into(),
        namespace: namespace.into(),
        schema: schema.into(),
        force,
    }
}

const PORT_SCHEMA: &str = r#"{"type":"object","required":["host"],"properties":{"host":{"type":"string"},"port":{"type":"integer","minimum":1}}}"#;

/// Every put is checked against the namespace's schema at apply: a document
/// that breaks it is refused with every violation (pointer and message),
/// takes no revision and changes nothing; a valid one is applied.
#[tokio::test]
async fn puts_are_validated_against_the_schema_listing_every_violation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let mut cmds = setup();
    cmds.push(set_schema("a", PORT_SCHEMA, false)); // rev 3
    cmds.push(put("pay/prod/a", r#"{"port":0,"extra":true}"#, None)); // refused
    cmds.push(put("pay/prod/a", r#"{"host":"db","port":5432}"#, None)); // rev 4
    cmds.push(put("pay/prod/b", r#"{"anything":1}"#, None)); // no schema: rev 5
    let out = apply_all(&mut sm, &cmds, 10).await;
    assert_eq!(out[2].outcome.clone().expect("schema set").version, 1);
    match &out[3].outcome {
        Err(
            r @ Rejection::SchemaViolation {
                schema_version,
                violations,
                ..
            },
        ) => {
            assert_eq!(*schema_version, 1);
            let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
            assert_eq!(pointers, ["", "/port"], "{violations:?}");
            let text = r.to_string();
            assert!(
                text.starts_with("pay/prod/a violates schema version 1 of pay/a: "),
                "{text}"
            );
            assert!(
                text.contains("(root): ") && text.contains("/port: "),
                "{text}"
            );
        }
        other => panic!("expected a schema violation, got {other:?}"),
    }
    assert_eq!(out[4].outcome.clone().expect("valid put").revision, 4);
    assert_eq!(out[5].outcome.clone().expect("other namespace").revision, 5);
}

/// A schema that live documents would break is refused naming each
/// environment and pointer; forced, it is accepted and marked as forced;
/// deleting it lets any object in again; schema changes are watch events of
/// the namespace in every environment; they count in the state digest.
#[tokio::test]
async fn schema_changes_are_gated_by_live_documents_and_reach_watchers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let mut cmds = setup();
    cmds.push(Command::CreateEnvironment {
        tenant: "pay".into(),
        env: "dev".into(),
    }); // rev 3
    cmds.push(put("pay/prod/a", r#"{"host":"db","port":"5432"}"#, None)); // rev 4
    cmds.push(put("pay/dev/a", r#"{"host":"db","port":5432}"#, None)); // rev 5
    cmds.push(set_schema("a", PORT_SCHEMA, false)); // refused: prod breaks it
    let out = apply_all(&mut sm, &cmds, 10).await;
    match &out[5].outcome {
        Err(r @ Rejection::SchemaIncompatible { broken, .. }) => {
            assert_eq!(broken.len(), 1);
            assert_eq!(broken[0].0, "prod");
            assert_eq!(broken[0].1[0].pointer, "/port");
            assert!(
                r.to_string()
                    .contains("would break live documents: prod: /port: "),
                "{r}"
            );
        }
        other => panic!("expected incompatible, got {other:?}"),
    }
    let view = sm.view();
    assert_eq!(view.revision(), 5, "a refused schema takes no revision");
    let (_, digest_before) = view.state_digest().expect("digest");

    let targets = vec!["pay/dev/".parse().expect("prefix")];
    let mut w = view.watch(targets, 6, Duration::ZERO).await.expect("watch");
    let forced = only(
        sm.apply(vec![entry(7, set_schema("a", PORT_SCHEMA, true), 0)])
            .await
            .expect("apply"),
    );
    assert_eq!(forced.outcome.expect("forced").revision, 6);
    let record = view.schema("pay", "a").expect("read").expect("a schema");
    assert!(record.forced);
    assert_eq!(record.version, 1);
    assert_ne!(view.state_digest().expect("digest").1, digest_before);
    loop {
        match w.next().await.expect("item") {
            WatchItem::Change(e) => {
                assert_eq!(e.revision, 6);
                assert_eq!(e.changes.len(), 1, "only the watched environment's change");
                assert_eq!(e.changes[0].kind, ChangeKind::SchemaSet);
                assert_eq!(e.changes[0].path, "pay/dev/a");
                assert_eq!(e.changes[0].version, 1);
                break;
            }
            WatchItem::Progress(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    // The leader's pre-check gives apply's answer.
    let bad = r#"{"host":1}"#;
    assert!(matches!(
        view.check_document(&"pay/dev/a".parse().expect("path"), bad)
            .expect("check"),
        Err(Rejection::SchemaViolation { .. })
    ));
    let out = sm
        .apply(vec![
            entry(8, put("pay/dev/a", bad, None), 0),
            entry(
                9,
                Command::DeleteSchema {
                    tenant: "pay".into(),
                    namespace: "a".into(),
                },
                0,
            ),
            entry(10, put("pay/dev/a", bad, None), 0),
        ])
        .await
        .expect("apply");
    assert!(out[0].responses[0].outcome.is_err());
    assert_eq!(
        out[1].responses[0]
            .outcome
            .clone()
            .expect("deleted")
            .version,
        2
    );
    assert!(out[2].responses[0].outcome.is_ok(), "no schema, any object");
    let history = view.schema_history("pay", "a").expect("history");
    let versions: Vec<(u64, bool)> = history
        .iter()
        .map(|r| (r.version, r.schema.is_some()))
        .collect();
    assert_eq!(versions, [(2, false), (1, true)]);
}

/// A patch edits the document as it is at apply and is validated like a put
/// (schema included); a bad pointer is refused naming it. A rollback writes an
/// earlier version's value as a new version, validated against today's
/// schema; a deletion or a version no longer kept cannot be rolled back to.
#[tokio::test]
async fn patches_and_rollbacks_are_new_versions_validated_like_puts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path()); // history depth 3
    let mut cmds = setup();
    cmds.push(put("pay/prod/a", r#"{"host":"db","port":1}"#, None)); // rev 3, v1
    cmds.push(Command::Patch {
        path: "pay/prod/a".parse().expect("path"),
        edits: vec![
            ("/port".into(), Some("2".into())),
            ("/pool/size".into(), Some("8".into())),
        ],
        precondition: Precondition {
            if_version: Some(1),
            if_revision: None,
        },
    }); // rev 4, v2
    cmds.push(Command::Patch {
        path: "pay/prod/a".parse().expect("path"),
        edits: vec![("/nope/0".into(), None)],
        precondition: Precondition::default(),
    }); // refused: nothing at /nope
    cmds.push(set_schema("a", PORT_SCHEMA, false)); // rev 5 (v2 is valid)
    cmds.push(Command::Patch {
        path: "pay/prod/a".parse().expect("path"),
        edits: vec![("/port".into(), Some("\"x\"".into()))],
        precondition: Precondition::default(),
    }); // refused by the schema
    cmds.push(Command::Rollback {
        path: "pay/prod/a".parse().expect("path"),
        to_version: 1,
        precondition: Precondition::default(),
    }); // rev 6, v3 = v1's value
    let out = apply_all(&mut sm, &cmds, 10).await;
    let patched = out[3].outcome.clone().expect("patched");
    assert_eq!((patched.revision, patched.version), (4, 2));
    match &out[4].outcome {
        Err(Rejection::Invalid { reason }) => assert!(reason.contains("/nope"), "{reason}"),
        other => panic!("expected invalid, got {other:?}"),
    }
    assert!(matches!(
        &out[6].outcome,
        Err(Rejection::SchemaViolation { violations, .. }) if violations[0].pointer == "/port"
    ));
    let rolled = out[7].outcome.clone().expect("rolled back");
    assert_eq!((rolled.revision, rolled.version), (6, 3));
    let view = sm.view();
    let doc = view
        .get(&"pay/prod/a".parse().expect("path"))
        .expect("get")
        .expect("live");
    assert_eq!(
        doc.record.value.as_deref(),
        Some(r#"{"host":"db","port":1}"#)
    );
    let v2 = view
        .get_at(&"pay/prod/a".parse().expect("path"), 4)
        .expect("at 4")
        .expect("v2");
    assert_eq!(
        v2.record.value.as_deref(),
        Some(r#"{"host":"db","pool":{"size":8},"port":2}"#)
    );

    // Rolled back to a version that breaks today's schema: refused.
    let more = vec![
        entry(
            9,
            Command::DeleteSchema {
                tenant: "pay".into(),
                namespace: "a".into(),
            },
            0,
        ),
        entry(10, put("pay/prod/a", r#"{"port":"x"}"#, None), 0), // v4, no schema now
        entry(11, set_schema("b", PORT_SCHEMA, false), 0),
        entry(
            12,
            Command::Rollback {
                path: "pay/prod/a".parse().expect("path"),
                to_version: 1,
                precondition: Precondition::default(),
            },
            0,
        ), // depth 3: v1 is gone
    ];
    let out = sm.apply(more).await.expect("apply");
    assert!(out[1].responses[0].outcome.is_ok());
    match &out[3].responses[0].outcome {
        Err(Rejection::Invalid { reason }) => {
            assert!(reason.contains("no version 1 in its history"), "{reason}")
        }
        other => panic!("expected invalid, got {other:?}"),
    }
}

fn tx_put(namespace: &str, value: &str) -> crate::command::TxWrite {
    crate::command::TxWrite {
        namespace: namespace.into(),
        value: Some(value.into()),
        precondition: Precondition::default(),
    }
}

/// A transaction publishes several namespaces of one environment as one
/// revision and one watch event; if any write is refused (schema, CAS, a
/// missing namespace to delete), nothing is applied and every refusal is
/// listed.
#[tokio::test]
async fn a_transaction_is_one_revision_one_event_and_all_or_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let mut cmds = setup();
    cmds.push(put("pay/prod/old", r#"{"v":1}"#, None)); // rev 3
    cmds.push(set_schema("a", PORT_SCHEMA, false)); // rev 4
    let refused = Command::Transaction {
        tenant: "pay".into(),
        env: "prod".into(),
        writes: vec![
            tx_put("a", r#"{"host":1}"#),
            tx_put("b", r#"{"v":1}"#),
            crate::command::TxWrite {
                namespace: "c".into(),
                value: None,
                precondition: Precondition::default(),
            },
        ],
    };
    cmds.push(refused);
    let out = apply_all(&mut sm, &cmds, 10).await;
    match &out[4].outcome {
        Err(r @ Rejection::TransactionRefused { failures, .. }) => {
            let names: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["a", "c"], "{r}");
            assert!(r
                .to_string()
                .starts_with("transaction on pay/prod refused, nothing applied"));
        }
        other => panic!("expected a refused transaction, got {other:?}"),
    }
    let view = sm.view();
    assert_eq!(view.revision(), 4, "nothing applied");
    assert!(view
        .get(&"pay/prod/b".parse().expect("path"))
        .expect("get")
        .is_none());

    let mut w = view
        .watch(
            vec!["pay/prod/".parse().expect("prefix")],
            5,
            Duration::ZERO,
        )
        .await
        .expect("watch");
    let ok = Command::Transaction {
        tenant: "pay".into(),
        env: "prod".into(),
        writes: vec![
            tx_put("a", r#"{"host":"db"}"#),
            tx_put("b", r#"{"v":1}"#),
            crate::command::TxWrite {
                namespace: "old".into(),
                value: None,
                precondition: Precondition {
                    if_version: Some(1),
                    if_revision: None,
                },
            },
        ],
    };
    let r = only(sm.apply(vec![entry(8, ok, 0)]).await.expect("apply"));
    assert_eq!(r.outcome.expect("applied").revision, 5);
    loop {
        match w.next().await.expect("item") {
            WatchItem::Change(e) => {
                assert_eq!(e.revision, 5);
                let changes: Vec<(&str, ChangeKind, u64)> = e
                    .changes
                    .iter()
                    .map(|c| (c.path.as_str(), c.kind, c.version))
                    .collect();
                assert_eq!(
                    changes,
                    [
                        ("pay/prod/a", ChangeKind::Put, 1),
                        ("pay/prod/b", ChangeKind::Put, 1),
                        ("pay/prod/old", ChangeKind::Delete, 2)
                    ]
                );
                break;
            }
            WatchItem::Progress(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    let listed = view.list("pay", "prod").expect("list");
    assert_eq!(listed.len(), 2, "a and b live, old deleted");
}

/// A seeded random mix of schema changes (some nonsensical, some forced),
/// puts of random documents, patches, transactions, rollbacks and deletes
/// never panics apply, and every way of batching it gives the same answers
/// and the same state digest: every node gives the same verdict on every write.
#[tokio::test]
async fn random_schemas_and_documents_give_every_node_the_same_verdicts() {
    use rand::{Rng, SeedableRng};
    let seed = std::env::var("RAFTCONF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261122u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let schemas = [
        r#"{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":50}}}"#,
        r#"{"type":"object","required":["s"],"properties":{"s":{"type":"string","pattern":"^[a-z]+$"}}}"#,
        r#"{"type":"object","additionalProperties":{"type":["integer","string","boolean"]}}"#,
        r#"{"type":"object","properties":{"l":{"type":"array","items":{"enum":[1,2,3]},"maxItems":3}}}"#,
        r#"{"not":{"required":["x"]}}"#,
        r##"{"type":"object","properties":{"n":{"$ref":"#/$defs/small"}},"$defs":{"small":{"maximum":5}}}"##,
        r#"{"type":"object","properties":{"n":{"type":"strin"}}}"#, // does not compile
        "true",
    ];
    let value = |rng: &mut rand::rngs::StdRng| -> String {
        let mut members = Vec::new();
        for key in ["n", "s", "l", "x"] {
            if rng.gen_bool(0.5) {
                let v = match rng.gen_range(0..6) {
                    0 => rng.gen_range(-10..80).to_string(),
                    1 => format!("\"{}\"", ["abc", "A1", "", "zz"][rng.gen_range(0..4)]),
                    2 => "[1,2,3,4]".to_string(),
                    3 => "[2]".to_string(),
                    4 => "true".to_string(),
                    _ => "{\"deep\":{\"n\":1}}".to_string(),
                };
                members.push(format!("\"{key}\":{v}"));
            }
        }
        format!("{{{}}}", members.join(","))
    };
    let mut cmds = setup();
    for _ in 0..300 {
        let ns = ["a", "b"][rng.gen_range(0..2)];
        let path = format!("pay/prod/{ns}");
        cmds.push(match rng.gen_range(0..10) {
            0 => set_schema(
                ns,
                schemas[rng.gen_range(0..schemas.len())],
                rng.gen_bool(0.3),
            ),
            1 => Command::DeleteSchema {
                tenant: "pay".into(),
                namespace: ns.into(),
            },
            2 => Command::Patch {
                path: path.parse().expect("path"),
                edits: vec![("/n".into(), Some(rng.gen_range(-5..60).to_string()))],
                precondition: Precondition::default(),
            },
            3 => Command::Transaction {
                tenant: "pay".into(),
                env: "prod".into(),
                writes: vec![tx_put("a", &value(&mut rng)), tx_put("b", &value(&mut rng))],
            },
            4 => Command::Rollback {
                path: path.parse().expect("path"),
                to_version: rng.gen_range(1..8),
                precondition: Precondition::default(),
            },
            5 => delete(&path),
            _ => put(&path, &value(&mut rng), None),
        });
    }
    let mut outcomes = Vec::new();
    for (batch, per_entry) in [(1, 1), (7, 3), (64, 1)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = open(dir.path());
        let r = apply_grouped(&mut sm, &cmds, batch, per_entry).await;
        let accepted = r.iter().filter(|r| r.outcome.is_ok()).count();
        outcomes.push((
            sm.view().state_digest().expect("digest"),
            format!("{r:?}"),
            accepted,
        ));
    }
    for o in &outcomes[1..] {
        assert_eq!(&outcomes[0], o, "seed {seed}");
    }
    let accepted = outcomes[0].2;
    assert!(
        accepted > 50 && accepted < cmds.len() - 20,
        "seed {seed}: a mix of verdicts ({accepted} of {} accepted)",
        cmds.len()
    );
}

/// A tenant's replicated settings: a lower history depth prunes each
/// namespace at its next write (older versions all go, not just one), a
/// namespace limit refuses what does not fit, values out of range are refused,
/// and a deleted tenant's settings go with it.
#[tokio::test]
async fn tenant_settings_bound_history_and_namespaces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = NodeConfig::new(1, dir.path());
    cfg.history_depth = 100;
    let mut sm = StateMachine::open(&cfg).expect("open");
    let settings = |history_depth, max_namespaces_per_env| Command::SetTenantSettings {
        tenant: "pay".into(),
        history_depth,
        max_namespaces_per_env,
    };
    let mut cmds = setup();
    for i in 0..6 {
        cmds.push(put("pay/prod/a", &format!(r#"{{"i":{i}}}"#), None)); // v1..v6
    }
    cmds.push(settings(Some(0), None)); // refused: out of range
    cmds.push(settings(Some(2), Some(1)));
    cmds.push(put("pay/prod/a", r#"{"i":6}"#, None)); // v7: prunes v1..v5
    cmds.push(put("pay/prod/b", r#"{"i":0}"#, None)); // refused: 1 namespace per env
    let out = apply_all(&mut sm, &cmds, 4).await;
    assert!(
        matches!(&out[8].outcome, Err(Rejection::Invalid { reason }) if reason.contains("1 to 10000"))
    );
    assert!(out[9].outcome.is_ok());
    assert!(out[10].outcome.is_ok());
    assert!(matches!(
        &out[11].outcome,
        Err(Rejection::LimitExceeded { max: 1, .. })
    ));
    let view = sm.view();
    let versions: Vec<u64> = view
        .history(&"pay/prod/a".parse().expect("path"), 0, 100)
        .expect("history")
        .iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(versions, [7, 6], "depth 2 after the next write");
    let tenants = view.tenants().expect("tenants");
    assert_eq!(
        (tenants[0].history_depth, tenants[0].max_namespaces_per_env),
        (2, 1)
    );

    let gone = vec![
        entry(
            20,
            Command::DeleteTenant {
                tenant: "pay".into(),
                force: true,
            },
            0,
        ),
        entry(
            21,
            Command::CreateTenant {
                tenant: "pay".into(),
            },
            0,
        ),
    ];
    sm.apply(gone).await.expect("apply");
    let tenants = view.tenants().expect("tenants");
    assert_eq!(
        (tenants[0].history_depth, tenants[0].max_namespaces_per_env),
        (100, 10_000)
    );
}

/// Apply's hints (what it knows about the state, to skip sled reads) leave
/// exactly the state, key by key, that a node without them reaches: one
/// machine keeps its hints over the whole run, the other forgets them before
/// every apply, as a node does when it restarts. The run lowers and raises
/// the history depth, prunes schema versions, deletes a document and the
/// whole tenant and creates them again (versions start over), expires
/// de-duplication records out of time order, and retries writes, including
/// one whose id is below a newer one of its client, one from a client whose
/// id starts with another's, and the out-of-order ids of a client with
/// several writes in flight.
#[tokio::test]
async fn apply_hints_leave_the_same_state_as_none() {
    let settings = |depth| Command::SetTenantSettings {
        tenant: "pay".into(),
        history_depth: Some(depth),
        max_namespaces_per_env: None,
    };
    let mut cmds = setup();
    for i in 0..60u64 {
        cmds.push(put(
            &format!("pay/prod/n{}", i % 3),
            &format!(r#"{{"i":{i}}}"#),
            None,
        ));
        if i % 4 == 0 {
            let schema = format!(r#"{{"type":"object","title":"t{i}"}}"#);
            cmds.push(set_schema("n0", &schema, false));
        }
        match i {
            12 => cmds.push(settings(1)),
            20 => cmds.push(settings(6)),
            27 => cmds.push(delete("pay/prod/n1")),
            33 => {
                cmds.push(Command::DeleteTenant {
                    tenant: "pay".into(),
                    force: true,
                });
                cmds.extend(setup());
            }
            45 => cmds.push(settings(2)),
            _ => {}
        }
    }
    let mut requests: Vec<Request> = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut r = request(i as u64 + 1, c.clone(), i as u64 + 1);
            // Times jump back and forth by up to ~0.3 s; the TTL is 50 ms.
            r.time_ms = 1_000 + (i as i64 * 7_919) % 97 * 3;
            r
        })
        .collect();
    // Retries within the TTL (stamped like the write they follow).
    let base = requests[10].clone();
    let from = |client: &str, id: u64, value: &str| Request {
        client_id: client.into(),
        request_id: id,
        command: put("pay/prod/n2", value, None),
        ..base.clone()
    };
    let c2 = from("c2", 1_000, r#"{"c2":1000}"#);
    let retries = vec![
        base.clone(),
        c2.clone(),
        from("c2", 500, r#"{"c2":500}"#),
        c2,
        from("c1\0x", 5, r#"{"x":5}"#),
        from("c1", 11, r#"{"reused":11}"#),
        // A client with several writes in flight: ids out of order, a
        // retry of one below the newest, a jump past the hints' window of
        // recent ids, then a new id and a retry from below that window.
        from("c3", 2_003, r#"{"c3":2003}"#),
        from("c3", 2_001, r#"{"c3":2001}"#),
        from("c3", 2_002, r#"{"c3":2002}"#),
        from("c3", 2_001, r#"{"c3":2001}"#),
        from("c3", 3_500, r#"{"c3":3500}"#),
        from("c3", 2_004, r#"{"c3":2004}"#),
        from("c3", 2_003, r#"{"c3":2003}"#),
    ];
    requests.splice(11..11, retries);
    let entries: Vec<Entry> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| entry_of(i as u64 + 1, vec![r.clone()]))
        .collect();
    let mut states = Vec::new();
    for forget in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = NodeConfig::new(1, dir.path());
        cfg.history_depth = 3;
        cfg.dedup_ttl = Duration::from_millis(50);
        let mut sm = StateMachine::open(&cfg).expect("open");
        let mut answers = Vec::new();
        for chunk in entries.chunks(3) {
            if forget {
                sm.hints.clear();
            }
            answers.push(format!(
                "{:?}",
                sm.apply(chunk.to_vec()).await.expect("apply")
            ));
        }
        let all = sm.shared.store.all().expect("state");
        states.push((answers, all));
    }
    assert!(
        states[0].1.iter().any(|(k, _)| k.starts_with(b"x/")),
        "some de-duplication records are still in the window"
    );
    let answers = states[0].0.concat();
    assert_eq!(
        answers.matches("deduplicated: true").count(),
        4,
        "the four retries get their first answers: {answers}"
    );
    assert_eq!(answers.matches("RequestIdReused").count(), 1, "{answers}");
    assert_eq!(states[0].0, states[1].0, "same answers");
    assert_eq!(states[0].1, states[1].1, "same state, key by key");
}

/// De-duplication in blocks answers every write as one record per write id
/// with an expiry of its own did (state format 1): a model keeps each
/// recorded id with its time and, before each entry, forgets those the
/// entry's cutoff (its time less the TTL) passes, as format 1 did; every
/// answer of the state machine is checked against it. The
/// random runs retry ids inside and beyond the TTL, reuse ids with another
/// payload, write ids out of order and across block boundaries, let times go
/// back (a new leader's clock), and forget apply's hints at random, as a
/// restart does.
#[tokio::test]
async fn dedup_blocks_answer_as_one_record_per_id_with_its_own_expiry() {
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;
    const TTL_MS: i64 = 400;
    for seed in 0..6u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = NodeConfig::new(1, dir.path());
        cfg.dedup_ttl = Duration::from_millis(TTL_MS as u64);
        let mut sm = StateMachine::open(&cfg).expect("open");
        apply_all(&mut sm, &setup(), 10).await;
        let mut index = 2;
        let mut revision = 2;
        // (client, id) → (time, value, revision) of its answer.
        let mut model: HashMap<(String, u64), (i64, String, u64)> = HashMap::new();
        let mut ever = std::collections::HashSet::new();
        let mut next_id: HashMap<String, u64> = HashMap::new();
        let mut now = 10_000i64;
        let (mut deduplicated, mut reused, mut expired_retries) = (0, 0, 0);
        for step in 0..1_500 {
            now += rng.gen_range(0..25);
            if rng.gen_ratio(1, 20) {
                now -= rng.gen_range(0..300);
            }
            let client = format!("c{}", rng.gen_range(0..3));
            let next = next_id.entry(client.clone()).or_insert(1);
            let id = match rng.gen_range(0..10) {
                // An earlier id: a retry, or one written out of order.
                0..=2 => rng.gen_range(next.saturating_sub(80).max(1)..=*next),
                3 => {
                    *next += rng.gen_range(1..100);
                    *next
                }
                _ => {
                    *next += 1;
                    *next
                }
            };
            // Format 1: each entry first removes every record its cutoff passed.
            model.retain(|_, (t, _, _)| *t >= now - TTL_MS);
            let known = model.get(&(client.clone(), id)).cloned();
            let expired = ever.contains(&(client.clone(), id)) && known.is_none();
            let value = match &known {
                Some((_, v, _)) if rng.gen_ratio(4, 5) => v.clone(),
                _ => format!(r#"{{"s":{step}}}"#),
            };
            let req = Request {
                format: ENTRY_FORMAT_VERSION,
                client_id: client.clone(),
                request_id: id,
                author: "alice".into(),
                time_ms: now,
                message: String::new(),
                command: put("pay/prod/a", &value, None),
            };
            index += 1;
            if rng.gen_ratio(1, 20) {
                sm.hints.clear();
            }
            let answer = only(
                sm.apply(vec![entry_of(index, vec![req])])
                    .await
                    .expect("apply"),
            );
            let context = format!("seed {seed} step {step}: {client} id {id} at {now}");
            match known {
                Some((_, recorded, rev)) if recorded == value => {
                    let a = answer.outcome.expect(&context);
                    assert!(a.deduplicated, "{context}: a retry within the TTL");
                    assert_eq!(a.revision, rev, "{context}: the original answer");
                    deduplicated += 1;
                }
                Some(_) => {
                    assert!(
                        matches!(answer.outcome, Err(Rejection::RequestIdReused { .. })),
                        "{context}: a reused id within the TTL: {answer:?}"
                    );
                    reused += 1;
                }
                None => {
                    let a = answer.outcome.expect(&context);
                    revision += 1;
                    assert!(!a.deduplicated, "{context}: new, or its record expired");
                    assert_eq!(a.revision, revision, "{context}");
                    if expired {
                        expired_retries += 1;
                    }
                    ever.insert((client.clone(), id));
                    model.insert((client, id), (now, value, revision));
                }
            }
        }
        assert!(
            deduplicated > 20 && reused > 5 && expired_retries > 5,
            "seed {seed}: the run exercised every case: {deduplicated} retries, \
             {reused} reused ids, {expired_retries} retries after the TTL"
        );
    }
}

/// Every pair of the state machine's state, sorted by key.
fn pairs(sm: &StateMachine) -> Vec<(Vec<u8>, Vec<u8>)> {
    let all = sm.shared.store.all().expect("state");
    all.into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

/// A state of format 2 written back in format 1 (a `q/` key and an `x/`
/// entry per record): what a data directory or a snapshot of the previous
/// build holds.
fn downgrade_to_v1(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for (key, value) in pairs {
        if let Some((client, _)) = keys::dedup_block_parts(&key) {
            let block: dedup::DedupBlock = decode(&value).expect("a block");
            for (id, record) in block.records() {
                let mut legacy = keys::LEGACY_DEDUP_PREFIX.to_vec();
                legacy.extend_from_slice(client.as_bytes());
                legacy.push(0);
                legacy.extend_from_slice(&id.to_be_bytes());
                out.push((keys::dedup_expiry(record.time_ms, &legacy), encode(&())));
                out.push((legacy, encode(record)));
            }
        } else if key == keys::META_FORMAT {
            out.push((key, encode(&1u16)));
        } else if !key.starts_with(keys::DEDUP_EXPIRY_PREFIX) {
            out.push((key, value));
        }
    }
    out.sort();
    out
}

/// The previous build's state (format 1: a key per write id) is upgraded
/// when a node opens its data directory, and when a snapshot of it is
/// installed: the state is then key by key what this build writes, and
/// retries of writes recorded before the upgrade still get their first
/// answers.
#[tokio::test]
async fn a_format_1_state_and_snapshot_upgrade_and_keep_every_answer() {
    let mut cmds = setup();
    // Four namespaces, 70 writes: blocks 0, 1 and 2 of client c1.
    cmds.extend((0..70u64).map(|i| put(&format!("pay/prod/n{}", i % 4), "{}", None)));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sm = open(dir.path());
    let answers = apply_all(&mut sm, &cmds, 7).await;
    let state = pairs(&sm);
    let snap = build_snapshot(&mut sm).await;
    drop(sm);
    let old = downgrade_to_v1(state.clone());
    assert!(
        old.iter().any(|(k, _)| k.starts_with(b"q/")),
        "format 1 keys"
    );

    // A data directory of format 1.
    {
        let db = sled::Config::new()
            .path(dir.path().join("state"))
            .open()
            .expect("sled");
        let tree = db.open_tree("state").expect("tree");
        tree.clear().expect("clear");
        for (k, v) in &old {
            tree.insert(k.as_slice(), v.as_slice()).expect("insert");
        }
        tree.flush().expect("flush");
    }
    // A snapshot of format 1.
    let file = snapshot::from_bytes(&snap.snapshot.into_inner()).expect("snapshot");
    let old_snapshot = snapshot::to_bytes(&SnapshotFile {
        format: 1,
        meta: file.meta.clone(),
        pairs: downgrade_to_v1(file.pairs),
    });
    let dir2 = tempfile::tempdir().expect("tempdir");
    let mut installed = open(dir2.path());
    installed
        .install_snapshot(&file.meta, Box::new(Cursor::new(old_snapshot)))
        .await
        .expect("install a format 1 snapshot");
    let mut reopened = open(dir.path());
    for sm in [&mut reopened, &mut installed] {
        assert_eq!(
            pairs(sm),
            state,
            "upgraded key by key to what this build wrote"
        );
        // Retries of the first and the last write: their first answers.
        let last = cmds.len() as u64;
        for (n, id) in [(last + 1, 3), (last + 2, last)] {
            let retry = request(id, cmds[id as usize - 1].clone(), id);
            let r = only(
                sm.apply(vec![entry_of(n, vec![retry])])
                    .await
                    .expect("apply"),
            );
            assert_eq!(
                r.outcome,
                answers[id as usize - 1]
                    .outcome
                    .clone()
                    .map(|a| crate::command::Applied {
                        deduplicated: true,
                        ..a
                    })
            );
        }
    }
}
