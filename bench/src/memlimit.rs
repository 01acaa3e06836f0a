//! Bisection of the smallest `linux.resources.memory.limit` (with `swap` equal) under
//! which a full cycle of `true` succeeds and `true` exits 0.

use std::path::Path;
use std::time::Duration;

use crate::bundle::{Bundle, BundleError, ConfigTweaks};
use crate::cycle::{self, Mode};
use crate::runtime::Runtime;

/// Bounds and step of the search.
#[derive(Debug, Clone, Copy)]
pub struct Search {
    /// Resolution in bytes (a multiple of the page size).
    pub step: u64,
    /// The largest limit tried; a runtime that fails here is reported as such.
    pub ceiling: u64,
    /// How many times the answer must pass in a row.
    pub confirm: u32,
    pub mode: Mode,
    pub timeout: Duration,
}

/// What the search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinLimit {
    /// The smallest passing limit, to within one step.
    Found(u64),
    /// Even the smallest limit tried (one step) passed.
    AtMost(u64),
    /// The ceiling failed.
    Above(u64),
}

/// Finds the smallest limit for `rt`, writing configs into `dir` from `bundle`/`tweaks`.
pub fn find_min_limit(
    rt: &Runtime,
    bundle: &Bundle,
    dir: &Path,
    tweaks: &ConfigTweaks,
    search: &Search,
    log: &mut dyn FnMut(u64, bool),
) -> Result<MinLimit, BundleError> {
    let mut n = 0u32;
    let mut probe = |limit: u64| -> Result<bool, BundleError> {
        let t = ConfigTweaks {
            memory_limit: Some(limit),
            ..tweaks.clone()
        };
        bundle.write_config(dir, &t)?;
        n += 1;
        let id = format!("mem{n}");
        let ok = cycle::run_cycle(rt, dir, &id, search.mode, search.timeout)
            .is_ok_and(|s| s.exit_code == 0);
        log(limit, ok);
        Ok(ok)
    };
    bisect(search, &mut probe)
}

/// The search itself over any `probe` (limit -> passed).
fn bisect(
    search: &Search,
    probe: &mut dyn FnMut(u64) -> Result<bool, BundleError>,
) -> Result<MinLimit, BundleError> {
    let step = search.step.max(4096).next_multiple_of(4096);
    // Both bounds stay multiples of `step`, so a midpoint always lies strictly between.
    let ceiling = search.ceiling.max(2 * step).next_multiple_of(step);
    if !probe(ceiling)? {
        return Ok(MinLimit::Above(ceiling));
    }
    if probe(step)? {
        return Ok(MinLimit::AtMost(step));
    }
    let (mut lo, mut hi) = (step, ceiling);
    loop {
        while hi - lo > step {
            let mid = (lo + (hi - lo) / 2) / step * step;
            let mid = mid.clamp(lo + step, hi - step);
            if probe(mid)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        // Near the edge a run can pass by luck: the answer must pass `confirm` times.
        let mut steady = true;
        for _ in 1..search.confirm {
            if !probe(hi)? {
                steady = false;
                break;
            }
        }
        if steady {
            return Ok(MinLimit::Found(hi));
        }
        if hi + step > ceiling {
            return Ok(MinLimit::Above(ceiling));
        }
        lo = hi;
        hi = (hi + 4 * step).min(ceiling);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search() -> Search {
        Search {
            step: 16 << 10,
            ceiling: 64 << 20,
            confirm: 3,
            mode: Mode::CreateStart,
            timeout: Duration::from_secs(1),
        }
    }

    fn run(threshold: u64) -> (MinLimit, usize) {
        let mut calls = 0;
        let mut probe = |l: u64| {
            calls += 1;
            Ok(l >= threshold)
        };
        let got = bisect(&search(), &mut probe).unwrap();
        (got, calls)
    }

    #[test]
    fn finds_threshold_to_one_step() {
        let threshold = 7 * 1024 * 1024 + 5000;
        let (got, calls) = run(threshold);
        let MinLimit::Found(v) = got else {
            panic!("{got:?}")
        };
        assert!((threshold..threshold + (16 << 10)).contains(&v), "{v}");
        assert!(calls < 20, "{calls} probes");
    }

    #[test]
    fn edges() {
        assert_eq!(run(1).0, MinLimit::AtMost(16 << 10));
        assert_eq!(run(u64::MAX).0, MinLimit::Above(64 << 20));
    }

    #[test]
    fn flaky_edge_moves_up() {
        // Passes at >= 1 MiB, but 1 MiB itself fails every second time.
        let mut at_edge = 0;
        let mut probe = |l: u64| {
            if l == 1 << 20 {
                at_edge += 1;
                return Ok(at_edge % 2 == 1);
            }
            Ok(l > 1 << 20)
        };
        let got = bisect(&search(), &mut probe).unwrap();
        let MinLimit::Found(v) = got else {
            panic!("{got:?}")
        };
        assert!(v > 1 << 20 && v <= (1 << 20) + 4 * (16 << 10), "{v}");
    }
}
