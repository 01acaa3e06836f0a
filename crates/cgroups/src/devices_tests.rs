use super::*;

fn rules(json: &str) -> Vec<DeviceRule> {
    let list: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).expect("rules json");
    parse_rules(&list).expect("parse")
}

/// Runs the filter the way the kernel would for one access; returns r0.
fn run(prog: &[BpfInsn], kind: i32, access: u8, major: u32, minor: u32) -> i64 {
    let mut r = [0i64; 11];
    let ctx = [
        (u32::from(access) << 16) | kind.cast_unsigned(),
        major,
        minor,
    ];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = (usize::from(i.regs & 0x0f), usize::from(i.regs >> 4));
        let imm = i64::from(i.imm);
        pc += 1;
        match i.code {
            LDX_W => r[dst] = i64::from(ctx[usize::try_from(i.off).unwrap() / 4]),
            MOV_X => r[dst] = r[src],
            MOV_K => r[dst] = imm,
            AND_K => r[dst] &= imm,
            RSH_K => r[dst] >>= imm,
            JNE_K | JEQ_K => {
                if (i.code == JNE_K) == (r[dst] != imm) {
                    pc += usize::try_from(i.off).unwrap();
                }
            }
            EXIT => return r[0],
            c => panic!("unexpected opcode {c:#x}"),
        }
    }
}

const C: i32 = DEV_CHAR;
const B: i32 = DEV_BLOCK;

#[test]
fn v1_spelling() {
    let r = rules(
        r#"[{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            {"allow": true, "type": "b", "access": "m"},
            {"allow": true, "type": "c", "major": 136, "minor": -1}]"#,
    );
    let got: Vec<_> = v1_writes(&r)
        .into_iter()
        .map(|w| format!("{} {}", w.file, w.value))
        .collect();
    assert_eq!(
        got,
        [
            "devices.deny a",
            "devices.deny a",
            "devices.allow c 1:3 rw",
            "devices.allow b *:* m",
            "devices.allow c 136:* rwm",
        ]
    );
}

#[test]
fn partial_type_a_is_split_not_a_reset() {
    let r = rules(r#"[{"allow": true, "type": "a", "major": 1, "access": "r"}]"#);
    assert_eq!(r.len(), 2);
    assert_eq!(v1_text(&r[0]), "c 1:* r");
    assert_eq!(v1_text(&r[1]), "b 1:* r");
}

#[test]
fn filter_default_deny_with_allow_list() {
    let mut list = serde_json::to_string(&default_allowed_devices()).unwrap();
    list.insert_str(1, r#"{"allow": false, "access": "rwm"},"#);
    let prog = program(&rules(&list));
    assert_eq!(run(&prog, C, ACC_READ | ACC_WRITE, 1, 3), 1, "null rw");
    assert_eq!(run(&prog, C, ACC_READ, 136, 7), 1, "pts");
    assert_eq!(run(&prog, C, ACC_MKNOD, 42, 42), 1, "mknod any char");
    assert_eq!(run(&prog, C, ACC_READ, 42, 42), 0, "read other char");
    assert_eq!(run(&prog, B, ACC_READ, 8, 0), 0, "disk");
    assert_eq!(run(&prog, B, ACC_MKNOD, 8, 0), 1, "mknod block");
}

#[test]
fn filter_allow_needs_every_requested_bit() {
    let prog = program(&rules(
        r#"[{"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}]"#,
    ));
    assert_eq!(run(&prog, C, ACC_READ, 1, 5), 1);
    assert_eq!(run(&prog, C, ACC_READ | ACC_WRITE, 1, 5), 0);
    assert_eq!(run(&prog, B, ACC_READ, 1, 5), 0);
}

#[test]
fn filter_default_allow_with_deny_list() {
    let prog = program(&rules(
        r#"[{"allow": true, "access": "rwm"},
            {"allow": false, "type": "b", "major": 8, "access": "w"}]"#,
    ));
    assert_eq!(run(&prog, B, ACC_READ, 8, 1), 1, "read allowed");
    assert_eq!(
        run(&prog, B, ACC_READ | ACC_WRITE, 8, 1),
        0,
        "any denied bit denies"
    );
    assert_eq!(run(&prog, C, ACC_WRITE, 8, 1), 1, "other type");
}

#[test]
fn later_rules_override_earlier_ones_as_on_v1() {
    let r = rules(
        r#"[{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"},
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rw"},
            {"allow": false, "type": "c", "major": 1, "minor": 9, "access": "w"}]"#,
    );
    let (default_allow, ex) = effective(&r);
    assert!(!default_allow);
    assert_eq!(ex.len(), 1);
    assert_eq!((ex[0].minor, ex[0].access), (Some(9), ACC_READ));
    let prog = program(&r);
    assert_eq!(run(&prog, C, ACC_READ, 1, 3), 0, "reset by deny-all");
    assert_eq!(run(&prog, C, ACC_READ, 1, 9), 1);
    assert_eq!(run(&prog, C, ACC_WRITE, 1, 9), 0);
}

#[test]
fn refuses_fifo_and_bad_numbers() {
    let list: Vec<LinuxDeviceCgroup> =
        serde_json::from_str(r#"[{"allow": true, "type": "p"}]"#).unwrap();
    assert!(parse_rules(&list).is_err());
    let list: Vec<LinuxDeviceCgroup> =
        serde_json::from_str(r#"[{"allow": true, "type": "c", "major": 99999999999}]"#).unwrap();
    assert!(parse_rules(&list).is_err());
}

#[test]
fn unchanged_v1_list_is_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let d = CgroupDir::open(dir.path()).unwrap();
    let r = rules(
        r#"[{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"}]"#,
    );
    std::fs::write(dir.path().join("devices.list"), "c 136:* rwm\nc 1:3 rw\n").unwrap();
    assert!(list_matches(&d, &r).unwrap());
    std::fs::write(dir.path().join("devices.list"), "c 1:3 rw\n").unwrap();
    assert!(!list_matches(&d, &r).unwrap());
    std::fs::write(dir.path().join("devices.list"), "a *:* rwm\n").unwrap();
    assert!(!list_matches(&d, &r).unwrap());
    // Allow-all targets are always written: the kernel hides their exceptions.
    let all = rules(r#"[{"allow": true, "access": "rwm"}]"#);
    assert!(!list_matches(&d, &all).unwrap());
}
