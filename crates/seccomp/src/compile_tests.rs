//! Unit tests of whole compiled programs, run in the BPF interpreter of `bpf`.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

use crate::arch::{Abi, X32_SYSCALL_BIT};
use crate::bpf::{run, run_counted};
use crate::{Filter, ProfileError, SeccompError, compile};

const ALLOW: u32 = 0x7fff_0000;
const KILL_PROCESS: u32 = 0x8000_0000;
const KILL_THREAD: u32 = 0;
const TRAP: u32 = 0x0003_0000;
const NOTIFY: u32 = 0x7fc0_0000;
const LOG: u32 = 0x7ffc_0000;

fn errno(e: u32) -> u32 {
    0x0005_0000 | e
}

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("test profile parses")
}

fn build(v: serde_json::Value) -> Filter {
    compile(&profile(v)).expect("test profile compiles")
}

fn nr(abi: Abi, name: &str) -> u32 {
    abi.syscall_nr(name).expect("known syscall")
}

/// Run `f` for syscall `name` of `abi` with `args`.
fn call(f: &Filter, abi: Abi, name: &str, args: [u64; 6]) -> u32 {
    call_nr(f, abi.audit_arch(), nr(abi, name), args)
}

fn call_nr(f: &Filter, audit: u32, nr: u32, args: [u64; 6]) -> u32 {
    run(&f.program, &seccomp_data(audit, nr, args))
}

fn seccomp_data(audit: u32, nr: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[..4].copy_from_slice(&nr.to_ne_bytes());
    d[4..8].copy_from_slice(&audit.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    d
}

const NO_ARGS: [u64; 6] = [0; 6];

#[test]
fn default_action_and_allow_list() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 13,
        "syscalls": [{ "names": ["read", "write", "exit_group", "no_such_call"], "action": "SCMP_ACT_ALLOW" }]
    }));
    assert_eq!(call(&f, Abi::X86_64, "read", NO_ARGS), ALLOW);
    assert_eq!(call(&f, Abi::X86_64, "write", NO_ARGS), ALLOW);
    assert_eq!(call(&f, Abi::X86_64, "mkdir", NO_ARGS), errno(13));
    // Numbers past the last one the profile names get ENOSYS (runc's stub).
    assert_eq!(
        call_nr(&f, Abi::X86_64.audit_arch(), 4000, NO_ARGS),
        errno(38)
    );
    let plain = build(json!({ "defaultAction": "SCMP_ACT_ERRNO" }));
    assert_eq!(call(&plain, Abi::X86_64, "mkdir", NO_ARGS), errno(1));
}

#[test]
fn unlisted_arches_are_killed() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_ERRNO" }]
    }));
    assert_eq!(call(&f, Abi::X86_64, "mkdir", NO_ARGS), errno(1));
    assert_eq!(call(&f, Abi::X86, "read", NO_ARGS), KILL_PROCESS);
    assert_eq!(call(&f, Abi::Aarch64, "read", NO_ARGS), KILL_PROCESS);
    // x32 shares the audit arch; without SCMP_ARCH_X32 its numbers are a bad arch.
    assert_eq!(call(&f, Abi::X32, "read", NO_ARGS), KILL_PROCESS);
}

#[test]
fn compat_arches_get_their_own_numbers() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_PPC64LE"],
        "syscalls": [{ "names": ["mkdir", "execve"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5 }]
    }));
    for abi in [Abi::X86_64, Abi::X86, Abi::X32] {
        assert_eq!(call(&f, abi, "mkdir", NO_ARGS), errno(5), "{abi:?}");
        assert_eq!(call(&f, abi, "execve", NO_ARGS), errno(5), "{abi:?}");
        assert_eq!(call(&f, abi, "read", NO_ARGS), ALLOW, "{abi:?}");
    }
    // x86's mkdir (39) is x86_64's getpid: each arch uses its own table.
    assert_eq!(call_nr(&f, Abi::X86_64.audit_arch(), 39, NO_ARGS), ALLOW);
    assert_eq!(nr(Abi::X32, "execve"), 520 | X32_SYSCALL_BIT);
}

/// Reference semantics of one operator on 64-bit values.
fn holds(op: &str, arg: u64, value: u64, two: u64) -> bool {
    match op {
        "SCMP_CMP_NE" => arg != value,
        "SCMP_CMP_LT" => arg < value,
        "SCMP_CMP_LE" => arg <= value,
        "SCMP_CMP_EQ" => arg == value,
        "SCMP_CMP_GE" => arg >= value,
        "SCMP_CMP_GT" => arg > value,
        "SCMP_CMP_MASKED_EQ" => arg & value == two,
        _ => unreachable!("operator list below"),
    }
}

const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

const PROBES: [u64; 10] = [
    0,
    1,
    7,
    8,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0007,
    0x2_0000_0000,
    0xffff_ffff_ffff_fffe,
    u64::MAX,
];

#[test]
fn every_operator_on_64_bit_args_matches_reference() {
    for op in OPS {
        for (value, two) in [
            (7, 7),
            (8, 0),
            (0x1_0000_0007, 0x1_0000_0007),
            (0xffff_ffff, 0),
        ] {
            let f = build(json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{ "index": 2, "value": value, "valueTwo": two, "op": op }]
                }]
            }));
            for arg in PROBES {
                let want = if holds(op, arg, value, two) {
                    ALLOW
                } else {
                    errno(1)
                };
                let args = [0, 0, arg, 0, 0, 0];
                let got = call(&f, Abi::X86_64, "personality", args);
                assert_eq!(got, want, "{op} {value:#x}/{two:#x} on {arg:#x}");
            }
        }
    }
}

#[test]
fn operators_on_32_bit_abis_compare_the_low_word() {
    for op in OPS {
        let f = build(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86"],
            "syscalls": [{
                "names": ["personality"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{ "index": 0, "value": 8, "valueTwo": 8, "op": op }]
            }]
        }));
        for arg in [0u64, 7, 8, 9, 0xffff_ffff] {
            let want = if holds(op, arg, 8, 8) {
                ALLOW
            } else {
                errno(1)
            };
            let got = call(&f, Abi::X86, "personality", [arg, 0, 0, 0, 0, 0]);
            assert_eq!(got, want, "{op} on {arg:#x}");
        }
    }
}

#[test]
fn conditions_in_a_rule_are_anded_and_rules_ored() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [
                { "index": 0, "value": 1, "op": "SCMP_CMP_EQ" },
                { "index": 1, "value": 2, "op": "SCMP_CMP_EQ" } ] },
            { "names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [
                { "index": 5, "value": 9, "op": "SCMP_CMP_EQ" } ] }
        ]
    }));
    assert_eq!(call(&f, Abi::X86_64, "mmap", [1, 2, 0, 0, 0, 0]), ALLOW);
    assert_eq!(call(&f, Abi::X86_64, "mmap", [1, 3, 0, 0, 0, 0]), errno(1));
    assert_eq!(call(&f, Abi::X86_64, "mmap", [0, 2, 0, 0, 0, 9]), ALLOW);
    assert_eq!(call(&f, Abi::X86_64, "mmap", [0, 0, 0, 0, 0, 0]), errno(1));
}

#[test]
fn repeated_argument_index_ors_like_runc() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{ "names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            { "index": 0, "value": 0, "op": "SCMP_CMP_EQ" },
            { "index": 0, "value": 8, "op": "SCMP_CMP_EQ" } ] }]
    }));
    assert_eq!(
        call(&f, Abi::X86_64, "personality", [0, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        call(&f, Abi::X86_64, "personality", [8, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        call(&f, Abi::X86_64, "personality", [9, 0, 0, 0, 0, 0]),
        errno(1)
    );
}

#[test]
fn highest_precedence_action_wins() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "syscalls": [
            { "names": ["read"], "action": "SCMP_ACT_LOG" },
            { "names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4,
              "args": [{ "index": 0, "value": 3, "op": "SCMP_CMP_EQ" }] },
            { "names": ["read"], "action": "SCMP_ACT_KILL_PROCESS",
              "args": [{ "index": 0, "value": 66, "op": "SCMP_CMP_EQ" }] },
            { "names": ["read"], "action": "SCMP_ACT_NOTIFY",
              "args": [{ "index": 0, "value": 3, "op": "SCMP_CMP_GE" }] },
            { "names": ["write"], "action": "SCMP_ACT_TRAP" },
            { "names": ["write"], "action": "SCMP_ACT_KILL" },
            { "names": ["close"], "action": "SCMP_ACT_TRACE", "errnoRet": 7 }
        ]
    }));
    assert_eq!(call(&f, Abi::X86_64, "read", [0, 0, 0, 0, 0, 0]), LOG);
    assert_eq!(call(&f, Abi::X86_64, "read", [3, 0, 0, 0, 0, 0]), errno(4));
    assert_eq!(
        call(&f, Abi::X86_64, "read", [66, 0, 0, 0, 0, 0]),
        KILL_PROCESS
    );
    assert_eq!(call(&f, Abi::X86_64, "read", [5, 0, 0, 0, 0, 0]), NOTIFY);
    assert_eq!(call(&f, Abi::X86_64, "write", NO_ARGS), KILL_THREAD);
    assert_eq!(call(&f, Abi::X86_64, "close", NO_ARGS), 0x7ff0_0007);
    assert_eq!(call(&f, Abi::X86_64, "open", NO_ARGS), ALLOW);
    assert!(f.uses_notify());
    // No ENOSYS stub when the default action allows.
    assert_eq!(call_nr(&f, Abi::X86_64.audit_arch(), 4000, NO_ARGS), ALLOW);
    let _ = TRAP;
}

#[test]
fn rules_equal_to_the_default_are_dropped() {
    // libseccomp refuses such rules and runc skips them, so the ALLOW rule decides.
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["personality"], "action": "SCMP_ACT_ERRNO" },
            { "names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [{ "index": 0, "value": 8, "op": "SCMP_CMP_EQ" }] }
        ]
    }));
    assert_eq!(
        call(&f, Abi::X86_64, "personality", [8, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        call(&f, Abi::X86_64, "personality", [1, 0, 0, 0, 0, 0]),
        errno(1)
    );
}

#[test]
fn flags_follow_the_profile() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    }));
    assert_eq!(f.flags(), 0b111);
    assert!(!f.uses_notify());
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    }));
    assert_eq!(f.flags(), 0, "WAIT_KILLABLE_RECV needs a listener");
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/agent.sock",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }]
    }));
    // NEW_LISTENER for notify; TSYNC with a listener needs TSYNC_ESRCH.
    assert_eq!(f.flags(), 1 | 8 | 16 | 32);
}

#[test]
fn invalid_profiles_are_rejected_before_fork() {
    let err = |v| match compile(&profile(v)) {
        Err(SeccompError::Profile(e)) => e,
        other => panic!("expected a profile error, got {other:?}"),
    };
    assert!(matches!(
        err(json!({ "defaultAction": "SCMP_ACT_NOTIFY" })),
        ProfileError::DefaultNotify
    ));
    assert!(matches!(
        err(json!({ "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }] })),
        ProfileError::NotifyWithoutListener { .. }
    ));
    assert!(matches!(
        err(json!({ "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1 }] })),
        ProfileError::ErrnoRetNotAllowed { .. }
    ));
    assert!(matches!(
        err(json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000 })),
        ProfileError::ErrnoRetRange { .. }
    ));
    let e = err(json!({ "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_KILL",
            "args": [{ "index": 6, "value": 0, "op": "SCMP_CMP_EQ" }] }] }));
    assert_eq!(
        e.to_string(),
        "seccomp rule for `mkdir`: argument index 6 exceeds 5"
    );
}

#[test]
fn long_programs_use_bridges_and_the_limit_is_enforced() {
    // Every x86_64 syscall with two 64-bit conditions: far beyond 255-insn jumps.
    let names: Vec<&str> = crate::table::SYSCALLS
        .iter()
        .filter(|row| row.2[Abi::X86_64 as usize] != crate::table::NONE)
        .map(|row| row.1)
        .collect();
    let rule = |op: &str| {
        json!({ "names": names, "action": "SCMP_ACT_ALLOW", "args": [
            { "index": 1, "value": 0x1_0000_0005u64, "op": op },
            { "index": 3, "value": 2, "op": "SCMP_CMP_NE" } ] })
    };
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [rule("SCMP_CMP_EQ")]
    }));
    assert!(f.len() > 2000, "{}", f.len());
    for name in ["read", "mkdir", "file_setattr"] {
        assert_eq!(
            call(&f, Abi::X86_64, name, [0, 0x1_0000_0005, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(call(&f, Abi::X86_64, name, [0, 5, 0, 0, 0, 0]), errno(1));
        assert_eq!(
            call(&f, Abi::X86_64, name, [0, 0x1_0000_0005, 0, 2, 0, 0]),
            errno(1)
        );
    }
    let too_long = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [rule("SCMP_CMP_EQ"), rule("SCMP_CMP_GT"), rule("SCMP_CMP_LT")]
    })));
    assert!(matches!(too_long, Err(SeccompError::ProgramTooLong { .. })));
}

#[test]
fn docker_default_blocks_what_docker_blocks() {
    let f = compile(&crate::docker::docker_default(&[])).expect("default profile compiles");
    let x = Abi::X86_64;
    const CLONE_NEWUSER: u64 = 0x1000_0000;
    const CLONE_THREAD_FLAGS: u64 = 0x003d_0f00;
    assert_eq!(call(&f, x, "read", NO_ARGS), ALLOW);
    assert_eq!(call(&f, x, "execve", NO_ARGS), ALLOW);
    assert_eq!(
        call(&f, x, "unshare", [CLONE_NEWUSER, 0, 0, 0, 0, 0]),
        errno(1)
    );
    assert_eq!(call(&f, x, "keyctl", NO_ARGS), errno(1));
    assert_eq!(call(&f, x, "mount", NO_ARGS), errno(1));
    assert_eq!(
        call(&f, x, "clone", [CLONE_THREAD_FLAGS, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        call(&f, x, "clone", [CLONE_NEWUSER, 0, 0, 0, 0, 0]),
        errno(1)
    );
    assert_eq!(call(&f, x, "clone3", NO_ARGS), errno(38));
    assert_eq!(call(&f, x, "personality", [8, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        call(&f, x, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(call(&f, x, "personality", [1, 0, 0, 0, 0, 0]), errno(1));
    assert_eq!(call(&f, x, "socket", [40, 0, 0, 0, 0, 0]), errno(1));
    assert_eq!(call(&f, x, "socket", [2, 0, 0, 0, 0, 0]), ALLOW);
    // 32-bit and x32 tasks get the same rules with their own numbers.
    assert_eq!(call(&f, Abi::X86, "unshare", NO_ARGS), errno(1));
    assert_eq!(call(&f, Abi::X86, "read", NO_ARGS), ALLOW);
    assert_eq!(call(&f, Abi::X32, "read", NO_ARGS), ALLOW);
    assert_eq!(call(&f, Abi::X32, "keyctl", NO_ARGS), errno(1));
    let admin = compile(&crate::docker::docker_default(&["CAP_SYS_ADMIN".into()]))
        .expect("default profile compiles");
    assert_eq!(
        call(&admin, x, "unshare", [CLONE_NEWUSER, 0, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        call(&admin, x, "clone", [CLONE_NEWUSER, 0, 0, 0, 0, 0]),
        ALLOW
    );
}

#[test]
fn features_list_what_the_compiler_knows() {
    let f = crate::features();
    assert_eq!(f["enabled"], true);
    assert_eq!(f["actions"].as_array().map(Vec::len), Some(9));
    assert_eq!(f["operators"].as_array().map(Vec::len), Some(7));
    assert!(
        f["archs"]
            .as_array()
            .expect("archs")
            .contains(&json!("SCMP_ARCH_X32"))
    );
    let known = f["knownFlags"].as_array().expect("knownFlags");
    let supported = f["supportedFlags"].as_array().expect("supportedFlags");
    assert!(supported.iter().all(|s| known.contains(s)));
    // Every kernel berth runs on has TSYNC (3.17) and LOG (4.14).
    assert!(supported.contains(&json!("SECCOMP_FILTER_FLAG_TSYNC")));
    assert!(supported.contains(&json!("SECCOMP_FILTER_FLAG_LOG")));
}

#[test]
fn docker_default_decides_every_syscall_in_few_instructions() {
    // The binary search bounds the path: arch dispatch, x32 split, ENOSYS check,
    // about log2(n) `jge`, at most LEAF `jeq`, and the `ret`.
    let f = compile(&crate::docker::docker_default(&[])).expect("default profile compiles");
    let audit = Abi::X86_64.audit_arch();
    let (mut max, mut total) = (0, 0);
    for nr in 0..=470 {
        let (_, steps) = run_counted(&f.program, &seccomp_data(audit, nr, NO_ARGS));
        max = max.max(steps);
        total += steps;
    }
    println!(
        "docker default, x86_64: max {max} mean {} instructions",
        total / 471
    );
    assert!(max <= 24, "longest path {max} instructions");
}
