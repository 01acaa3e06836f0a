//! Device access rules: v1 `devices.allow`/`devices.deny` writes, and the v2 device
//! filter, a `BPF_PROG_TYPE_CGROUP_DEVICE` program built from the same rules.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType};

use crate::cgroupfs::CgroupDir;
use crate::controller::Ctrl;
use crate::error::CgroupError;
use crate::resources::Write;
use crate::sys::{self, BpfInsn};

/// Which device nodes a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DevKind {
    All,
    Char,
    Block,
}

/// Access bits, as the kernel's `BPF_DEVCG_ACC_*`.
const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Access letters and their bits, in v1 spelling order.
const ACCESS: &[(char, u8)] = &[('r', ACC_READ), ('w', ACC_WRITE), ('m', ACC_MKNOD)];

/// One checked rule; `None` major/minor is the `*` wildcard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub(crate) allow: bool,
    pub(crate) kind: DevKind,
    pub(crate) major: Option<u32>,
    pub(crate) minor: Option<u32>,
    pub(crate) access: u8,
}

fn invalid(field: &'static str, value: impl ToString, reason: &'static str) -> CgroupError {
    CgroupError::InvalidResource {
        field,
        value: value.to_string(),
        reason,
    }
}

fn number(field: &'static str, v: Option<i64>) -> Result<Option<u32>, CgroupError> {
    match v {
        None => Ok(None),
        Some(v) if v < 0 => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| invalid(field, v, "out of range")),
    }
}

/// Checks config.json's `linux.resources.devices`. A type `a` rule that names a device or
/// only some access is split into a `c` and a `b` rule: only the full `a *:* rwm` resets
/// the list, as it does in the v1 kernel.
pub(crate) fn parse_rules(list: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, CgroupError> {
    let mut out = Vec::new();
    for d in list {
        let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => DevKind::All,
            LinuxDeviceType::C | LinuxDeviceType::U => DevKind::Char,
            LinuxDeviceType::B => DevKind::Block,
            LinuxDeviceType::P => {
                return Err(invalid(
                    "devices.type",
                    "p",
                    "fifos are not device-controlled",
                ));
            }
        };
        let acc_text = d
            .access()
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or("rwm");
        let mut access = 0;
        for ch in acc_text.chars() {
            let bit = ACCESS
                .iter()
                .find(|(c, _)| *c == ch)
                .map(|(_, b)| *b)
                .ok_or_else(|| invalid("devices.access", acc_text, "must be letters of `rwm`"))?;
            access |= bit;
        }
        let rule = DeviceRule {
            allow: d.allow(),
            kind,
            major: number("devices.major", d.major())?,
            minor: number("devices.minor", d.minor())?,
            access,
        };
        if kind == DevKind::All
            && (rule.major.is_some() || rule.minor.is_some() || access != ACC_ALL)
        {
            out.push(DeviceRule {
                kind: DevKind::Char,
                ..rule.clone()
            });
            out.push(DeviceRule {
                kind: DevKind::Block,
                ..rule
            });
        } else {
            out.push(rule);
        }
    }
    Ok(out)
}

/// A rule in v1 spelling: `a`, or `c 1:3 rwm`.
fn v1_text(r: &DeviceRule) -> String {
    let t = match r.kind {
        DevKind::All => return "a".to_owned(),
        DevKind::Char => 'c',
        DevKind::Block => 'b',
    };
    let n = |v: Option<u32>| v.map_or("*".to_owned(), |v| v.to_string());
    let acc: String = ACCESS
        .iter()
        .filter(|(_, b)| r.access & b != 0)
        .map(|(c, _)| *c)
        .collect();
    format!("{t} {}:{} {acc}", n(r.major), n(r.minor))
}

/// v1: deny everything, then each rule in order.
pub(crate) fn v1_writes(rules: &[DeviceRule]) -> Vec<Write> {
    let deny_all = DeviceRule {
        allow: false,
        kind: DevKind::All,
        major: None,
        minor: None,
        access: ACC_ALL,
    };
    std::iter::once(&deny_all)
        .chain(rules)
        .map(|r| Write {
            ctrl: Ctrl::Devices,
            file: if r.allow {
                "devices.allow"
            } else {
                "devices.deny"
            }
            .to_owned(),
            value: v1_text(r),
        })
        .collect()
}

/// Parses one `devices.list` line (`c 1:3 rwm`, `a *:* rwm`).
fn parse_list_line(line: &str) -> Option<DeviceRule> {
    let mut f = line.split_whitespace();
    let kind = match f.next()? {
        "a" => DevKind::All,
        "c" => DevKind::Char,
        "b" => DevKind::Block,
        _ => return None,
    };
    let (maj, min) = f.next()?.split_once(':')?;
    let num = |s: &str| {
        if s == "*" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let mut access = 0;
    for ch in f.next()?.chars() {
        access |= ACCESS.iter().find(|(c, _)| *c == ch)?.1;
    }
    Some(DeviceRule {
        allow: true,
        kind,
        major: num(maj)?,
        minor: num(min)?,
        access,
    })
}

/// Whether the v1 `devices.list` already is what `rules` would make. Only a deny-all
/// result can be compared: in allow-all mode the kernel hides its deny exceptions.
pub(crate) fn list_matches(dir: &CgroupDir, rules: &[DeviceRule]) -> Result<bool, CgroupError> {
    let (default_allow, wanted) = effective(rules);
    if default_allow {
        return Ok(false);
    }
    let text = dir.read("devices.list")?;
    let mut current = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match parse_list_line(line) {
            Some(r) if r.kind != DevKind::All => current.push(r),
            // Allow-all mode, or a line we don't understand: rewrite.
            _ => return Ok(false),
        }
    }
    let key = |r: &DeviceRule| (r.kind as u8, r.major, r.minor, r.access);
    let mut a: Vec<_> = current.iter().map(key).collect();
    let mut b: Vec<_> = wanted.iter().map(key).collect();
    a.sort_unstable();
    b.sort_unstable();
    Ok(a == b)
}

/// What the v1 kernel would end with after `rules` on a deny-all cgroup: a default and
/// exceptions to it. The v2 filter is built from this so that both versions agree.
pub(crate) fn effective(rules: &[DeviceRule]) -> (bool, Vec<DeviceRule>) {
    let mut default_allow = false;
    let mut exceptions: Vec<DeviceRule> = Vec::new();
    for r in rules {
        let same = |e: &DeviceRule| e.kind == r.kind && e.major == r.major && e.minor == r.minor;
        if r.kind == DevKind::All {
            default_allow = r.allow;
            exceptions.clear();
        } else if r.allow == default_allow {
            for e in exceptions.iter_mut().filter(|e| same(e)) {
                e.access &= !r.access;
            }
            exceptions.retain(|e| e.access != 0);
        } else if let Some(e) = exceptions.iter_mut().find(|e| same(e)) {
            e.access |= r.access;
        } else {
            exceptions.push(r.clone());
        }
    }
    (default_allow, exceptions)
}

// eBPF opcodes used by the filter (linux/bpf.h, linux/bpf_common.h).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
/// `BPF_DEVCG_DEV_BLOCK`, `BPF_DEVCG_DEV_CHAR`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// The filter program. Registers: r3 device type, r4 requested access, r5 major, r6 minor
/// (from `struct bpf_cgroup_dev_ctx`). Exceptions are tested in order; the first match
/// returns the opposite of the default. An allow exception matches when every requested
/// bit is allowed, a deny exception when any requested bit is denied.
pub(crate) fn program(rules: &[DeviceRule]) -> Vec<BpfInsn> {
    let (default_allow, exceptions) = effective(rules);
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV_X, 3, 2, 0, 0),
        insn(AND_K, 3, 0, 0, 0xffff),
        insn(MOV_X, 4, 2, 0, 0),
        insn(RSH_K, 4, 0, 0, 16),
        insn(LDX_W, 5, 1, 4, 0),
        insn(LDX_W, 6, 1, 8, 0),
    ];
    for e in &exceptions {
        // Each test jumps to the end of this block when it fails; offsets are patched
        // once the block length is known.
        let mut block: Vec<(BpfInsn, bool)> = Vec::new();
        match e.kind {
            DevKind::Char => block.push((insn(JNE_K, 3, 0, 0, DEV_CHAR), true)),
            DevKind::Block => block.push((insn(JNE_K, 3, 0, 0, DEV_BLOCK), true)),
            DevKind::All => {}
        }
        if e.access != ACC_ALL {
            block.push((insn(MOV_X, 7, 4, 0, 0), false));
            if e.allow {
                block.push((insn(AND_K, 7, 0, 0, i32::from(!e.access & ACC_ALL)), false));
                block.push((insn(JNE_K, 7, 0, 0, 0), true));
            } else {
                block.push((insn(AND_K, 7, 0, 0, i32::from(e.access)), false));
                block.push((insn(JEQ_K, 7, 0, 0, 0), true));
            }
        }
        for (reg, v) in [(5, e.major), (6, e.minor)] {
            if let Some(v) = v {
                // Device numbers fit in 20 bits; the cast keeps the bit pattern.
                block.push((insn(JNE_K, reg, 0, 0, v.cast_signed()), true));
            }
        }
        block.push((insn(MOV_K, 0, 0, 0, i32::from(e.allow)), false));
        block.push((insn(EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        for (i, (mut ins, jumps)) in block.into_iter().enumerate() {
            if jumps {
                ins.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
            }
            p.push(ins);
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, i32::from(default_allow)));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Loads the filter for `rules` and attaches it to `dir`, replacing berth's previous one.
pub(crate) fn install_filter(dir: &CgroupDir, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    sys::replace_device_program(dir.fd(), &program(rules)).map_err(|source| {
        CgroupError::DeviceFilter {
            path: dir.path().to_path_buf(),
            source,
        }
    })
}

/// The device rules runc adds to every container: mknod of any node, and the standard
/// /dev nodes (null, zero, full, random, urandom, tty, console, ptmx, pts). As runc does,
/// the runtime appends these after the config's own rules, so that a config's deny-all
/// does not take them away. A deny-all is always implied before the whole list.
pub fn default_allowed_devices() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap_or_default()
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),
        rule(C, Some(1), Some(5), "rwm"),
        rule(C, Some(1), Some(7), "rwm"),
        rule(C, Some(1), Some(8), "rwm"),
        rule(C, Some(1), Some(9), "rwm"),
        rule(C, Some(5), Some(0), "rwm"),
        rule(C, Some(5), Some(1), "rwm"),
        rule(C, Some(5), Some(2), "rwm"),
        rule(C, Some(136), None, "rwm"),
    ]
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
