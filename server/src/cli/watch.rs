//! `raftconf watch`: prints every change of the watched paths until Ctrl-C.
//!
//! The client library's [`raftconf_client::WatchStream`] does the hard part:
//! when the stream is interrupted (the node shut down, the subscriber was too
//! slow, the connection broke) it resubscribes on any endpoint from the
//! revision after the last one it yielded, so the output has no gap and no
//! duplicate. This command only checks first that some server answers (the
//! stream itself retries an unreachable cluster forever), prints the events,
//! and notes on stderr when the stream had to resume. A refusal (bad path,
//! start revision out of range) ends the command with an error.

use std::time::Duration;

use anyhow::bail;
use raftconf_client::{Client, WatchStream};

use super::{conn, output};

/// How often to look whether the stream had to reconnect, for the notice on stderr.
const NOTICE_INTERVAL: Duration = Duration::from_secs(1);

/// Follows `targets` (already checked) from `from_revision` until Ctrl-C.
pub async fn run(
    client: &Client,
    endpoints: &[String],
    targets: &[String],
    from_revision: u64,
    json: bool,
) -> anyhow::Result<()> {
    let failed = |e: raftconf_client::Error| conn::describe(&e, endpoints);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    tokio::select! {
        _ = &mut ctrl_c => return Ok(()),
        reachable = client.status() => { reachable.map_err(failed)?; }
    }
    let mut stream = client
        .watch(targets.iter().cloned(), from_revision)
        .await
        .map_err(failed)?;
    let mut notice = ResumeNotice {
        next: from_revision,
        reported: None,
    };
    let mut tick = tokio::time::interval(NOTICE_INTERVAL);
    loop {
        let event = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tick.tick() => None,
            event = stream.next() => Some(event),
        };
        // Before printing what a resumed stream delivers.
        notice.check(&stream);
        match event {
            None => {}
            Some(Some(Ok(event))) => {
                for line in output::watch_lines(&event, json) {
                    println!("{line}");
                }
                // This subscriber applied what it printed (`raftconf clients`).
                stream.ack(event.revision());
                notice.next = event.revision() + 1;
            }
            Some(Some(Err(e))) => return Err(failed(e)),
            Some(None) => bail!("the watch stream ended"),
        }
    }
}

/// Says once per distinct reason that the stream was interrupted and where it resumes.
struct ResumeNotice {
    /// The revision after the last one printed.
    next: u64,
    /// The interruption already reported.
    reported: Option<String>,
}

impl ResumeNotice {
    fn check(&mut self, stream: &WatchStream) {
        let last = stream.last_error();
        if last.is_some() && last != self.reported {
            eprintln!(
                "watch interrupted ({}); resuming from revision {}",
                last.as_deref().unwrap_or_default(),
                self.next
            );
            self.reported = last;
        }
    }
}
