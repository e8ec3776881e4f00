//! Closed-loop load: `tasks` tasks share one [`Client`] (one HTTP/2
//! connection per server) and each issues its operations one after another,
//! timing every call from just before it is made to its reply.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use raftconf_client::Client;
use serde_json::{json, Value};

use crate::stats::ms;

/// The operation a load run repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// An unconditional put of a [`document`].
    Put,
    /// A linearizable get.
    Get,
}

/// What one load run measured.
#[derive(Debug)]
pub struct LoadRun {
    /// One per measured operation, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Wall time of the measured phase (all tasks).
    pub elapsed: Duration,
}

impl LoadRun {
    /// Completed operations per second over the measured phase.
    pub fn ops_per_sec(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How a load run is laid out.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Concurrent tasks.
    pub tasks: usize,
    /// Measured operations, over all tasks.
    pub count: usize,
    /// Unmeasured operations first, one by one.
    pub warmup: usize,
    /// Size of each written document.
    pub doc_bytes: usize,
    /// Each task's pause after each measured operation (not timed).
    pub pause: Duration,
}

/// Runs `warmup` unmeasured operations one by one, then `count` measured ones
/// spread over `tasks` concurrent tasks. `path` must exist for [`Op::Get`].
/// The first failing operation ends the run with its error.
pub async fn run(client: &Client, op: Op, path: &str, shape: Shape) -> Result<LoadRun> {
    let Shape {
        tasks,
        count,
        warmup,
        doc_bytes,
        pause,
    } = shape;
    for i in 0..warmup {
        once(client, op, path, &document(doc_bytes, i as u64)).await?;
    }
    let tasks = tasks.clamp(1, count.max(1));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        // Spread the remainder over the first tasks.
        let n = count / tasks + usize::from(t < count % tasks);
        let client = client.clone();
        let path = path.to_string();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n);
            for i in 0..n {
                // Built before the clock starts: only the call is timed.
                let doc = document(doc_bytes, (t * n + i) as u64);
                let t0 = Instant::now();
                once(&client, op, &path, &doc).await?;
                latencies.push(ms(t0.elapsed()));
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies_ms = Vec::with_capacity(count);
    for h in handles {
        latencies_ms.extend(h.await.context("load task panicked")??);
    }
    Ok(LoadRun {
        latencies_ms,
        elapsed: started.elapsed(),
    })
}

/// One operation (`doc` is what a put writes).
async fn once(client: &Client, op: Op, path: &str, doc: &Value) -> Result<()> {
    match op {
        Op::Put => {
            client
                .put(path, doc)
                .await
                .with_context(|| format!("put {path}"))?;
        }
        Op::Get => {
            client
                .get(path)
                .await
                .with_context(|| format!("get {path}"))?;
        }
    }
    Ok(())
}

/// [`document`] as canonical JSON text, made without building the `Value`
/// (the compare step hands raftconf's client a ready text, as etcd's driver
/// gets ready bytes).
pub fn document_text(bytes: usize, seq: u64) -> String {
    let head = r#"{"feature_flags":{"dark_mode":false,"new_pricing":true},"pad":""#;
    let tail = format!(
        r#"","pool":{{"max":32,"min":4}},"retries":3,"seq":{seq},"service":"checkout","timeout_ms":250}}"#
    );
    let pad = bytes.saturating_sub(head.len() + tail.len());
    let mut text = String::with_capacity(head.len() + pad + tail.len());
    text.push_str(head);
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str(&tail);
    text
}

/// A configuration-like document of about `bytes` bytes of JSON (exactly,
/// unless the fixed fields alone are longer). `seq` makes each one differ.
pub fn document(bytes: usize, seq: u64) -> Value {
    let mut doc = json!({
        "service": "checkout",
        "timeout_ms": 250,
        "retries": 3,
        "pool": { "min": 4, "max": 32 },
        "feature_flags": { "new_pricing": true, "dark_mode": false },
        "seq": seq,
        "pad": "",
    });
    let base = doc.to_string().len();
    doc["pad"] = Value::String("x".repeat(bytes.saturating_sub(base)));
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_have_the_asked_size() {
        for seq in [0, 7, 123_456_789] {
            assert_eq!(document(200, seq).to_string().len(), 200);
        }
        for (bytes, seq) in [(256, 0), (256, 7), (200, 123_456_789), (10, 1)] {
            assert_eq!(
                document_text(bytes, seq),
                document(bytes, seq).to_string(),
                "{bytes} bytes, seq {seq}"
            );
        }
        let tiny = document(10, 1);
        assert_eq!(tiny["pad"], "");
        assert_ne!(document(200, 1), document(200, 2));
    }

    #[test]
    fn throughput_counts_measured_operations() {
        let run = LoadRun {
            latencies_ms: vec![1.0; 500],
            elapsed: Duration::from_millis(250),
        };
        assert_eq!(run.ops_per_sec(), 2000.0);
    }
}
