//! The syscall ABIs berth can compile for: audit arch values, syscall tables and the
//! word size libseccomp uses when comparing arguments.

use oci_spec::runtime::Arch as OciArch;

use crate::table;

/// `AUDIT_ARCH_X86_64`: also the audit arch of x32 tasks.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`.
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `AUDIT_ARCH_AARCH64`.
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
/// `AUDIT_ARCH_ARM`.
const AUDIT_ARCH_ARM: u32 = 0x4000_0028;

/// `__X32_SYSCALL_BIT`: x32 syscalls arrive on the x86_64 audit arch with this bit set.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A syscall ABI with a name -> number table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Abi {
    X86_64,
    X32,
    X86,
    Aarch64,
    Arm,
}

impl Abi {
    /// Every ABI with a table, in the order the compiler lays out their sections.
    pub(crate) const ALL: [Abi; 5] = [Abi::X86_64, Abi::X32, Abi::X86, Abi::Aarch64, Abi::Arm];

    /// The ABI this binary runs on, if berth has a table for it.
    pub(crate) fn native() -> Option<Abi> {
        if cfg!(target_arch = "x86_64") {
            Some(Abi::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Abi::Aarch64)
        } else if cfg!(target_arch = "x86") {
            Some(Abi::X86)
        } else if cfg!(target_arch = "arm") {
            Some(Abi::Arm)
        } else {
            None
        }
    }

    /// The ABI for an OCI architecture name; `None` when berth has no table for it.
    /// Such architectures can never be the running kernel's audit arch on the hosts
    /// berth builds for, so leaving them out changes nothing at run time.
    pub(crate) fn from_oci(arch: OciArch) -> Option<Abi> {
        match arch {
            OciArch::ScmpArchNative => Abi::native(),
            OciArch::ScmpArchX86_64 => Some(Abi::X86_64),
            OciArch::ScmpArchX32 => Some(Abi::X32),
            OciArch::ScmpArchX86 => Some(Abi::X86),
            OciArch::ScmpArchAarch64 => Some(Abi::Aarch64),
            OciArch::ScmpArchArm => Some(Abi::Arm),
            _ => None,
        }
    }

    /// The OCI name of this ABI.
    pub(crate) fn oci_name(self) -> &'static str {
        match self {
            Abi::X86_64 => "SCMP_ARCH_X86_64",
            Abi::X32 => "SCMP_ARCH_X32",
            Abi::X86 => "SCMP_ARCH_X86",
            Abi::Aarch64 => "SCMP_ARCH_AARCH64",
            Abi::Arm => "SCMP_ARCH_ARM",
        }
    }

    /// The value the kernel puts into `seccomp_data.arch` for tasks of this ABI.
    pub(crate) fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
            Abi::X86 => AUDIT_ARCH_I386,
            Abi::Aarch64 => AUDIT_ARCH_AARCH64,
            Abi::Arm => AUDIT_ARCH_ARM,
        }
    }

    /// Whether arguments are compared as 64-bit values. libseccomp compares only the
    /// low 32-bit word on 32-bit ABIs (x86, arm and x32), and so does berth.
    pub(crate) fn has_64bit_args(self) -> bool {
        matches!(self, Abi::X86_64 | Abi::Aarch64)
    }

    /// The syscall number of `name` on this ABI, as `seccomp_data.nr` carries it.
    #[cfg(test)]
    pub(crate) fn syscall_nr(self, name: &str) -> Option<u32> {
        lookup(name).and_then(|row| self.nr_in(row))
    }

    /// This ABI's number in a row returned by [`lookup`].
    pub(crate) fn nr_in(self, row: &SyscallRow) -> Option<u32> {
        let nr = row[self as usize];
        (nr != table::NONE).then_some(nr)
    }
}

/// A syscall's numbers on every ABI, indexed by `Abi as usize`.
pub(crate) type SyscallRow = [u32; 5];

/// FNV-1a 64, the hash the generated table is sorted by.
fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The numbers of syscall `name` on every ABI, if any ABI has it.
pub(crate) fn lookup(name: &str) -> Option<&'static SyscallRow> {
    let hash = fnv1a(name);
    let i = table::SYSCALLS
        .binary_search_by_key(&hash, |row| row.0)
        .ok()?;
    let row = &table::SYSCALLS[i];
    (row.1 == name).then_some(&row.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_by_the_hash_it_stores() {
        let t = table::SYSCALLS;
        assert!(
            t.windows(2).all(|w| w[0].0 < w[1].0),
            "not sorted, or a collision"
        );
        assert!(
            t.iter().all(|row| fnv1a(row.1) == row.0),
            "hash differs from generator"
        );
        assert!(Abi::ALL.iter().enumerate().all(|(i, a)| *a as usize == i));
    }

    #[test]
    fn known_numbers_resolve() {
        assert_eq!(Abi::X86_64.syscall_nr("mkdir"), Some(83));
        assert_eq!(Abi::X86_64.syscall_nr("personality"), Some(135));
        assert_eq!(Abi::X86.syscall_nr("mkdir"), Some(39));
        assert_eq!(Abi::X32.syscall_nr("mkdir"), Some(83 | X32_SYSCALL_BIT));
        assert_eq!(Abi::X32.syscall_nr("execve"), Some(520 | X32_SYSCALL_BIT));
        assert_eq!(Abi::Aarch64.syscall_nr("mkdirat"), Some(34));
        assert_eq!(Abi::Aarch64.syscall_nr("mkdir"), None);
        assert_eq!(Abi::Arm.syscall_nr("set_tls"), Some(0x0f_0005));
        assert_eq!(Abi::X86_64.syscall_nr("no_such_call"), None);
    }

    #[test]
    fn x32_shares_the_x86_64_audit_arch() {
        assert_eq!(Abi::X32.audit_arch(), Abi::X86_64.audit_arch());
        assert!(Abi::X86_64.has_64bit_args());
        assert!(!Abi::X32.has_64bit_args());
    }
}
