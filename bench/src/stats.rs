//! Latency summaries: nearest-rank percentiles over every sample (no
//! histogram buckets, so no rounding: runs are small enough to keep them all).

use std::time::{Duration, Instant};

/// Percentiles of one set of latency samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises `samples` (milliseconds; may be negative, see [`signed_ms`]).
    /// `None` when there are none.
    pub fn of(mut samples: Vec<f64>) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        Some(Summary {
            n,
            min: samples[0],
            mean: samples.iter().sum::<f64>() / n as f64,
            p50: percentile(&samples, 0.50),
            p90: percentile(&samples, 0.90),
            p99: percentile(&samples, 0.99),
            p999: percentile(&samples, 0.999),
            max: samples[n - 1],
        })
    }
}

/// The nearest-rank percentile `p` (0..=1) of sorted, non-empty `sorted`: the
/// smallest sample with at least `p` of all samples at or below it.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    // Integer nanoseconds over 1e6: 1.5 ms is exactly 1.5.
    d.as_nanos() as f64 / 1e6
}

/// `later - earlier` in milliseconds, negative when `later` came first (a
/// watcher can see a revision before the writer has read its put's reply).
pub fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => ms(d),
        None => -ms(earlier - later),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::of((1..=1000).map(f64::from).collect()).expect("samples");
        assert_eq!((s.n, s.min, s.max), (1000, 1.0, 1000.0));
        assert_eq!((s.p50, s.p90, s.p99, s.p999), (500.0, 900.0, 990.0, 999.0));
        assert_eq!(s.mean, 500.5);

        let s = Summary::of(vec![3.0, 1.0, 2.0]).expect("samples");
        assert_eq!((s.p50, s.p90, s.p999, s.max), (2.0, 3.0, 3.0, 3.0));
        let one = Summary::of(vec![-0.5]).expect("samples");
        assert_eq!((one.p50, one.p999), (-0.5, -0.5));
        assert!(Summary::of(Vec::new()).is_none());
    }

    #[test]
    fn signed_differences() {
        let a = Instant::now();
        let b = a + Duration::from_micros(1500);
        assert_eq!(signed_ms(b, a), 1.5);
        assert_eq!(signed_ms(a, b), -1.5);
    }
}
