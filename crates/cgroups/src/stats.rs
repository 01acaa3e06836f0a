//! Statistics in the shape of runc's `events --stats` (`types.Stats`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cgroup::Cgroup;
use crate::cgroupfs::{CgroupDir, keyed_values, parse_u64};
use crate::controller::Ctrl;
use crate::error::CgroupError;
use crate::hierarchy::Flavor;

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if signature
fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Resource usage of a container's cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: CpuStats,
    /// Memory usage.
    pub memory: MemoryStats,
    /// Process count.
    pub pids: PidsStats,
    /// Block I/O.
    pub blkio: BlkioStats,
    /// Huge pages, by page size (`2MB`).
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

/// CPU usage in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Per CPU (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Kernel-mode time.
    pub kernel: u64,
    /// User-mode time.
    pub user: u64,
}

/// CFS throttling counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Throttling {
    /// Enforcement periods.
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the group was throttled.
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Time throttled, nanoseconds.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// CPU statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    /// Usage.
    pub usage: CpuUsage,
    /// Throttling.
    pub throttling: Throttling,
}

/// One memory counter set; `limit` is `u64::MAX` when unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEntry {
    /// Limit in bytes.
    pub limit: u64,
    /// Current usage.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak usage.
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Times the limit was hit.
    pub failcnt: u64,
}

/// Memory statistics. `swap` is memory+swap, as on v1 (v2 values are summed to match).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    /// Page cache.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory + swap.
    pub swap: MemoryEntry,
    /// Kernel memory (v1).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffers (v1).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Process counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    /// Processes now.
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// Limit (0: none).
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// One block I/O counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    /// Device major.
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    /// Device minor.
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// `Read`, `Write`, ...
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// The count.
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Block I/O statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlkioStats {
    /// Bytes by device and operation.
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations by device and operation.
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// Huge page usage for one page size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HugetlbStats {
    /// Bytes in use.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak (v1) bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Allocation failures.
    pub failcnt: u64,
}

/// Stats files, one row per item: v1 file, v2 file.
const CPU_USAGE: (&str, &str) = ("cpuacct.usage", "cpu.stat");
const MEM_STAT: (&str, &str) = ("memory.stat", "memory.stat");
const PIDS: (&str, &str) = ("pids.current", "pids.current");
const OOM: (&str, &str) = ("memory.oom_control", "memory.events");
/// v1 blkio files by preference: CFQ, BFQ, throttle (which counts every device).
const BLKIO_V1: &[(&str, &str)] = &[
    (
        "blkio.io_service_bytes_recursive",
        "blkio.io_serviced_recursive",
    ),
    (
        "blkio.bfq.io_service_bytes_recursive",
        "blkio.bfq.io_serviced_recursive",
    ),
    (
        "blkio.throttle.io_service_bytes_recursive",
        "blkio.throttle.io_serviced_recursive",
    ),
];
/// v1 memory counter sets: stats field, file prefix.
const MEM_V1: &[&str] = &["memory", "memory.memsw", "memory.kmem", "memory.kmem.tcp"];
/// USER_HZ, the unit of cpuacct.stat.
const USER_HZ: u64 = 100;

impl Cgroup {
    fn stat_dir(&self, ctrl: Ctrl) -> Result<Option<(CgroupDir, Flavor)>, CgroupError> {
        match self.locate(ctrl) {
            Some(d) if d.path.is_dir() => Ok(Some((CgroupDir::open(&d.path)?, d.flavor))),
            _ => Ok(None),
        }
    }

    /// Reads cpu, memory, pids, blkio and hugetlb statistics; a controller the host lacks
    /// leaves its part at zero.
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        let mut s = Stats::default();
        if let Some((d, fl)) = self.stat_dir(Ctrl::Cpuacct)? {
            s.cpu.usage = cpu_usage(&d, fl)?;
        }
        if let Some((d, _)) = self.stat_dir(Ctrl::Cpu)? {
            for (k, v) in keyed_values(&d.read_opt("cpu.stat")?.unwrap_or_default()) {
                match k {
                    "nr_periods" => s.cpu.throttling.periods = v,
                    "nr_throttled" => s.cpu.throttling.throttled_periods = v,
                    "throttled_time" => s.cpu.throttling.throttled_time = v,
                    "throttled_usec" => s.cpu.throttling.throttled_time = v * 1000,
                    _ => {}
                }
            }
        }
        if let Some((d, fl)) = self.stat_dir(Ctrl::Memory)? {
            s.memory = memory(&d, fl)?;
        }
        if let Some((d, fl)) = self.stat_dir(Ctrl::Pids)? {
            let pick = |(a, b): (&'static str, &'static str)| if fl == Flavor::V1 { a } else { b };
            s.pids.current = d.read_u64(pick(PIDS))?.unwrap_or(0);
            s.pids.limit = d.read_u64("pids.max")?.unwrap_or(0);
        }
        if let Some((d, fl)) = self.stat_dir(Ctrl::Blkio)? {
            s.blkio = blkio(&d, fl)?;
        }
        if let Some((d, fl)) = self.stat_dir(Ctrl::Hugetlb)? {
            s.hugetlb = hugetlb(&d, fl)?;
        }
        Ok(s)
    }

    /// How many processes the OOM killer killed in this cgroup.
    pub fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        let Some((d, fl)) = self.stat_dir(Ctrl::Memory)? else {
            return Ok(0);
        };
        let file = if fl == Flavor::V1 { OOM.0 } else { OOM.1 };
        let text = d.read(file)?;
        Ok(keyed_values(&text)
            .find(|(k, _)| *k == "oom_kill")
            .map_or(0, |(_, v)| v))
    }
}

fn cpu_usage(d: &CgroupDir, fl: Flavor) -> Result<CpuUsage, CgroupError> {
    let mut u = CpuUsage::default();
    if fl == Flavor::V1 {
        u.total = d.read_u64(CPU_USAGE.0)?.unwrap_or(0);
        if let Some(per) = d.read_opt("cpuacct.usage_percpu")? {
            u.percpu = per
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
        }
        for (k, v) in keyed_values(&d.read_opt("cpuacct.stat")?.unwrap_or_default()) {
            let ns = v * (1_000_000_000 / USER_HZ);
            match k {
                "user" => u.user = ns,
                "system" => u.kernel = ns,
                _ => {}
            }
        }
        return Ok(u);
    }
    for (k, v) in keyed_values(&d.read(CPU_USAGE.1)?) {
        match k {
            "usage_usec" => u.total = v * 1000,
            "user_usec" => u.user = v * 1000,
            "system_usec" => u.kernel = v * 1000,
            _ => {}
        }
    }
    Ok(u)
}

/// Reads a file holding one number, `max`/`-1` as `u64::MAX`, missing as 0.
fn number_or_max(d: &CgroupDir, file: &str) -> Result<u64, CgroupError> {
    match d.read_opt(file)? {
        None => Ok(0),
        Some(t) => parse_u64(t.trim())
            .map(|v| v.unwrap_or(u64::MAX))
            .map_err(|()| d.parse_error(file, t.trim())),
    }
}

fn memory(d: &CgroupDir, fl: Flavor) -> Result<MemoryStats, CgroupError> {
    let mut m = MemoryStats::default();
    let pick = |(a, b): (&'static str, &'static str)| if fl == Flavor::V1 { a } else { b };
    m.raw = keyed_values(&d.read(pick(MEM_STAT))?)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    if fl == Flavor::V1 {
        m.cache = m.raw.get("cache").copied().unwrap_or(0);
        let mut entries = MEM_V1
            .iter()
            .map(|prefix| -> Result<MemoryEntry, CgroupError> {
                Ok(MemoryEntry {
                    limit: number_or_max(d, &format!("{prefix}.limit_in_bytes"))?,
                    usage: number_or_max(d, &format!("{prefix}.usage_in_bytes"))?,
                    max: number_or_max(d, &format!("{prefix}.max_usage_in_bytes"))?,
                    failcnt: number_or_max(d, &format!("{prefix}.failcnt"))?,
                })
            });
        let mut next = || entries.next().unwrap_or(Ok(MemoryEntry::default()));
        m.usage = next()?;
        m.swap = next()?;
        m.kernel = next()?;
        m.kernel_tcp = next()?;
        return Ok(m);
    }
    m.cache = m.raw.get("file").copied().unwrap_or(0);
    let events = d.read_opt("memory.events")?.unwrap_or_default();
    m.usage = MemoryEntry {
        limit: number_or_max(d, "memory.max")?,
        usage: number_or_max(d, "memory.current")?,
        max: number_or_max(d, "memory.peak")?,
        failcnt: keyed_values(&events)
            .find(|(k, _)| *k == "max")
            .map_or(0, |(_, v)| v),
    };
    // Report memory+swap, as v1 does.
    m.swap = MemoryEntry {
        limit: number_or_max(d, "memory.swap.max")?.saturating_add(m.usage.limit),
        usage: number_or_max(d, "memory.swap.current")?.saturating_add(m.usage.usage),
        max: 0,
        failcnt: 0,
    };
    Ok(m)
}

/// v1 `maj:min Op value` lines (skipping the `Total` line).
fn blkio_v1_entries(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, op, value) = (f.next()?, f.next()?, f.next()?);
            let (maj, min) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: op.to_owned(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

fn blkio(d: &CgroupDir, fl: Flavor) -> Result<BlkioStats, CgroupError> {
    let mut b = BlkioStats::default();
    if fl == Flavor::V1 {
        for (bytes, ios) in BLKIO_V1 {
            let Some(text) = d.read_opt(bytes)? else {
                continue;
            };
            let entries = blkio_v1_entries(&text);
            if entries.is_empty() && d.has(BLKIO_V1[2].0) && *bytes != BLKIO_V1[2].0 {
                continue;
            }
            b.io_service_bytes_recursive = entries;
            b.io_serviced_recursive = blkio_v1_entries(&d.read_opt(ios)?.unwrap_or_default());
            break;
        }
        return Ok(b);
    }
    // v2 io.stat: `maj:min rbytes=.. wbytes=.. rios=.. wios=.. ...`
    for line in d.read_opt("io.stat")?.unwrap_or_default().lines() {
        let mut f = line.split_whitespace();
        let Some((maj, min)) = f.next().and_then(|dev| dev.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else {
            continue;
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                "rios" => (&mut b.io_serviced_recursive, "Read"),
                "wios" => (&mut b.io_serviced_recursive, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_owned(),
                value,
            });
        }
    }
    Ok(b)
}

fn hugetlb(d: &CgroupDir, fl: Flavor) -> Result<BTreeMap<String, HugetlbStats>, CgroupError> {
    let limit_suffix = if fl == Flavor::V1 {
        ".limit_in_bytes"
    } else {
        ".max"
    };
    let entries = std::fs::read_dir(d.path()).map_err(|source| CgroupError::Read {
        path: d.path().to_path_buf(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(size) = name
            .strip_prefix("hugetlb.")
            .and_then(|r| r.strip_suffix(limit_suffix))
            .filter(|s| !s.contains('.'))
        else {
            continue;
        };
        let h = if fl == Flavor::V1 {
            HugetlbStats {
                usage: number_or_max(d, &format!("hugetlb.{size}.usage_in_bytes"))?,
                max: number_or_max(d, &format!("hugetlb.{size}.max_usage_in_bytes"))?,
                failcnt: number_or_max(d, &format!("hugetlb.{size}.failcnt"))?,
            }
        } else {
            let events = d
                .read_opt(&format!("hugetlb.{size}.events"))?
                .unwrap_or_default();
            HugetlbStats {
                usage: number_or_max(d, &format!("hugetlb.{size}.current"))?,
                max: 0,
                failcnt: keyed_values(&events)
                    .find(|(k, _)| *k == "max")
                    .map_or(0, |(_, v)| v),
            }
        };
        out.insert(size.to_owned(), h);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_blkio_lines() {
        let e = blkio_v1_entries("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].major, e[0].minor, e[0].op.as_str(), e[0].value),
            (8, 0, "Read", 4096)
        );
    }

    #[test]
    fn serializes_in_runc_shape() {
        let mut s = Stats::default();
        s.cpu.usage.total = 5;
        s.cpu.throttling.throttled_periods = 2;
        s.memory.kernel_tcp.limit = 1;
        s.pids.current = 3;
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["cpu"]["usage"]["total"], 5);
        assert_eq!(v["cpu"]["usage"]["kernel"], 0);
        assert_eq!(v["cpu"]["throttling"]["throttledPeriods"], 2);
        assert_eq!(v["memory"]["kernelTCP"]["limit"], 1);
        assert_eq!(v["pids"]["current"], 3);
        assert!(v["pids"].get("limit").is_none());
        assert!(v["hugetlb"].as_object().unwrap().is_empty());
    }
}
