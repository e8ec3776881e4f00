//! `raftconf watch`: prints every change of the watched paths until Ctrl-C.
//!
//! Once the first subscription is accepted, an interrupted stream (the node
//! shut down, the subscriber was too slow, the connection broke) is resumed
//! from the revision after the last one printed, on any endpoint, so the
//! output has no gap and no duplicate. A refusal (bad path, start revision
//! out of range) ends the command with an error.

use std::time::Duration;

use raftconf_api::v1 as pb;
use raftconf_api::v1::watch_request::Request as Outgoing;
use raftconf_api::v1::watch_response::Event;
use raftconf_schema::Target;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::conn::{self, Conn};
use super::output;

/// Pause before resuming an interrupted watch.
const RESUME_BACKOFF: Duration = Duration::from_secs(1);

/// Where the output stands.
#[derive(Debug, Default)]
struct Position {
    /// The start revision that continues right after what was printed.
    resume: u64,
    /// Whether a subscription was ever accepted.
    started: bool,
}

/// Follows `targets` from `from_revision` until Ctrl-C.
pub async fn run(
    endpoints: &[String],
    targets: &[Target],
    from_revision: u64,
    json: bool,
) -> anyhow::Result<()> {
    let paths: Vec<String> = targets.iter().map(ToString::to_string).collect();
    let client_id = format!("raftconf-cli-{:016x}", rand::random::<u64>());
    let mut pos = Position {
        resume: from_revision,
        started: false,
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut conn = Some(conn::connect(endpoints).await?);
    loop {
        let c = match conn.take() {
            Some(c) => c,
            None => {
                let reconnect = tokio::select! {
                    _ = &mut ctrl_c => return Ok(()),
                    r = conn::connect(endpoints) => r,
                };
                match reconnect {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("watch: {e:#}; retrying");
                        tokio::select! {
                            _ = &mut ctrl_c => return Ok(()),
                            _ = tokio::time::sleep(RESUME_BACKOFF) => continue,
                        }
                    }
                }
            }
        };
        let status = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            s = follow(&c, &paths, &client_id, json, &mut pos) => s,
        };
        if !pos.started || !resumable(status.code()) {
            return Err(c.describe(&status));
        }
        eprintln!(
            "watch interrupted ({}); resuming from revision {}",
            status.message().replace('\n', " "),
            pos.resume
        );
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(RESUME_BACKOFF) => {}
        }
    }
}

/// Whether a watch ending with `code` is worth resuming.
fn resumable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Internal
    )
}

/// Runs one subscription; returns the status that ended it.
async fn follow(
    c: &Conn,
    paths: &[String],
    client_id: &str,
    json: bool,
    pos: &mut Position,
) -> Status {
    let (tx, rx) = mpsc::channel(4);
    let subscribe = pb::WatchRequest {
        request: Some(Outgoing::Subscribe(pb::Subscribe {
            paths: paths.to_vec(),
            start_revision: pos.resume,
            client_id: client_id.to_string(),
            labels: Default::default(),
        })),
    };
    if tx.send(subscribe).await.is_err() {
        return Status::internal("cannot queue the Subscribe");
    }
    let mut stream = match c.watch().watch(c.request(ReceiverStream::new(rx))).await {
        Ok(r) => r.into_inner(),
        Err(s) => return s,
    };
    pos.started = true;
    // `tx` stays alive: closing our side would end the stream early on some servers.
    loop {
        match stream.message().await {
            Ok(Some(resp)) => {
                for line in output::watch_lines(&resp, json) {
                    println!("{line}");
                }
                if let Some(next) = next_resume(&resp) {
                    pos.resume = next;
                }
            }
            Ok(None) => return Status::unavailable("the server ended the watch stream"),
            Err(s) => {
                drop(tx);
                return s;
            }
        }
    }
}

/// The start revision after `resp` is fully printed, if it completes one.
fn next_resume(resp: &pb::WatchResponse) -> Option<u64> {
    match &resp.event {
        Some(Event::Change(c)) => Some(c.revision + 1),
        Some(Event::Snapshot(s)) if s.last_chunk => Some(s.revision + 1),
        Some(Event::Progress(p)) => Some(p.revision + 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_follows_completed_revisions() {
        let chunk = |last| pb::WatchResponse {
            header: None,
            event: Some(Event::Snapshot(pb::SnapshotEvent {
                revision: 8,
                last_chunk: last,
                ..Default::default()
            })),
        };
        assert_eq!(next_resume(&chunk(false)), None);
        assert_eq!(next_resume(&chunk(true)), Some(9));
        let progress = pb::WatchResponse {
            header: None,
            event: Some(Event::Progress(pb::ProgressEvent { revision: 3 })),
        };
        assert_eq!(next_resume(&progress), Some(4));
        assert!(resumable(Code::Unavailable));
        assert!(!resumable(Code::InvalidArgument));
        assert!(!resumable(Code::OutOfRange));
    }
}
