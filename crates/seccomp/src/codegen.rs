//! Turn a [`Plan`] into a classic BPF program.
//!
//! Layout, in execution order:
//! 1. load `seccomp_data.arch`; one `jeq` per audit arch to its section; anything
//!    else is killed (libseccomp's bad-arch action, as a whole process);
//! 2. per section: load `nr`; on the x86_64 audit arch split x86_64 from x32 by
//!    `__X32_SYSCALL_BIT`; return ENOSYS above the highest number the profile names
//!    (runc's stub, so libc falls back from syscalls the profile predates);
//! 3. a binary search over the syscall numbers that have rules (`jge` splits down to
//!    runs of at most [`LEAF`] `jeq`), falling to the default action;
//! 4. per syscall, its rules by libseccomp precedence: the first rule whose
//!    conditions all hold returns its action; none holding returns the default.

use crate::arch::{Abi, X32_SYSCALL_BIT};
use crate::bpf::{Emitter, Insn, JMP_JEQ_K, JMP_JGE_K, JMP_JGT_K, Target};
use crate::plan::{Cmp, Cond, Entry, Plan, RET_ERRNO, RET_KILL_PROCESS};

/// Offset of `nr` in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
/// Offset of `arch` in `struct seccomp_data`.
const ARCH_OFFSET: u32 = 4;
/// Offset of `args[0]` in `struct seccomp_data`.
const ARGS_OFFSET: u32 = 16;
/// Longest run of `jeq` at a leaf of the search tree.
const LEAF: usize = 4;

/// Generate the program for `plan`.
pub(crate) fn generate(plan: &Plan) -> Vec<Insn> {
    let mut e = Emitter::with_capacity(plan.entries.len() * 2 + 64);
    let mut dispatch: Vec<(u32, Target)> = Vec::with_capacity(plan.abis.len());
    // Emit sections back to front: each audit arch once, x32 inside x86_64's.
    let mut audits: Vec<u32> = plan.abis.iter().map(|a| a.audit_arch()).collect();
    audits.dedup();
    for audit in audits.iter().rev() {
        let start = emit_section(&mut e, plan, *audit);
        dispatch.push((*audit, start));
    }
    e.ret(RET_KILL_PROCESS);
    for (audit, start) in dispatch {
        let miss = e.next();
        e.jump(JMP_JEQ_K, audit, start, miss);
    }
    e.load(ARCH_OFFSET);
    e.finish()
}

/// The section for one audit arch; returns its first instruction.
fn emit_section(e: &mut Emitter, plan: &Plan, audit: u32) -> Target {
    let bad_arch = Target::Ret(RET_KILL_PROCESS);
    let has = |abi: Abi| plan.abis.contains(&abi);
    if audit == Abi::X86_64.audit_arch() {
        // x32 tasks share the audit arch; only the syscall bit tells them apart.
        let x32 = if has(Abi::X32) {
            emit_tree(e, plan, Abi::X32)
        } else {
            bad_arch
        };
        let x64 = if has(Abi::X86_64) {
            emit_tree(e, plan, Abi::X86_64)
        } else {
            bad_arch
        };
        e.jump(JMP_JGE_K, X32_SYSCALL_BIT, x32, x64);
    } else {
        let abi = plan
            .abis
            .iter()
            .copied()
            .find(|a| a.audit_arch() == audit)
            .expect("audit arch comes from plan.abis");
        emit_tree(e, plan, abi);
    }
    e.load(NR_OFFSET)
}

/// The syscall-number search for one ABI (expects `nr` in A).
fn emit_tree(e: &mut Emitter, plan: &Plan, abi: Abi) -> Target {
    let lo = plan.entries.partition_point(|x| x.abi < abi);
    let hi = plan.entries.partition_point(|x| x.abi <= abi);
    let entries = &plan.entries[lo..hi];
    let mut blocks: Vec<(u32, Target)> = Vec::with_capacity(entries.len());
    let mut rest = entries;
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|x| x.nr == first.nr).count();
        let target = emit_block(e, plan, abi, &rest[..n]);
        blocks.push((first.nr, target));
        rest = &rest[n..];
    }
    let default = Target::Ret(plan.default_ret);
    let start = emit_search(e, &blocks, default);
    let i = plan
        .abis
        .iter()
        .position(|a| *a == abi)
        .expect("abi in plan");
    match plan.last_nr[i] {
        Some(last) if plan.enosys_stub => {
            let enosys = RET_ERRNO | libc::ENOSYS.unsigned_abs();
            e.jump(JMP_JGT_K, last, Target::Ret(enosys), start)
        }
        _ => start,
    }
}

/// Binary search over `items` (sorted by number); returns the entry point.
fn emit_search(e: &mut Emitter, items: &[(u32, Target)], default: Target) -> Target {
    if items.len() <= LEAF {
        let mut miss = default;
        for (nr, target) in items.iter().rev() {
            miss = e.jump(JMP_JEQ_K, *nr, *target, miss);
        }
        return miss;
    }
    let mid = items.len() / 2;
    let right = emit_search(e, &items[mid..], default);
    let left = emit_search(e, &items[..mid], default);
    e.jump(JMP_JGE_K, items[mid].0, right, left)
}

/// The rules of one syscall, highest precedence first; returns the entry point.
fn emit_block(e: &mut Emitter, plan: &Plan, abi: Abi, entries: &[Entry]) -> Target {
    let rule = |x: &Entry| &plan.rules[x.rule as usize];
    // Rules after an unconditional one can never be reached.
    let reachable = entries
        .iter()
        .position(|x| rule(x).conds.is_empty())
        .map_or(entries.len(), |i| i + 1);
    let mut fail = Target::Ret(plan.default_ret);
    for rule in entries[..reachable].iter().rev().map(rule) {
        let mut pass = Target::Ret(rule.ret);
        for cond in rule.conds.iter().rev() {
            pass = emit_cond(e, cond, abi.has_64bit_args(), pass, fail);
        }
        fail = pass;
    }
    fail
}

/// Offsets of the (low, high) 32-bit words of argument `index`.
fn arg_words(index: u8) -> (u32, u32) {
    let base = ARGS_OFFSET + 8 * u32::from(index);
    if cfg!(target_endian = "little") {
        (base, base + 4)
    } else {
        (base + 4, base)
    }
}

fn split(v: u64) -> (u32, u32) {
    let lo = u32::try_from(v & 0xffff_ffff).expect("masked to 32 bits");
    let hi = u32::try_from(v >> 32).expect("shifted to 32 bits");
    (lo, hi)
}

/// One argument comparison: on to `pass` when it holds, else to `fail`.
fn emit_cond(e: &mut Emitter, c: &Cond, wide: bool, pass: Target, fail: Target) -> Target {
    // `yes`/`no` are the targets of the underlying positive comparison.
    let (yes, no) = if c.invert { (fail, pass) } else { (pass, fail) };
    let (lo_off, hi_off) = arg_words(c.index);
    let (v_lo, v_hi) = split(c.value);
    let (m_lo, m_hi) = split(c.mask);
    let code = match c.cmp {
        Cmp::Eq => JMP_JEQ_K,
        Cmp::Gt => JMP_JGT_K,
        Cmp::Ge => JMP_JGE_K,
    };
    // A masked compare whose mask has no high bits: the high word is decided now.
    let high_known = wide && c.cmp == Cmp::Eq && m_hi == 0;
    if high_known && v_hi != 0 {
        return no;
    }
    e.jump(code, v_lo, yes, no);
    if m_lo != u32::MAX {
        e.and(m_lo);
    }
    let lo_start = e.load(lo_off);
    if !wide || high_known {
        return lo_start;
    }
    // High word first: it decides unless equal, then the low word decides.
    e.jump(JMP_JEQ_K, v_hi, lo_start, no);
    if c.cmp != Cmp::Eq {
        let eq_check = e.next();
        e.jump(JMP_JGT_K, v_hi, yes, eq_check);
    }
    if m_hi != u32::MAX {
        e.and(m_hi);
    }
    e.load(hi_off)
}
