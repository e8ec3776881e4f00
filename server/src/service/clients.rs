//! `Watch.Clients`: which subscribers of a namespace run which revision.
//!
//! Each node knows the watch streams it serves ([`crate::delivery`]). Asked
//! for the cluster, a node reads the namespace's latest revision, takes its
//! own subscribers, asks every other member for theirs (`local_only`, with a
//! deadline, concurrently) and merges: one row per client id and set of
//! paths, an open stream preferred over a closed one (the subscriber moved),
//! then the higher acknowledged revision. Members that do not answer are
//! listed, never silently left out.
//!
//! A subscriber is *refusing* when its latest refusal of the namespace is of
//! the live document (revision at or after the latest; for a deleted
//! namespace, the delete, which a hot-reload handle refuses to keep its last
//! value), else *current* when it acknowledged the latest revision, else
//! *lagging*. Only open streams count.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use futures::future::join_all;
use raftconf_api::v1 as pb;
use raftconf_api::v1::watch_client::WatchClient;
use raftconf_schema::NsPath;
use tracing::debug;

use super::ServiceContext;
use crate::delivery::Subscriber;
use crate::status::ApiError;

/// How long a node waits for another's subscribers.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves one `Clients` request.
pub async fn clients(
    ctx: &ServiceContext,
    req: pb::ClientsRequest,
) -> Result<pb::ClientsResponse, ApiError> {
    let path: NsPath = req.path.parse()?;
    // What nodes ask each other needs no read index: the asking node read
    // the latest revision itself.
    let consistency = if req.local_only {
        pb::Consistency::Serializable
    } else {
        pb::Consistency::Linearizable
    };
    ctx.read_revision(consistency as i32, 0).await?;
    let state = ctx.node.state();
    let (doc, read_at) = state.get_with_revision(&path)?;
    // A deleted namespace's latest revision is its delete's: a subscriber
    // is current once it processed the delete.
    let latest = match doc {
        Some(d) => d.record.mod_revision,
        None => state
            .history(&path, 0, 1)?
            .first()
            .map_or(0, |v| v.revision),
    };
    let me = ctx.node.node_id();
    let mut rows: Vec<pb::SubscriberInfo> = ctx
        .delivery
        .covering(&path)
        .into_iter()
        .map(|s| row(s, &path, me))
        .collect();
    let mut unreachable = Vec::new();
    if !req.local_only {
        let others: Vec<_> = ctx
            .node
            .members()
            .into_iter()
            .filter(|m| m.id != me)
            .collect();
        let asked = join_all(
            others
                .iter()
                .map(|m| ask(ctx, &m.info.client_addr, &req.path)),
        )
        .await;
        for (member, answer) in others.iter().zip(asked) {
            match answer {
                Ok(theirs) => rows.extend(theirs),
                Err(reason) => {
                    debug!(node = member.id, %reason, "no subscribers from a member");
                    unreachable.push(member.id);
                }
            }
        }
        rows = merge(rows);
    }
    let (mut current, mut lagging, mut refusing) = (0, 0, 0);
    for r in &mut rows {
        r.state = state_of(r, latest).to_string();
        if r.connected {
            match r.state.as_str() {
                "current" => current += 1,
                "refusing" => refusing += 1,
                _ => lagging += 1,
            }
        }
    }
    Ok(pb::ClientsResponse {
        header: Some(ctx.header(read_at)),
        path: path.to_string(),
        latest_revision: latest,
        subscribers: rows,
        current,
        lagging,
        refusing,
        unreachable_nodes: unreachable,
    })
}

/// A node's subscribers of `path`, asked over its client port.
async fn ask(
    ctx: &ServiceContext,
    client_addr: &str,
    path: &str,
) -> Result<Vec<pb::SubscriberInfo>, String> {
    let channel = ctx.forwarder.client_channel(client_addr)?;
    let mut request = tonic::Request::new(pb::ClientsRequest {
        path: path.to_string(),
        local_only: true,
    });
    request.set_timeout(GATHER_TIMEOUT);
    let mut client = WatchClient::new(channel);
    let call = client.clients(request);
    match tokio::time::timeout(GATHER_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner().subscribers),
        Ok(Err(status)) => Err(status.message().to_string()),
        Err(_) => Err(format!("no answer within {GATHER_TIMEOUT:?}")),
    }
}

/// The wire row of one local subscription.
fn row(s: Subscriber, path: &NsPath, node_id: u64) -> pb::SubscriberInfo {
    let refusal = s.refusals.get(&path.to_string()).map(|r| pb::Refusal {
        revision: r.revision,
        path: r.path.clone(),
        reasons: r.reasons.clone(),
        watch_id: 0,
    });
    pb::SubscriberInfo {
        client_id: s.client_id,
        labels: s.labels.into_iter().collect(),
        node_id,
        applied_revision: s.acked_revision,
        connected: s.connected,
        last_refusal: refusal,
        paths: s.paths,
        updated_ms: s
            .updated
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        state: String::new(),
    }
}

/// One row per client id and set of paths: the open one, else the one that
/// acknowledged most; sorted by client id.
fn merge(rows: Vec<pb::SubscriberInfo>) -> Vec<pb::SubscriberInfo> {
    let mut best: BTreeMap<(String, Vec<String>), pb::SubscriberInfo> = BTreeMap::new();
    for r in rows {
        let mut paths = r.paths.clone();
        paths.sort();
        let key = (r.client_id.clone(), paths);
        let better = best.get(&key).is_none_or(|b| {
            (r.connected, r.applied_revision, r.updated_ms)
                > (b.connected, b.applied_revision, b.updated_ms)
        });
        if better {
            best.insert(key, r);
        }
    }
    best.into_values().collect()
}

/// "refusing", "current" or "lagging" against the namespace's latest revision.
fn state_of(r: &pb::SubscriberInfo, latest: u64) -> &'static str {
    if r.last_refusal
        .as_ref()
        .is_some_and(|f| f.revision >= latest)
    {
        "refusing"
    } else if r.applied_revision >= latest {
        "current"
    } else {
        "lagging"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(client: &str, node: u64, applied: u64, connected: bool) -> pb::SubscriberInfo {
        pb::SubscriberInfo {
            client_id: client.into(),
            node_id: node,
            applied_revision: applied,
            connected,
            paths: vec!["t/e/".into()],
            ..Default::default()
        }
    }

    #[test]
    fn merging_prefers_the_open_stream_then_the_further_one() {
        let merged = merge(vec![
            info("b", 1, 9, false),
            info("b", 2, 5, true),
            info("a", 1, 3, true),
            info("a", 3, 4, true),
        ]);
        let seen: Vec<(String, u64)> = merged
            .iter()
            .map(|r| (r.client_id.clone(), r.node_id))
            .collect();
        assert_eq!(seen, [("a".to_string(), 3), ("b".to_string(), 2)]);
    }

    #[test]
    fn a_refusal_of_the_live_document_is_refusing_an_old_one_is_not() {
        let mut r = info("a", 1, 10, true);
        assert_eq!(state_of(&r, 10), "current");
        assert_eq!(state_of(&r, 11), "lagging");
        r.last_refusal = Some(pb::Refusal {
            revision: 11,
            path: "t/e/x".into(),
            reasons: vec![],
            watch_id: 0,
        });
        assert_eq!(state_of(&r, 11), "refusing");
        r.applied_revision = 12;
        assert_eq!(state_of(&r, 12), "current", "a later document was taken");
    }
}
