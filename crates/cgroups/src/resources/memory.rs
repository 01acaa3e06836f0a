//! Memory: limit, swap (memory+swap on v1, swap alone on v2), reservation, swappiness,
//! OOM killer.

use oci_spec::runtime::LinuxMemory;

use super::{File, Ignored, Knob, Planner, Step, byte_limit, invalid, knob, limit};
use crate::controller::Ctrl;
use crate::error::CgroupError;
use crate::hierarchy::Flavor;

const MEM_LIMIT: Knob = knob(
    Ctrl::Memory,
    "memory.limit",
    "memory.limit_in_bytes",
    File("memory.max"),
);
const MEM_SWAP: Knob = knob(
    Ctrl::Memory,
    "memory.swap",
    "memory.memsw.limit_in_bytes",
    File("memory.swap.max"),
);
const MEM_RESERVATION: Knob = knob(
    Ctrl::Memory,
    "memory.reservation",
    "memory.soft_limit_in_bytes",
    File("memory.low"),
);
const MEM_SWAPPINESS: Knob = knob(
    Ctrl::Memory,
    "memory.swappiness",
    "memory.swappiness",
    Ignored,
);
const MEM_OOM: Knob = knob(
    Ctrl::Memory,
    "memory.disableOOMKiller",
    "memory.oom_control",
    Ignored,
);

pub(super) fn plan_memory(m: &LinuxMemory, p: &mut Planner<'_>) -> Result<(), CgroupError> {
    let lim = byte_limit("memory.limit", m.limit())?;
    let mut swap = byte_limit("memory.swap", m.swap())?;
    // runc: an unlimited memory with no swap setting means unlimited swap too.
    if lim == Some(-1) && swap.is_none() {
        swap = Some(-1);
    }
    if let (Some(l), Some(s)) = (lim, swap)
        && l > 0
        && s > 0
        && s < l
    {
        return Err(invalid(
            "memory.swap",
            s,
            "memory+swap must be >= memory.limit",
        ));
    }
    let fl = p.flavor(Ctrl::Memory, "memory.limit_in_bytes")?;
    let lim_w = match lim {
        Some(l) => p.write(&MEM_LIMIT, |fl| limit(fl, l))?,
        None => None,
    };
    let swap_value = match (fl, swap) {
        (_, None) => None,
        (Flavor::V1, Some(s)) => Some(s),
        (Flavor::V2, Some(s)) => Some(v2_swap(s, lim)?),
    };
    let swap_w = match swap_value {
        Some(v) => p.write(&MEM_SWAP, |fl| limit(fl, v))?,
        None => None,
    };
    match swap_value {
        // Unlimited swap goes first: it is valid against any memory limit, and a host
        // without swap accounting (no file) has unlimited swap anyway.
        Some(-1) => {
            p.steps.extend(swap_w.map(|w| Step::FirstOf {
                writes: vec![w],
                optional: true,
            }));
            p.push(lim_w);
        }
        // v2: independent files.
        _ if fl == Flavor::V2 => {
            p.push(swap_w);
            p.push(lim_w);
        }
        // v1: memory <= memory+swap at every moment; the valid order depends on the
        // current values.
        _ => p.push_pair(lim_w, swap_w),
    }
    if let Some(r) = byte_limit("memory.reservation", m.reservation())? {
        let w = p.write(&MEM_RESERVATION, |fl| limit(fl, r))?;
        p.push(w);
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(invalid("memory.swappiness", s, "must be 0..=100"));
        }
        let w = p.write(&MEM_SWAPPINESS, |_| s.to_string())?;
        p.push(w);
    }
    if m.disable_oom_killer() == Some(true) {
        let w = p.write(&MEM_OOM, |_| "1".into())?;
        p.push(w);
    }
    Ok(())
}

/// v2 limits swap alone: memory.swap.max = (memory+swap) - memory.
fn v2_swap(swap: i64, lim: Option<i64>) -> Result<i64, CgroupError> {
    match (swap, lim) {
        (-1, _) => Ok(-1),
        (s, Some(l)) if l > 0 => Ok(s - l),
        (s, _) => Err(invalid(
            "memory.swap",
            s,
            "a swap limit needs a memory limit",
        )),
    }
}
