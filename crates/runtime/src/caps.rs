//! Capabilities: the name table and applying the five OCI sets to the calling process.

use std::io;

use oci_spec::runtime::LinuxCapabilities;

/// Every capability the kernel knows, by its number.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// All capability names (for `features` and `spec`).
pub fn all_names() -> &'static [&'static str] {
    CAPS
}

/// The number of a capability name, `CAP_` prefix optional, any case.
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAPS.iter()
        .position(|c| *c == full)
        .and_then(|i| u32::try_from(i).ok())
}

/// The highest capability this kernel supports, from /proc/sys/kernel/cap_last_cap.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// The five sets as bit masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// Why a capability set could not be built or applied.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("unknown capability `{0}`")]
    Unknown(String),
    #[error("{op}: {source}")]
    Apply { op: &'static str, source: io::Error },
}

fn mask<'a>(names: impl IntoIterator<Item = &'a String>) -> Result<u64, CapsError> {
    let mut m = 0u64;
    for n in names {
        let bit = number(n).ok_or_else(|| CapsError::Unknown(n.clone()))?;
        m |= 1 << bit;
    }
    Ok(m)
}

fn set_to_strings(set: &Option<oci_spec::runtime::Capabilities>) -> Vec<String> {
    set.iter().flatten().map(|c| format!("CAP_{c}")).collect()
}

/// Folds the OCI capability lists into masks; unknown names are refused.
pub(crate) fn from_spec(c: Option<&LinuxCapabilities>) -> Result<CapSets, CapsError> {
    let Some(c) = c else {
        return Ok(CapSets::default());
    };
    Ok(CapSets {
        bounding: mask(&set_to_strings(c.bounding()))?,
        effective: mask(&set_to_strings(c.effective()))?,
        permitted: mask(&set_to_strings(c.permitted()))?,
        inheritable: mask(&set_to_strings(c.inheritable()))?,
        ambient: mask(&set_to_strings(c.ambient()))?,
    })
}

/// Step one, while still root with CAP_SETPCAP: drop every capability not in the bounding
/// set, and keep permitted capabilities across the coming setuid.
pub(crate) fn drop_bounding(sets: &CapSets) -> Result<(), CapsError> {
    for cap in 0..=last_cap() {
        if sets.bounding & (1 << cap) == 0 {
            crate::sys::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap)).map_err(
                |source| CapsError::Apply {
                    op: "drop bounding capability",
                    source,
                },
            )?;
        }
    }
    crate::sys::prctl(libc::PR_SET_KEEPCAPS, 1).map_err(|source| CapsError::Apply {
        op: "keep capabilities across setuid",
        source,
    })?;
    Ok(())
}

/// Step two, after the user switch: set effective, permitted and inheritable, then raise
/// the ambient set (which must be a subset of permitted and inheritable).
pub(crate) fn apply_sets(sets: &CapSets) -> Result<(), CapsError> {
    crate::sys::capset(sets.effective, sets.permitted, sets.inheritable).map_err(|source| {
        CapsError::Apply {
            op: "capset",
            source,
        }
    })?;
    // The kernel raises an ambient capability only if it is permitted and inheritable;
    // like runc, skip the others instead of failing (runc's own spec lists ambient
    // capabilities without inheritable ones).
    let ambient = sets.ambient & sets.permitted & sets.inheritable;
    for cap in 0..=last_cap() {
        if ambient & (1 << cap) != 0 {
            crate::sys::prctl_ambient(
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                libc::c_ulong::from(cap),
            )
            .map_err(|source| CapsError::Apply {
                op: "raise ambient capability",
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kernel_numbers() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("net_raw"), Some(13));
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
    }

    #[test]
    fn spec_sets_fold_to_masks() {
        let caps: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_KILL","CAP_CHOWN"],"effective":["CAP_KILL"],
                "permitted":["CAP_KILL"],"inheritable":[],"ambient":[]}"#,
        )
        .unwrap();
        let s = from_spec(Some(&caps)).unwrap();
        assert_eq!(s.bounding, (1 << 5) | 1);
        assert_eq!(s.effective, 1 << 5);
        assert_eq!(s.ambient, 0);
    }
}
