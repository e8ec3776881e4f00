//! The watches of one client share a stream per server (the default), and
//! each still gets exactly what it covers, in order, and resumes on its own:
//! one watch dropped leaves the others running, and a killed node sends all
//! of them to another, each from its own last revision, without a gap or a
//! repeat. The same with sharing off, so both paths stay equal.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use raftconf_client::{Client, ClientOptions, WatchEvent, WatchStream};
use raftconf_tests::{create_env, put, Cluster};
use tokio::runtime::Runtime;

/// The change revisions `stream` delivers until one at `until` or beyond.
fn changes_until(
    rt: &Runtime,
    stream: &mut WatchStream,
    until: u64,
    timeout: Duration,
) -> Result<Vec<u64>> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rt.block_on(async { tokio::time::timeout(left, stream.next()).await }) {
            Ok(Some(Ok(WatchEvent::Change { revision, .. }))) => {
                seen.push(revision);
                if revision >= until {
                    return Ok(seen);
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => bail!("watch failed: {e}"),
            Ok(None) => bail!("watch ended"),
            Err(_) => bail!("nothing at {until} within {timeout:?}; seen {seen:?}"),
        }
    }
}

/// The revisions written, by what covers them.
#[derive(Default)]
struct Writes {
    a: Vec<u64>,
    b: Vec<u64>,
    all: Vec<u64>,
}

impl Writes {
    /// Write number `i`: to `a` when even, to `b` when odd.
    fn write(&mut self, endpoints: &str, i: u32) -> Result<u64> {
        let (path, to) = if i.is_multiple_of(2) {
            ("pay/prod/a", &mut self.a)
        } else {
            ("pay/prod/b", &mut self.b)
        };
        let (revision, _) = put(endpoints, path, &format!(r#"{{"n":{i}}}"#))?;
        to.push(revision);
        self.all.push(revision);
        Ok(revision)
    }
}

fn watches_resume_each_on_their_own(share: bool) -> Result<()> {
    let mut c = Cluster::start(3)?;
    let all = c.endpoints().join(",");
    create_env(&all, "pay", "prod")?;
    let mut w = Writes::default();
    let first = w.write(&all, 0)?;
    // The first endpoint serves the watches; the others are where they go next.
    let rt = Runtime::new()?;
    let options = ClientOptions::default().share_watch_streams(share);
    let client = rt.block_on(Client::connect_with(c.endpoints(), options))?;
    let mut only_a = rt.block_on(client.watch(["pay/prod/a"], first))?;
    let mut prefix = rt.block_on(client.watch(["pay/prod/"], first))?;
    let mut only_b = rt.block_on(client.watch(["pay/prod/b"], first))?;

    let mut last = first;
    for i in 1..=6 {
        last = w.write(&all, i)?;
    }
    let wait = Duration::from_secs(20);
    let a_last = *w.a.last().context("writes to a")?;
    let b_last = *w.b.last().context("writes to b")?;
    ensure!(changes_until(&rt, &mut only_a, a_last, wait)? == w.a);
    ensure!(changes_until(&rt, &mut only_b, b_last, wait)? == w.b);
    ensure!(changes_until(&rt, &mut prefix, last, wait)? == w.all);

    // One watch leaves: the others run on.
    drop(only_b);
    let before = (w.a.len(), w.all.len());
    for i in 7..=8 {
        last = w.write(&all, i)?;
    }
    let a_last = *w.a.last().context("writes to a")?;
    ensure!(changes_until(&rt, &mut only_a, a_last, wait)? == w.a[before.0..]);
    ensure!(changes_until(&rt, &mut prefix, last, wait)? == w.all[before.1..]);

    // Their node dies: both resume elsewhere, each after its own last revision.
    c.nodes[0].kill()?;
    let rest = c.endpoints()[1..].join(",");
    let before = (w.a.len(), w.all.len());
    for i in 9..=14 {
        last = w.write(&rest, i)?;
    }
    let a_last = *w.a.last().context("writes to a")?;
    let wait = Duration::from_secs(60);
    ensure!(changes_until(&rt, &mut only_a, a_last, wait)? == w.a[before.0..]);
    ensure!(changes_until(&rt, &mut prefix, last, wait)? == w.all[before.1..]);
    ensure!(only_a.reconnects() >= 1 && prefix.reconnects() >= 1);
    Ok(())
}

#[test]
fn shared_watches_get_what_they_cover_and_resume_each_on_their_own() -> Result<()> {
    watches_resume_each_on_their_own(true)
}

#[test]
fn watches_on_streams_of_their_own_do_the_same() -> Result<()> {
    watches_resume_each_on_their_own(false)
}

/// A watch whose caller stops reading holds up no other watch on its shared
/// stream: the stream's task takes it off the stream once 64 events wait for
/// it, and the others get every write as it comes, without a reconnect. When
/// its caller reads again it gets every write too, in order, none missing and
/// none twice (it joins again from its last revision and the server replays
/// the rest), and that is not counted as a reconnect: nothing broke.
#[test]
fn a_watch_left_unread_holds_up_no_other_on_its_stream() -> Result<()> {
    let c = Cluster::start(1)?;
    let all = c.endpoints().join(",");
    create_env(&all, "pay", "prod")?;
    let (first, _) = put(&all, "pay/prod/a", r#"{"n":0}"#)?;
    let rt = Runtime::new()?;
    let client = rt.block_on(Client::connect(c.endpoints()))?;
    // The first watch has a stream of its own; the next two share one.
    let mut own = rt.block_on(client.watch(["pay/prod/"], first))?;
    let mut reader = rt.block_on(client.watch(["pay/prod/"], first))?;
    let mut unread = rt.block_on(client.watch(["pay/prod/"], first))?;
    // A watch joins its stream when first read.
    let wait = Duration::from_secs(15);
    for watch in [&mut own, &mut reader, &mut unread] {
        ensure!(changes_until(&rt, watch, first, wait)? == [first]);
    }

    // Three times as many writes as may wait for one watch.
    let mut written = Vec::new();
    for i in 1..=192 {
        let value = serde_json::json!({ "n": i });
        let path = if i % 2 == 0 {
            "pay/prod/a"
        } else {
            "pay/prod/b"
        };
        written.push(rt.block_on(client.put(path, &value))?.revision);
    }
    let last = *written.last().context("writes")?;
    ensure!(changes_until(&rt, &mut own, last, wait)? == written);
    // Held up by `unread`, it would wait for the server to end the stream
    // as stuck (30 s) and then reconnect.
    ensure!(changes_until(&rt, &mut reader, last, wait)? == written);
    ensure!(reader.reconnects() == 0, "{:?}", reader.last_error());

    ensure!(changes_until(&rt, &mut unread, last, wait)? == written);
    ensure!(unread.reconnects() == 0, "{:?}", unread.last_error());
    // And it runs on after joining again.
    let next = rt
        .block_on(client.put("pay/prod/a", &serde_json::json!({ "n": 193 })))?
        .revision;
    ensure!(changes_until(&rt, &mut unread, next, wait)? == [next]);
    ensure!(changes_until(&rt, &mut reader, next, wait)? == [next]);
    Ok(())
}
