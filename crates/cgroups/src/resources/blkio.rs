//! Block I/O: weights (blkio.weight or BFQ on v1, io.bfq.weight or io.weight on v2) and
//! throttles (one file per kind on v1, `io.max` keys on v2).

use oci_spec::runtime::LinuxBlockIo;

use super::{File, Ignored, Knob, Planner, Step, Write, invalid, knob};
use crate::controller::Ctrl;
use crate::error::CgroupError;
use crate::hierarchy::Flavor;

const BLKIO_WEIGHT: Knob = knob(
    Ctrl::Blkio,
    "blockIO.weight",
    "blkio.weight",
    File("io.weight"),
);
const BLKIO_BFQ_WEIGHT: Knob = knob(
    Ctrl::Blkio,
    "blockIO.weight",
    "blkio.bfq.weight",
    File("io.bfq.weight"),
);
const BLKIO_LEAF_WEIGHT: Knob = knob(
    Ctrl::Blkio,
    "blockIO.leafWeight",
    "blkio.leaf_weight",
    Ignored,
);
const BLKIO_WEIGHT_DEV: Knob = knob(
    Ctrl::Blkio,
    "blockIO.weightDevice",
    "blkio.weight_device",
    File("io.weight"),
);
const BLKIO_BFQ_WEIGHT_DEV: Knob = knob(
    Ctrl::Blkio,
    "blockIO.weightDevice",
    "blkio.bfq.weight_device",
    File("io.bfq.weight"),
);
const BLKIO_LEAF_WEIGHT_DEV: Knob = knob(
    Ctrl::Blkio,
    "blockIO.weightDevice",
    "blkio.leaf_weight_device",
    Ignored,
);

/// Throttles: config field, v1 file, v2 `io.max` key.
const THROTTLES: &[(&str, &str, &str)] = &[
    (
        "blockIO.throttleReadBpsDevice",
        "blkio.throttle.read_bps_device",
        "rbps",
    ),
    (
        "blockIO.throttleWriteBpsDevice",
        "blkio.throttle.write_bps_device",
        "wbps",
    ),
    (
        "blockIO.throttleReadIOPSDevice",
        "blkio.throttle.read_iops_device",
        "riops",
    ),
    (
        "blockIO.throttleWriteIOPSDevice",
        "blkio.throttle.write_iops_device",
        "wiops",
    ),
];

/// blkio weight (10..=1000) → io.weight (1..=10000), as runc converts.
pub(crate) fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

/// Checks a blkio weight: 10..=1000 as on v1.
fn check_weight(field: &'static str, w: u16) -> Result<u16, CgroupError> {
    if (10..=1000).contains(&w) {
        Ok(w)
    } else {
        Err(invalid(field, w, "must be 10..=1000"))
    }
}

/// One weight (`prefix` is empty or `maj:min `): the plain file first on v1, BFQ's first
/// on v2 (its scale is the v1 one), whichever the kernel has.
fn push_weight(
    p: &mut Planner<'_>,
    plain: &Knob,
    bfq: &Knob,
    prefix: &str,
    w: u16,
) -> Result<(), CgroupError> {
    let bfq_w = p.write(bfq, |_| format!("{prefix}{w}"))?;
    let plain_w = p.write(plain, |fl| match fl {
        Flavor::V1 => format!("{prefix}{w}"),
        Flavor::V2 => format!("{prefix}{}", blkio_to_io_weight(w)),
    })?;
    let (first, second) = match p.flavor(Ctrl::Blkio, plain.v1)? {
        Flavor::V1 => (plain_w, bfq_w),
        Flavor::V2 => (bfq_w, plain_w),
    };
    let writes = first.into_iter().chain(second).collect();
    p.steps.push(Step::FirstOf {
        writes,
        optional: false,
    });
    Ok(())
}

pub(super) fn plan_blkio(b: &LinuxBlockIo, p: &mut Planner<'_>) -> Result<(), CgroupError> {
    if let Some(w) = b.weight() {
        let w = check_weight("blockIO.weight", w)?;
        push_weight(p, &BLKIO_WEIGHT, &BLKIO_BFQ_WEIGHT, "", w)?;
    }
    if let Some(w) = b.leaf_weight() {
        let w = check_weight("blockIO.leafWeight", w)?;
        let w = p.write(&BLKIO_LEAF_WEIGHT, |_| w.to_string())?;
        p.push(w);
    }
    for d in b.weight_device().iter().flatten() {
        let dev = format!("{}:{} ", d.major(), d.minor());
        if let Some(w) = d.weight() {
            let w = check_weight("blockIO.weightDevice.weight", w)?;
            push_weight(p, &BLKIO_WEIGHT_DEV, &BLKIO_BFQ_WEIGHT_DEV, &dev, w)?;
        }
        if let Some(w) = d.leaf_weight() {
            let w = check_weight("blockIO.weightDevice.leafWeight", w)?;
            let w = p.write(&BLKIO_LEAF_WEIGHT_DEV, |_| format!("{dev}{w}"))?;
            p.push(w);
        }
    }
    plan_throttles(b, p)
}

/// Throttles: `maj:min rate` to one file per kind on v1, `maj:min key=rate` to io.max
/// on v2 (0 there means no limit: `max`).
fn plan_throttles(b: &LinuxBlockIo, p: &mut Planner<'_>) -> Result<(), CgroupError> {
    let lists = [
        b.throttle_read_bps_device(),
        b.throttle_write_bps_device(),
        b.throttle_read_iops_device(),
        b.throttle_write_iops_device(),
    ];
    for ((_, v1_file, v2_key), list) in THROTTLES.iter().zip(lists) {
        for t in list.iter().flatten() {
            let dev = format!("{}:{}", t.major(), t.minor());
            let (file, value) = match p.flavor(Ctrl::Blkio, v1_file)? {
                Flavor::V1 => ((*v1_file).to_owned(), format!("{dev} {}", t.rate())),
                Flavor::V2 => {
                    let rate = match t.rate() {
                        0 => "max".to_owned(),
                        r => r.to_string(),
                    };
                    ("io.max".to_owned(), format!("{dev} {v2_key}={rate}"))
                }
            };
            p.steps.push(Step::Write(Write {
                ctrl: Ctrl::Blkio,
                file,
                value,
            }));
        }
    }
    Ok(())
}
