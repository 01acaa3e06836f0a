//! Summaries of a series of samples: mean, median, 95th percentile.

use std::time::Duration;

/// Summary of cycle times, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean_ms: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

/// Summarises `samples`; `None` when there are none.
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    if ms.is_empty() {
        return None;
    }
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let mean_ms = ms.iter().sum::<f64>() / n as f64;
    Some(Summary {
        n,
        mean_ms,
        median_ms: percentile(&ms, 50.0),
        p95_ms: percentile(&ms, 95.0),
        min_ms: ms[0],
        max_ms: ms[n - 1],
    })
}

/// Nearest-rank percentile of sorted, non-empty `sorted`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil();
    // Truncation is intended: rank is a small positive whole number.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let idx = (rank as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Median of KiB figures; `None` when empty.
pub fn median_u64(values: &[u64]) -> Option<u64> {
    let mut v = values.to_vec();
    v.sort_unstable();
    v.get(v.len().checked_sub(1)? / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_one_to_hundred() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summarize(&samples).unwrap();
        assert_eq!(s.n, 100);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
        assert!((s.median_ms - 50.0).abs() < 1e-9);
        assert!((s.p95_ms - 95.0).abs() < 1e-9);
        assert!((s.min_ms - 1.0).abs() < 1e-9 && (s.max_ms - 100.0).abs() < 1e-9);
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(summarize(&[]), None);
        let s = summarize(&[Duration::from_millis(7)]).unwrap();
        assert!((s.p95_ms - 7.0).abs() < 1e-9 && (s.median_ms - 7.0).abs() < 1e-9);
        assert_eq!(median_u64(&[]), None);
        assert_eq!(median_u64(&[5, 1, 3]), Some(3));
    }
}
