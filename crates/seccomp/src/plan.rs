//! Parse and validate an OCI `linux.seccomp` profile into a [`Plan`]: resolved
//! actions, ABIs and a sorted list of (ABI, syscall number, rule) entries. All profile
//! errors surface here; code generation cannot fail except on program size.

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompArg, LinuxSeccompFilterFlag as Flag,
    LinuxSeccompOperator as Op, LinuxSyscall,
};

use crate::arch::{Abi, SyscallRow, lookup};

/// `SECCOMP_RET_KILL_PROCESS`.
pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_KILL_THREAD`.
const RET_KILL_THREAD: u32 = 0x0000_0000;
/// `SECCOMP_RET_TRAP`.
const RET_TRAP: u32 = 0x0003_0000;
/// `SECCOMP_RET_ERRNO`.
pub(crate) const RET_ERRNO: u32 = 0x0005_0000;
/// `SECCOMP_RET_USER_NOTIF`.
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// `SECCOMP_RET_TRACE`.
const RET_TRACE: u32 = 0x7ff0_0000;
/// `SECCOMP_RET_LOG`.
const RET_LOG: u32 = 0x7ffc_0000;
/// `SECCOMP_RET_ALLOW`.
const RET_ALLOW: u32 = 0x7fff_0000;

/// `SECCOMP_FILTER_FLAG_TSYNC`.
const FLAG_TSYNC: u32 = 1;
/// `SECCOMP_FILTER_FLAG_LOG`.
const FLAG_LOG: u32 = 1 << 1;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`.
const FLAG_SPEC_ALLOW: u32 = 1 << 2;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
pub(crate) const FLAG_NEW_LISTENER: u32 = 1 << 3;
/// `SECCOMP_FILTER_FLAG_TSYNC_ESRCH`: required when TSYNC and NEW_LISTENER combine.
const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`.
const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// Highest syscall argument index.
const MAX_ARG_INDEX: usize = 5;

/// One row per action: OCI name, kernel return value, libseccomp precedence rank
/// (lower wins when several rules of one syscall match).
const ACTIONS: [(Action, &str, u32, u8); 9] = [
    (
        Action::ScmpActKillProcess,
        "SCMP_ACT_KILL_PROCESS",
        RET_KILL_PROCESS,
        0,
    ),
    (Action::ScmpActKill, "SCMP_ACT_KILL", RET_KILL_THREAD, 1),
    (
        Action::ScmpActKillThread,
        "SCMP_ACT_KILL_THREAD",
        RET_KILL_THREAD,
        1,
    ),
    (Action::ScmpActTrap, "SCMP_ACT_TRAP", RET_TRAP, 2),
    (Action::ScmpActErrno, "SCMP_ACT_ERRNO", RET_ERRNO, 3),
    (Action::ScmpActNotify, "SCMP_ACT_NOTIFY", RET_USER_NOTIF, 4),
    (Action::ScmpActTrace, "SCMP_ACT_TRACE", RET_TRACE, 5),
    (Action::ScmpActLog, "SCMP_ACT_LOG", RET_LOG, 6),
    (Action::ScmpActAllow, "SCMP_ACT_ALLOW", RET_ALLOW, 7),
];

/// One row per filter flag: OCI flag, kernel flag bit, OCI name.
pub(crate) const FLAGS: [(Flag, u32, &str); 4] = [
    (
        Flag::SeccompFilterFlagTsync,
        FLAG_TSYNC,
        "SECCOMP_FILTER_FLAG_TSYNC",
    ),
    (
        Flag::SeccompFilterFlagLog,
        FLAG_LOG,
        "SECCOMP_FILTER_FLAG_LOG",
    ),
    (
        Flag::SeccompFilterFlagSpecAllow,
        FLAG_SPEC_ALLOW,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    ),
    (
        Flag::SeccompFilterFlagWaitKillableRecv,
        FLAG_WAIT_KILLABLE_RECV,
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    ),
];

/// One row per operator: OCI operator and name.
pub(crate) const OPERATORS: [(Op, &str); 7] = [
    (Op::ScmpCmpNe, "SCMP_CMP_NE"),
    (Op::ScmpCmpLt, "SCMP_CMP_LT"),
    (Op::ScmpCmpLe, "SCMP_CMP_LE"),
    (Op::ScmpCmpEq, "SCMP_CMP_EQ"),
    (Op::ScmpCmpGe, "SCMP_CMP_GE"),
    (Op::ScmpCmpGt, "SCMP_CMP_GT"),
    (Op::ScmpCmpMaskedEq, "SCMP_CMP_MASKED_EQ"),
];

/// The names of every action berth knows, for `features`.
pub(crate) fn action_names() -> impl Iterator<Item = &'static str> {
    ACTIONS.iter().map(|a| a.1)
}

/// Errors in a profile, found before anything touches the kernel.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The default action cannot hand syscalls to a listener.
    #[error("seccomp default action `SCMP_ACT_NOTIFY` is not allowed")]
    DefaultNotify,
    /// A rule asks for `SCMP_ACT_NOTIFY` but the profile names no listener socket.
    #[error("seccomp rule for `{syscall}` uses `SCMP_ACT_NOTIFY` but `listenerPath` is not set")]
    NotifyWithoutListener { syscall: String },
    /// `errnoRet` given for an action that takes no value.
    #[error(
        "seccomp rule for `{syscall}`: `errnoRet` is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE"
    )]
    ErrnoRetNotAllowed { syscall: String },
    /// `errnoRet` or `defaultErrnoRet` does not fit the 16-bit return data.
    #[error("seccomp errno return value {value} for `{syscall}` exceeds 65535")]
    ErrnoRetRange { syscall: String, value: u32 },
    /// An argument index past the sixth argument.
    #[error("seccomp rule for `{syscall}`: argument index {index} exceeds 5")]
    ArgIndex { syscall: String, index: usize },
    /// berth has no syscall table for the machine it runs on.
    #[error("seccomp: no syscall table for this machine's architecture")]
    NativeArch,
}

/// One argument comparison, already in the form code generation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cond {
    /// Argument index, 0..=5.
    pub(crate) index: u8,
    /// The comparison before optional inversion.
    pub(crate) cmp: Cmp,
    /// Whether the result of `cmp` is negated (NE, LT, LE).
    pub(crate) invert: bool,
    /// Mask applied to the argument before comparing (all ones unless MASKED_EQ).
    pub(crate) mask: u64,
    /// The value compared against.
    pub(crate) value: u64,
}

/// The three comparisons classic BPF has; the others are their negations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Gt,
    Ge,
}

/// One rule: an action and the conditions (ANDed) under which it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) ret: u32,
    pub(crate) rank: u8,
    pub(crate) conds: Vec<Cond>,
}

/// A rule attached to one syscall number of one ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub(crate) abi: Abi,
    pub(crate) nr: u32,
    pub(crate) rank: u8,
    pub(crate) rule: u32,
}

/// A validated profile, ready for code generation.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Return value for syscalls no rule matches.
    pub(crate) default_ret: u32,
    /// ABIs with a section in the program: the native one plus those listed, in
    /// `Abi` order.
    pub(crate) abis: Vec<Abi>,
    pub(crate) rules: Vec<Rule>,
    /// Sorted by ABI, number, precedence, then profile order.
    pub(crate) entries: Vec<Entry>,
    /// Per ABI (same order as `abis`): highest syscall number the profile names;
    /// larger numbers get ENOSYS (runc does the same) unless the default allows.
    pub(crate) last_nr: Vec<Option<u32>>,
    pub(crate) enosys_stub: bool,
    pub(crate) flags: u32,
    pub(crate) notify: bool,
}

/// Validate `p` and resolve it into a [`Plan`].
pub(crate) fn plan(p: &LinuxSeccomp) -> Result<Plan, ProfileError> {
    if p.default_action() == Action::ScmpActNotify {
        return Err(ProfileError::DefaultNotify);
    }
    let default_ret = action_ret(p.default_action(), p.default_errno_ret(), "default")?;
    let abis = resolve_abis(p)?;
    let empty = Vec::new();
    let syscalls = p.syscalls().as_ref().unwrap_or(&empty);
    let mut plan = Plan {
        default_ret,
        last_nr: vec![None; abis.len()],
        abis,
        rules: Vec::with_capacity(syscalls.len()),
        entries: Vec::with_capacity(syscalls.len() * 8),
        enosys_stub: !matches!(
            p.default_action(),
            Action::ScmpActAllow | Action::ScmpActLog | Action::ScmpActTrace
        ),
        flags: 0,
        notify: false,
    };
    for sc in syscalls {
        add_syscall(&mut plan, sc, p.listener_path().is_some())?;
    }
    plan.entries.sort_unstable();
    plan.flags = resolve_flags(p, plan.notify);
    Ok(plan)
}

/// The native ABI plus every listed one berth has a table for (libseccomp always
/// keeps the native arch in a filter, and runc never removes it).
fn resolve_abis(p: &LinuxSeccomp) -> Result<Vec<Abi>, ProfileError> {
    let native = Abi::native().ok_or(ProfileError::NativeArch)?;
    let mut abis = vec![native];
    for arch in p.architectures().iter().flatten() {
        if let Some(abi) = Abi::from_oci(*arch)
            && !abis.contains(&abi)
        {
            abis.push(abi);
        }
    }
    abis.sort_unstable();
    Ok(abis)
}

fn resolve_flags(p: &LinuxSeccomp, notify: bool) -> u32 {
    let mut flags = 0;
    for flag in p.flags().iter().flatten() {
        if let Some(row) = FLAGS.iter().find(|row| row.0 == *flag) {
            flags |= row.1;
        }
    }
    if notify {
        flags |= FLAG_NEW_LISTENER;
        if flags & FLAG_TSYNC != 0 {
            flags |= FLAG_TSYNC_ESRCH;
        }
    } else {
        // The kernel rejects WAIT_KILLABLE_RECV without a listener; libseccomp only
        // passes it when notify is used, and so does berth.
        flags &= !FLAG_WAIT_KILLABLE_RECV;
    }
    flags
}

fn first_name(sc: &LinuxSyscall) -> String {
    sc.names().first().cloned().unwrap_or_default()
}

/// The kernel return value for `action` with its optional `errnoRet`.
fn action_ret(action: Action, errno_ret: Option<u32>, syscall: &str) -> Result<u32, ProfileError> {
    let base = ACTIONS
        .iter()
        .find(|row| row.0 == action)
        .map_or(RET_ALLOW, |row| row.2);
    match (action, errno_ret) {
        (Action::ScmpActErrno | Action::ScmpActTrace, Some(v)) if v > 0xffff => {
            Err(ProfileError::ErrnoRetRange {
                syscall: syscall.to_owned(),
                value: v,
            })
        }
        (Action::ScmpActErrno | Action::ScmpActTrace, v) => {
            Ok(base | v.unwrap_or(libc::EPERM.unsigned_abs()))
        }
        (_, Some(_)) => Err(ProfileError::ErrnoRetNotAllowed {
            syscall: syscall.to_owned(),
        }),
        (_, None) => Ok(base),
    }
}

fn rank_of(action: Action) -> u8 {
    ACTIONS
        .iter()
        .find(|row| row.0 == action)
        .map_or(7, |row| row.3)
}

/// Add the rules of one OCI syscall entry for every ABI its names exist on.
fn add_syscall(plan: &mut Plan, sc: &LinuxSyscall, has_listener: bool) -> Result<(), ProfileError> {
    let action = sc.action();
    if action == Action::ScmpActNotify && !has_listener {
        return Err(ProfileError::NotifyWithoutListener {
            syscall: first_name(sc),
        });
    }
    let ret = action_ret(action, sc.errno_ret(), &first_name(sc))?;
    let conds = sc
        .args()
        .iter()
        .flatten()
        .map(|a| cond_of(a, sc))
        .collect::<Result<Vec<_>, _>>()?;
    // Names unknown to every ABI are skipped, as runc does.
    let rows: Vec<&SyscallRow> = sc.names().iter().filter_map(|n| lookup(n)).collect();
    // The numbers still count for the ENOSYS stub when the rule itself is dropped.
    for row in &rows {
        for (i, abi) in plan.abis.iter().enumerate() {
            if let Some(nr) = abi.nr_in(row) {
                let last = &mut plan.last_nr[i];
                *last = Some(last.map_or(nr, |l| l.max(nr)));
            }
        }
    }
    // libseccomp refuses rules whose action is the default one; runc skips them.
    if ret == plan.default_ret {
        return Ok(());
    }
    plan.notify |= action == Action::ScmpActNotify;
    let rank = rank_of(action);
    let first_rule = plan.rules.len();
    if repeats_an_index(&conds) {
        // runc's rule for several conditions on one argument: one rule per
        // condition, so they are ORed (libseccomp cannot AND them).
        for c in conds {
            plan.rules.push(Rule {
                ret,
                rank,
                conds: vec![c],
            });
        }
    } else {
        plan.rules.push(Rule { ret, rank, conds });
    }
    let rule_ids = first_rule..plan.rules.len();
    for row in &rows {
        for abi in plan.abis.iter().copied() {
            let Some(nr) = abi.nr_in(row) else {
                continue; // not on this ABI
            };
            for rule in rule_ids.clone() {
                let rule = u32::try_from(rule).expect("rule count fits u32");
                plan.entries.push(Entry {
                    abi,
                    nr,
                    rank,
                    rule,
                });
            }
        }
    }
    Ok(())
}

fn repeats_an_index(conds: &[Cond]) -> bool {
    let mut seen = 0u8;
    for c in conds {
        let bit = 1u8 << c.index;
        if seen & bit != 0 {
            return true;
        }
        seen |= bit;
    }
    false
}

fn cond_of(a: &LinuxSeccompArg, sc: &LinuxSyscall) -> Result<Cond, ProfileError> {
    if a.index() > MAX_ARG_INDEX {
        return Err(ProfileError::ArgIndex {
            syscall: first_name(sc),
            index: a.index(),
        });
    }
    let index = u8::try_from(a.index()).expect("index checked above");
    let (cmp, invert) = match a.op() {
        Op::ScmpCmpEq | Op::ScmpCmpMaskedEq => (Cmp::Eq, false),
        Op::ScmpCmpNe => (Cmp::Eq, true),
        Op::ScmpCmpGt => (Cmp::Gt, false),
        Op::ScmpCmpGe => (Cmp::Ge, false),
        Op::ScmpCmpLt => (Cmp::Ge, true),
        Op::ScmpCmpLe => (Cmp::Gt, true),
    };
    // MASKED_EQ: `value` is the mask and `valueTwo` the datum (runc, libseccomp).
    let (mask, value) = match a.op() {
        Op::ScmpCmpMaskedEq => (a.value(), a.value_two().unwrap_or(0)),
        _ => (u64::MAX, a.value()),
    };
    Ok(Cond {
        index,
        cmp,
        invert,
        mask,
        value,
    })
}
