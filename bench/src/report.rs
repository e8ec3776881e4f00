//! The figures of a run: an aligned text table for people, one JSON object
//! for scripts.

use serde_json::{json, Value};

use crate::stats::Summary;

/// One line of the table: one latency distribution.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was timed, e.g. `put` or `watch ack→recv`.
    pub scenario: String,
    /// Who drove it, e.g. `c=1` (tasks) or `w=10` (watchers).
    pub clients: String,
    /// Completed operations per second over the measured phase, where that
    /// means something (not for watch delivery).
    pub ops_per_sec: Option<f64>,
    pub latency: Summary,
}

/// Everything one invocation measured.
#[derive(Debug, Default)]
pub struct Report {
    /// Facts about the setup (server version, build profile, cores …), in order.
    pub setup: Vec<(String, String)>,
    pub rows: Vec<Row>,
    /// Things worth knowing about the figures (e.g. a snapshot mid-run).
    pub notes: Vec<String>,
}

const HEADINGS: [&str; 9] = [
    "scenario", "clients", "n", "ops/s", "p50", "p90", "p99", "p99.9", "max",
];

impl Report {
    pub fn setup(&mut self, key: &str, value: impl ToString) {
        self.setup.push((key.to_string(), value.to_string()));
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The human-readable form: setup lines, the table (latencies in ms), notes.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let key_width = self.setup.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &self.setup {
            out.push_str(&format!("{k:<key_width$}  {v}\n"));
        }
        out.push('\n');

        let mut cells: Vec<Vec<String>> = vec![HEADINGS.iter().map(|h| h.to_string()).collect()];
        for r in &self.rows {
            let l = &r.latency;
            cells.push(vec![
                r.scenario.clone(),
                r.clients.clone(),
                l.n.to_string(),
                r.ops_per_sec.map_or("-".to_string(), |o| format!("{o:.0}")),
                fmt_ms(l.p50),
                fmt_ms(l.p90),
                fmt_ms(l.p99),
                fmt_ms(l.p999),
                fmt_ms(l.max),
            ]);
        }
        let widths: Vec<usize> = (0..HEADINGS.len())
            .map(|c| {
                cells
                    .iter()
                    .map(|row| row[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (i, row) in cells.iter().enumerate() {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c < 2 {
                    // Text columns: left-aligned.
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                }
                line.push_str("  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
            if i == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        out.push_str("latencies in milliseconds\n");
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }

    /// The machine-readable form.
    pub fn to_json(&self) -> Value {
        let setup: serde_json::Map<String, Value> = self
            .setup
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let l = &r.latency;
                json!({
                    "scenario": r.scenario,
                    "clients": r.clients,
                    "n": l.n,
                    "ops_per_sec": r.ops_per_sec,
                    "min_ms": l.min,
                    "mean_ms": l.mean,
                    "p50_ms": l.p50,
                    "p90_ms": l.p90,
                    "p99_ms": l.p99,
                    "p999_ms": l.p999,
                    "max_ms": l.max,
                })
            })
            .collect();
        json!({ "setup": setup, "results": rows, "notes": self.notes })
    }
}

/// Three decimals below 10 ms (microsecond resolution), one above.
fn fmt_ms(v: f64) -> String {
    if v.abs() < 10.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut r = Report::default();
        r.setup("server", "raftconf 0.1.0");
        r.rows.push(Row {
            scenario: "put".into(),
            clients: "c=1".into(),
            ops_per_sec: Some(3123.4),
            latency: Summary::of(vec![0.25, 0.5, 12.34]).expect("samples"),
        });
        r.rows.push(Row {
            scenario: "watch ack→recv".into(),
            clients: "w=1".into(),
            ops_per_sec: None,
            latency: Summary::of(vec![-0.01]).expect("samples"),
        });
        r
    }

    #[test]
    fn table_columns_line_up() {
        let text = report().to_table();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("c=1") || l.contains("w=1"))
            .collect();
        assert_eq!(lines.len(), 2);
        // Right-aligned numbers: every row ends at the same column.
        assert_eq!(lines[0].chars().count(), lines[1].chars().count());
        assert!(
            lines[0].contains("3123") && lines[0].ends_with("12.3"),
            "{text}"
        );
        assert!(
            lines[1].contains(" - ") && lines[1].contains("-0.010"),
            "{text}"
        );
    }

    #[test]
    fn json_has_every_row() {
        let v = report().to_json();
        assert_eq!(v["setup"]["server"], "raftconf 0.1.0");
        assert_eq!(v["results"][0]["p50_ms"], 0.5);
        assert_eq!(v["results"][1]["ops_per_sec"], Value::Null);
    }
}
