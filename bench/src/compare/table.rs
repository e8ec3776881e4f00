//! Pairs the figures of the two systems round by round and prints the table:
//! each figure's median over the rounds for both, and the median of the
//! per-round ratios raftconf / etcd, checked against the target.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use super::scenarios::{Row, Target};
use super::systems::System;

/// One figure's values: (round, system) → value.
type Values = BTreeMap<(usize, System), f64>;

/// Every figure of a run, in the order first measured.
#[derive(Debug, Default)]
pub struct Results {
    keys: Vec<String>,
    /// key → (its row as first seen, its values).
    figures: BTreeMap<String, (Row, Values)>,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub scenario: char,
    pub label: String,
    pub etcd: Option<f64>,
    pub raftconf: Option<f64>,
    /// Median over the rounds of raftconf / etcd of the same round.
    pub ratio: Option<f64>,
    pub target: Target,
}

impl Line {
    /// Whether the ratio meets the target (`None`: no target or no ratio).
    pub fn met(&self) -> Option<bool> {
        let ratio = self.ratio?;
        match self.target {
            Target::AtMost(max) => Some(ratio <= max),
            Target::AtLeast(min) => Some(ratio >= min),
            Target::None => None,
        }
    }
}

impl Results {
    /// Adds the figures one step measured for `system` in `round`.
    pub fn add(&mut self, round: usize, system: System, rows: Vec<Row>) {
        for row in rows {
            let key = row.key.clone();
            let value = row.value;
            let entry = self.figures.entry(key.clone()).or_insert_with(|| {
                self.keys.push(key);
                (row, BTreeMap::new())
            });
            entry.1.insert((round, system), value);
        }
    }

    /// The table's lines, in measuring order.
    pub fn lines(&self) -> Vec<Line> {
        self.keys
            .iter()
            .map(|key| {
                let (row, values) = &self.figures[key];
                let of = |system: System| -> Vec<(usize, f64)> {
                    values
                        .iter()
                        .filter(|((_, s), _)| *s == system)
                        .map(|((round, _), v)| (*round, *v))
                        .collect()
                };
                let etcd = of(System::Etcd);
                let raftconf = of(System::Raftconf);
                let ratios: Vec<f64> = raftconf
                    .iter()
                    .filter_map(|(round, r)| {
                        let (_, e) = etcd.iter().find(|(er, _)| er == round)?;
                        (*e != 0.0).then(|| r / e)
                    })
                    .collect();
                Line {
                    scenario: row.scenario,
                    label: row.label.clone(),
                    etcd: median(etcd.iter().map(|(_, v)| *v).collect()),
                    raftconf: median(raftconf.iter().map(|(_, v)| *v).collect()),
                    ratio: median(ratios),
                    target: row.target,
                }
            })
            .collect()
    }

    /// The table in Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "| # | figure | etcd | raftconf | raftconf / etcd | target | met |\n\
             |---|---|---:|---:|---:|---|---|\n",
        );
        for line in self.lines() {
            let target = match line.target {
                Target::AtMost(x) => format!("≤ {x}"),
                Target::AtLeast(x) => format!("≥ {x}"),
                Target::None => "—".into(),
            };
            let met = match line.met() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {target} | {met} |",
                line.scenario,
                line.label,
                figure(line.etcd),
                figure(line.raftconf),
                line.ratio.map_or("—".into(), |r| format!("{r:.2}")),
            );
        }
        out
    }

    /// The table as JSON: one object per line, plus every round's raw value.
    pub fn to_json(&self) -> Value {
        let lines: Vec<Value> = self
            .lines()
            .into_iter()
            .zip(&self.keys)
            .map(|(line, key)| {
                let raw: Vec<Value> = self.figures[key]
                    .1
                    .iter()
                    .map(|((round, system), v)| json!({"round": round, "system": system.to_string(), "value": v}))
                    .collect();
                json!({
                    "key": key,
                    "scenario": line.scenario.to_string(),
                    "figure": line.label,
                    "etcd": line.etcd,
                    "raftconf": line.raftconf,
                    "ratio": line.ratio,
                    "met": line.met(),
                    "rounds": raw,
                })
            })
            .collect();
        Value::Array(lines)
    }
}

/// A figure with about three significant digits.
fn figure(value: Option<f64>) -> String {
    match value {
        None => "—".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The median (the mean of the two middle values for an even count).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(key: &str, value: f64, target: Target) -> Row {
        Row {
            key: key.into(),
            scenario: 'a',
            label: key.into(),
            value,
            target,
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn ratios_pair_rounds_and_take_the_median() {
        let mut results = Results::default();
        // Round 0: raftconf twice as slow; rounds 1 and 2: half as slow.
        for (round, etcd, raftconf) in [(0, 1.0, 2.0), (1, 2.0, 1.0), (2, 4.0, 2.0)] {
            results.add(
                round,
                System::Etcd,
                vec![r("lat", etcd, Target::AtMost(0.75))],
            );
            results.add(
                round,
                System::Raftconf,
                vec![r("lat", raftconf, Target::AtMost(0.75))],
            );
        }
        results.add(0, System::Raftconf, vec![r("only", 5.0, Target::None)]);
        let lines = results.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].etcd, Some(2.0));
        assert_eq!(lines[0].raftconf, Some(2.0));
        // Ratios 2.0, 0.5, 0.5: the median pair, not the ratio of medians.
        assert_eq!(lines[0].ratio, Some(0.5));
        assert_eq!(lines[0].met(), Some(true));
        assert_eq!(
            (lines[1].etcd, lines[1].ratio, lines[1].met()),
            (None, None, None)
        );
        let table = results.to_markdown();
        assert!(
            table.contains("| a | lat | 2.000 | 2.000 | 0.50 | ≤ 0.75 | yes |"),
            "{table}"
        );
        assert!(
            table.contains("| a | only | — | 5.000 | — | — |  |"),
            "{table}"
        );
    }

    #[test]
    fn missed_targets_are_marked() {
        let mut results = Results::default();
        results.add(
            0,
            System::Etcd,
            vec![r("tput", 100.0, Target::AtLeast(1.5))],
        );
        results.add(
            0,
            System::Raftconf,
            vec![r("tput", 120.0, Target::AtLeast(1.5))],
        );
        assert_eq!(results.lines()[0].met(), Some(false));
        assert!(results.to_markdown().contains("| 1.20 | ≥ 1.5 | **no** |"));
    }
}
