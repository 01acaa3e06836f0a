//! Turn a [`Plan`] into a classic BPF program.
//!
//! Layout, in execution order:
//! 1. load `seccomp_data.arch`; one `jeq` per audit arch to its section; anything
//!    else is killed (libseccomp's bad-arch action, as a whole process);
//! 2. per section: load `nr`; on the x86_64 audit arch split x86_64 from x32 by
//!    `__X32_SYSCALL_BIT`. Numbers above the highest one the profile names get
//!    ENOSYS (runc's stub, so libc falls back from syscalls the profile predates);
//! 3. a binary search (`jge` only) over ranges of syscall numbers that share one
//!    outcome: a rule block, the default action, or ENOSYS past the last number;
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
    let default = Target::Ret(plan.default_ret);
    let mut ranges = Ranges::new(default);
    let mut rest = &plan.entries[lo..hi];
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|x| x.nr == first.nr).count();
        let target = emit_block(e, plan, abi, &rest[..n]);
        ranges.set(first.nr, target);
        rest = &rest[n..];
    }
    let i = plan
        .abis
        .iter()
        .position(|a| *a == abi)
        .expect("abi in plan");
    if let (Some(past_last), true) = (
        plan.last_nr[i].and_then(|l| l.checked_add(1)),
        plan.enosys_stub,
    ) {
        let enosys = RET_ERRNO | libc::ENOSYS.unsigned_abs();
        ranges.set_from(past_last, Target::Ret(enosys));
    }
    emit_search(e, &ranges.starts)
}

/// The syscall-number line cut into ranges with one target each: `starts` holds
/// (first number, target), sorted, the first starting at 0, each range running to
/// the next start. Neighbours with the same target are merged, so Docker's profile,
/// which allows long runs of consecutive numbers, needs few ranges.
struct Ranges {
    starts: Vec<(u32, Target)>,
    default: Target,
}

impl Ranges {
    fn new(default: Target) -> Ranges {
        Ranges {
            starts: vec![(0, default)],
            default,
        }
    }

    /// Push a range starting at `from` (never before the last start), merging with
    /// the previous one when the target is the same.
    fn push(&mut self, from: u32, target: Target) {
        if let Some(last) = self.starts.last()
            && last.0 == from
        {
            self.starts.pop();
        }
        match self.starts.last() {
            Some(last) if last.1 == target => {}
            _ => self.starts.push((from, target)),
        }
    }

    /// Map `nr` (larger than every number set so far) to `target`.
    fn set(&mut self, nr: u32, target: Target) {
        self.push(nr, target);
        if let Some(next) = nr.checked_add(1) {
            self.push(next, self.default);
        }
    }

    /// Map every number from `from` on (larger than every number set so far).
    fn set_from(&mut self, from: u32, target: Target) {
        self.push(from, target);
    }
}

/// Binary search over ranges (see [`Ranges`]); returns the entry point. A single
/// range is its target itself, so leaves cost no instruction.
fn emit_search(e: &mut Emitter, starts: &[(u32, Target)]) -> Target {
    match starts {
        [] => unreachable!("ranges always cover 0"),
        [(_, only)] => *only,
        _ => {
            let mid = starts.len() / 2;
            let right = emit_search(e, &starts[mid..]);
            let left = emit_search(e, &starts[..mid]);
            e.jump(JMP_JGE_K, starts[mid].0, right, left)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_neighbours_with_one_target() {
        let (d, a, b) = (Target::Ret(1), Target::Ret(2), Target::At(7));
        let mut r = Ranges::new(d);
        r.set(0, a);
        r.set(1, a);
        r.set(2, b);
        r.set(5, a);
        r.set(6, a);
        r.set_from(10, Target::Ret(38));
        assert_eq!(
            r.starts,
            [
                (0, a),
                (2, b),
                (3, d),
                (5, a),
                (7, d),
                (10, Target::Ret(38))
            ]
        );
        let mut r = Ranges::new(d);
        r.set(0, d);
        r.set_from(1, d);
        assert_eq!(r.starts, [(0, d)]);
    }
}
