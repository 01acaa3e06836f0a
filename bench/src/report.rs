//! The result table (Markdown, so it can be pasted into docs/PERFORMANCE.md).

use std::fmt::Write;

use crate::memlimit::MinLimit;
use crate::stats::Summary;

/// One runtime in one variant (plain, or with the seccomp profile).
#[derive(Debug, Clone)]
pub struct Row {
    pub runtime: String,
    pub variant: String,
    pub summary: Option<Summary>,
    /// Cycles that failed (not counted in the summary).
    pub failures: usize,
    pub rss_median_kib: Option<u64>,
    pub rss_max_kib: Option<u64>,
    pub min_limit: Option<MinLimit>,
    /// Median ms of create, start, wait and delete (create-start cycles only).
    pub phase_medians_ms: Option<[f64; 4]>,
}

/// Renders `rows` as a Markdown table; `rss_of` names the command whose RSS is shown.
pub fn render(rows: &[Row], rss_of: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| runtime | variant | cycles ok/failed | mean ms | median ms | p95 ms | vs crun | vs runc \
         | `{rss_of}` peak RSS median (max) | min memory limit |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let ok = row.summary.map_or(0, |s| s.n);
        let (mean, median, p95) = row
            .summary
            .map_or(("-".into(), "-".into(), "-".into()), |s| {
                (ms(s.mean_ms), ms(s.median_ms), ms(s.p95_ms))
            });
        let rss = match (row.rss_median_kib, row.rss_max_kib) {
            (Some(m), Some(x)) => format!("{} ({})", mib(m), mib(x)),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {ok}/{} | {mean} | {median} | {p95} | {} | {} | {rss} | {} |",
            row.runtime,
            row.variant,
            row.failures,
            ratio(rows, row, "crun"),
            ratio(rows, row, "runc"),
            row.min_limit.map_or_else(|| "-".into(), limit),
        );
    }
    out
}

/// Renders the median time of each step of a create-start cycle, when measured.
pub fn render_phases(rows: &[Row]) -> String {
    let mut out = String::new();
    if rows.iter().all(|r| r.phase_medians_ms.is_none()) {
        return out;
    }
    let _ = writeln!(
        out,
        "| runtime | variant | create ms | start ms | wait ms | delete ms |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in rows {
        if let Some([c, s, w, d]) = row.phase_medians_ms {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.runtime,
                row.variant,
                ms(c),
                ms(s),
                ms(w),
                ms(d)
            );
        }
    }
    out
}

/// Mean of `row` over the mean of runtime `reference` in the same variant.
fn ratio(rows: &[Row], row: &Row, reference: &str) -> String {
    let reference = rows
        .iter()
        .find(|r| r.runtime == reference && r.variant == row.variant)
        .and_then(|r| r.summary);
    match (row.summary, reference) {
        (Some(a), Some(b)) if b.mean_ms > 0.0 => format!("{:.2}x", a.mean_ms / b.mean_ms),
        _ => "-".into(),
    }
}

fn ms(v: f64) -> String {
    format!("{v:.2}")
}

fn mib(kib: u64) -> String {
    format!("{:.2} MiB", kib as f64 / 1024.0)
}

fn limit(l: MinLimit) -> String {
    let m = |b: u64| format!("{:.2} MiB", b as f64 / f64::from(1u32 << 20));
    match l {
        MinLimit::Found(b) => m(b),
        MinLimit::AtMost(b) => format!("<= {}", m(b)),
        MinLimit::Above(b) => format!("> {}", m(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(runtime: &str, mean: f64) -> Row {
        Row {
            runtime: runtime.into(),
            variant: "plain".into(),
            summary: Some(Summary {
                n: 10,
                mean_ms: mean,
                median_ms: mean,
                p95_ms: mean,
                min_ms: mean,
                max_ms: mean,
            }),
            failures: 0,
            rss_median_kib: Some(3 * 1024),
            rss_max_kib: Some(4 * 1024),
            min_limit: Some(MinLimit::Found(1 << 20)),
            phase_medians_ms: Some([1.0, 2.0, 3.0, 4.5]),
        }
    }

    #[test]
    fn ratios_against_crun_and_runc() {
        let rows = vec![row("crun", 10.0), row("runc", 40.0), row("berth", 8.0)];
        let text = render(&rows, "create");
        let berth = text.lines().find(|l| l.starts_with("| berth")).unwrap();
        assert!(berth.contains("| 0.80x | 0.20x |"), "{berth}");
        assert!(berth.contains("3.00 MiB (4.00 MiB)"), "{berth}");
        assert!(berth.contains("| 1.00 MiB |"), "{berth}");
        assert!(text.contains("`create` peak RSS"));
        let phases = render_phases(&rows);
        assert!(
            phases.contains("| berth | plain | 1.00 | 2.00 | 3.00 | 4.50 |"),
            "{phases}"
        );
        let mut none = rows[0].clone();
        none.phase_medians_ms = None;
        assert_eq!(render_phases(&[none]), "");
    }

    #[test]
    fn missing_reference_and_failed_rows() {
        let mut failed = row("x", 1.0);
        failed.summary = None;
        failed.failures = 3;
        failed.min_limit = Some(MinLimit::Above(64 << 20));
        let text = render(&[failed], "run");
        assert!(
            text.contains("| x | plain | 0/3 | - | - | - | - | - |"),
            "{text}"
        );
        assert!(text.contains("> 64.00 MiB"), "{text}");
    }
}
