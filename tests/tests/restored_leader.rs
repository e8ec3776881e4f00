//! A leader that takes its leadership back on restart (openraft does when its
//! persisted vote is its own) must not serve a linearizable read older than a
//! write it acknowledged before the crash. The fault suite found this after a
//! whole-cluster kill -9: the committed index is not persisted, the state
//! machine (sled buffers its writes) restarted behind the log, and openraft's
//! read index for a restored leader is only the first entry of its term.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raftconf_client::{Client, ClientOptions};
use raftconf_tests::{create_env, Cluster};
use serde_json::json;

#[test]
fn a_restored_leader_never_reads_behind_an_acknowledged_write() -> Result<()> {
    let mut c = Cluster::start(3)?;
    let all = c.endpoints().join(",");
    create_env(&all, "pay", "prod")?;
    let rt = tokio::runtime::Runtime::new()?;
    for round in 0..3 {
        let leader = c.wait_agreed_leader(Duration::from_secs(30))?;
        let leader_addr = c.nodes[leader].addr.clone();
        // Writes through the leader alone, as fast as they are acknowledged,
        // so the last ones are in sled's buffers when every node dies.
        let last = rt.block_on(async {
            let client = Client::connect_with([leader_addr.as_str()], ClientOptions::default())
                .await
                .context("connect")?;
            let mut last = None;
            let until = Instant::now() + Duration::from_millis(800);
            let mut i = 0u64;
            while Instant::now() < until {
                i += 1;
                let value = json!({ "round": round, "i": i });
                let w = client.put("pay/prod/a", &value).await.context("put")?;
                last = Some((value, w.revision));
            }
            anyhow::Ok(last.context("at least one write")?)
        })?;
        for node in &mut c.nodes {
            node.kill()?;
        }
        for node in &mut c.nodes {
            node.restart_no_wait()?;
        }
        // The first linearizable read the old leader answers after the restart.
        let read = rt.block_on(async {
            let options = ClientOptions::default().call_timeout(Duration::from_secs(20));
            let client = Client::connect_with([leader_addr.as_str()], options).await?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match client.get("pay/prod/a").await {
                    Ok(doc) => return anyhow::Ok(doc),
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => bail!("no read within 30 s: {e}"),
                }
            }
        })?;
        assert!(
            read.mod_revision >= last.1,
            "round {round}: read {} (revision {}) after the acknowledged write {} at revision {}",
            read.value,
            read.mod_revision,
            last.0,
            last.1
        );
        c.wait_ready(Duration::from_secs(30))?;
    }
    Ok(())
}
