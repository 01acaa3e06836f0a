use super::*;
use crate::cgroup::Cgroup;
use crate::devices;
use crate::fake::{FakeFs, Layout};

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

const FULL: &str = r#"{
  "memory": {"limit": 1048576, "reservation": 524288, "swap": 2097152, "swappiness": 10, "disableOOMKiller": true},
  "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0", "idle": 1},
  "pids": {"limit": 32},
  "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]},
  "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]
}"#;

fn plan_for(
    r: &LinuxResources,
    fl: &dyn Fn(Ctrl) -> Option<Flavor>,
    unified: Option<&[String]>,
) -> Vec<(String, String)> {
    let steps = plan(r, fl, unified).expect("plan");
    let mut out = Vec::new();
    for s in steps {
        match s {
            Step::Write(w) => out.push((w.file, w.value)),
            Step::Pair(a, b) => {
                out.push((a.file, a.value));
                out.push((b.file, b.value));
            }
            Step::FirstOf { writes, .. } => {
                out.push((writes[0].file.clone(), writes[0].value.clone()))
            }
            Step::DeviceList(rules) => {
                out.extend(
                    devices::v1_writes(&rules)
                        .into_iter()
                        .map(|w| (w.file, w.value)),
                );
            }
            Step::DeviceFilter(_) => out.push(("<bpf>".into(), String::new())),
        }
    }
    out
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn full_resources_on_v1() {
    let got = plan_for(&resources(FULL), &|_| Some(Flavor::V1), None);
    assert_eq!(
        got,
        pairs(&[
            ("memory.limit_in_bytes", "1048576"),
            ("memory.memsw.limit_in_bytes", "2097152"),
            ("memory.soft_limit_in_bytes", "524288"),
            ("memory.swappiness", "10"),
            ("memory.oom_control", "1"),
            ("cpu.shares", "1024"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "50000"),
            ("cpu.idle", "1"),
            ("cpuset.cpus", "0-1"),
            ("cpuset.mems", "0"),
            ("pids.max", "32"),
            ("blkio.weight", "500"),
            ("blkio.throttle.read_bps_device", "8:0 1000"),
            ("hugetlb.2MB.limit_in_bytes", "4194304"),
        ])
    );
}

#[test]
fn full_resources_on_v2() {
    let got = plan_for(&resources(FULL), &|_| Some(Flavor::V2), Some(&[]));
    assert_eq!(
        got,
        pairs(&[
            ("memory.swap.max", "1048576"),
            ("memory.max", "1048576"),
            ("memory.low", "524288"),
            ("cpu.weight", "100"),
            ("cpu.max", "50000 100000"),
            ("cpu.idle", "1"),
            ("cpuset.cpus", "0-1"),
            ("cpuset.mems", "0"),
            ("pids.max", "32"),
            ("io.bfq.weight", "500"),
            ("io.max", "8:0 rbps=1000"),
            ("hugetlb.2MB.max", "4194304"),
        ])
    );
}

#[test]
fn hybrid_mixes_spellings_per_controller() {
    let fl = |c| {
        if c == Ctrl::Hugetlb {
            Some(Flavor::V2)
        } else {
            Some(Flavor::V1)
        }
    };
    let r = resources(
        r#"{"memory": {"limit": 4096}, "hugepageLimits": [{"pageSize": "2MB", "limit": -1}]}"#,
    );
    let got = plan_for(&r, &fl, Some(&["hugetlb".to_owned()]));
    assert_eq!(
        got,
        pairs(&[
            ("memory.limit_in_bytes", "4096"),
            ("hugetlb.2MB.max", "max")
        ])
    );
}

#[test]
fn hugetlb_zero_is_a_limit_and_weight_devices_convert() {
    let r = resources(
        r#"{"hugepageLimits": [{"pageSize": "1GB", "limit": 0}],
            "blockIO": {"weightDevice": [{"major": 8, "minor": 16, "weight": 1000}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}]}}"#,
    );
    let v1 = plan_for(&r, &|_| Some(Flavor::V1), None);
    assert_eq!(
        v1,
        pairs(&[
            ("blkio.weight_device", "8:16 1000"),
            ("blkio.throttle.write_iops_device", "8:16 0"),
            ("hugetlb.1GB.limit_in_bytes", "0"),
        ])
    );
    let steps = plan(&r, &|_| Some(Flavor::V2), Some(&[])).unwrap();
    let Step::FirstOf { writes, .. } = &steps[0] else {
        panic!("weight is a FirstOf: {steps:?}")
    };
    assert_eq!(
        (writes[0].file.as_str(), writes[0].value.as_str()),
        ("io.bfq.weight", "8:16 1000")
    );
    assert_eq!(
        (writes[1].file.as_str(), writes[1].value.as_str()),
        ("io.weight", "8:16 10000")
    );
    let v2 = plan_for(&r, &|_| Some(Flavor::V2), Some(&[]));
    assert_eq!(v2[1], ("io.max".to_owned(), "8:16 wiops=max".to_owned()));
    assert_eq!(v2[2], ("hugetlb.1GB.max".to_owned(), "0".to_owned()));
}

#[test]
fn unlimited_values() {
    let r = resources(r#"{"memory": {"limit": -1}, "cpu": {"quota": -1}, "pids": {"limit": -1}}"#);
    let v1 = plan_for(&r, &|_| Some(Flavor::V1), None);
    assert_eq!(
        v1,
        pairs(&[
            ("memory.memsw.limit_in_bytes", "-1"),
            ("memory.limit_in_bytes", "-1"),
            ("cpu.cfs_quota_us", "-1"),
            ("pids.max", "max"),
        ])
    );
    let v2 = plan_for(&r, &|_| Some(Flavor::V2), Some(&[]));
    assert_eq!(
        v2,
        pairs(&[
            ("memory.swap.max", "max"),
            ("memory.max", "max"),
            ("cpu.max", "max"),
            ("pids.max", "max")
        ])
    );
}

#[test]
fn v2_ignores_v1_only_memory_knobs_but_refuses_realtime() {
    let r = resources(r#"{"memory": {"swappiness": 5, "disableOOMKiller": true}}"#);
    assert!(plan_for(&r, &|_| Some(Flavor::V2), Some(&[])).is_empty());
    let r = resources(r#"{"cpu": {"realtimeRuntime": 950000}}"#);
    assert!(plan(&r, &|_| Some(Flavor::V2), Some(&[])).is_err());
    let got = plan_for(&r, &|_| Some(Flavor::V1), None);
    assert_eq!(got, pairs(&[("cpu.rt_runtime_us", "950000")]));
}

#[test]
fn refuses_bad_values() {
    let v1 = |_| Some(Flavor::V1);
    let bad = [
        r#"{"memory": {"limit": 2000, "swap": 1000}}"#,
        r#"{"memory": {"limit": -5}}"#,
        r#"{"memory": {"swappiness": 101}}"#,
        r#"{"cpu": {"quota": -2}}"#,
        r#"{"cpu": {"cpus": "0;rm"}}"#,
        r#"{"cpu": {"idle": 3}}"#,
        r#"{"blockIO": {"weight": 5}}"#,
        r#"{"hugepageLimits": [{"pageSize": "../x", "limit": 1}]}"#,
        r#"{"devices": [{"allow": true, "type": "c", "access": "rwx"}]}"#,
    ];
    for b in bad {
        let err = plan(&resources(b), &v1, None).expect_err(b);
        assert!(
            matches!(err, CgroupError::InvalidResource { .. }),
            "{b}: {err}"
        );
    }
    // v2 only: swap without memory limit.
    let r = resources(r#"{"memory": {"swap": 1000}}"#);
    assert!(plan(&r, &|_| Some(Flavor::V2), Some(&[])).is_err());
}

#[test]
fn unified_keys_need_v2_and_the_controller() {
    let r = resources(r#"{"unified": {"memory.high": "1000", "cgroup.max.depth": "3"}}"#);
    let err = plan(&r, &|_| Some(Flavor::V1), None).unwrap_err();
    assert!(matches!(err, CgroupError::UnifiedWithoutV2 { .. }), "{err}");
    let err = plan(&r, &|_| Some(Flavor::V2), Some(&["cpu".to_owned()])).unwrap_err();
    assert!(
        matches!(err, CgroupError::ControllerMissing { .. }),
        "{err}"
    );
    let got = plan_for(&r, &|_| Some(Flavor::V2), Some(&["memory".to_owned()]));
    assert_eq!(
        got,
        pairs(&[("cgroup.max.depth", "3"), ("memory.high", "1000")])
    );
    let r = resources(r#"{"unified": {"../memory.max": "1"}}"#);
    assert!(plan(&r, &|_| Some(Flavor::V2), Some(&[])).is_err());
}

#[test]
fn missing_controller_is_named() {
    let r = resources(r#"{"pids": {"limit": 3}}"#);
    let err = plan(&r, &|c| (c != Ctrl::Pids).then_some(Flavor::V1), None).unwrap_err();
    assert!(err.to_string().contains("pids"), "{err}");
}

#[test]
fn conversions_match_runc() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 100);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(1), 1);
    let mut last = 0;
    for s in (2..262_144).step_by(997) {
        let w = shares_to_weight(s);
        assert!(w >= last && (1..=10_000).contains(&w));
        last = w;
    }
    assert_eq!(blkio_to_io_weight(10), 1);
    assert_eq!(blkio_to_io_weight(1000), 10_000);
    assert_eq!(blkio_to_io_weight(500), 4950);
}

#[test]
fn devices_on_v1_deny_all_first() {
    let r = resources(
        r#"{"devices": [{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}"#,
    );
    let got = plan_for(&r, &|_| Some(Flavor::V1), None);
    assert_eq!(
        got,
        pairs(&[("devices.deny", "a"), ("devices.allow", "c 1:3 rw")])
    );
    let got = plan_for(&r, &|_| Some(Flavor::V2), Some(&[]));
    assert_eq!(got, pairs(&[("<bpf>", "")]));
}

#[test]
fn validate_uses_the_host_layout() {
    let fake = FakeFs::new(Layout::V1);
    let h = fake.hierarchy();
    validate(&resources(FULL), &h).expect("full is valid on v1");
    let err = validate(&resources(r#"{"unified": {"memory.high": "1"}}"#), &h).unwrap_err();
    assert!(matches!(err, CgroupError::UnifiedWithoutV2 { .. }));
}

#[test]
fn apply_writes_the_fake_v1_tree() {
    let fake = FakeFs::new(Layout::V1);
    let h = fake.hierarchy();
    let cg = Cgroup::new(&h, None, "c1").unwrap();
    fake.precreate(&h, "berth/c1");
    cg.create().unwrap();
    cg.apply(&resources(FULL)).unwrap();
    assert_eq!(
        fake.read("memory/berth/c1/memory.limit_in_bytes"),
        "1048576"
    );
    assert_eq!(
        fake.read("memory/berth/c1/memory.memsw.limit_in_bytes"),
        "2097152"
    );
    assert_eq!(fake.read("cpu/berth/c1/cpu.cfs_quota_us"), "50000");
    assert_eq!(fake.read("cpuset/berth/c1/cpuset.cpus"), "0-1");
    assert_eq!(fake.read("pids/berth/c1/pids.max"), "32");
    assert_eq!(fake.read("blkio/berth/c1/blkio.weight"), "500");
    assert_eq!(
        fake.read("hugetlb/berth/c1/hugetlb.2MB.limit_in_bytes"),
        "4194304"
    );
}

#[test]
fn apply_writes_the_fake_v2_tree() {
    let fake = FakeFs::new(Layout::V2);
    let h = fake.hierarchy();
    let cg = Cgroup::new(&h, Some("/x/c2"), "c2").unwrap();
    fake.precreate(&h, "x/c2");
    cg.create().unwrap();
    cg.apply(&resources(FULL)).unwrap();
    assert_eq!(fake.read("unified/x/c2/memory.max"), "1048576");
    assert_eq!(fake.read("unified/x/c2/memory.swap.max"), "1048576");
    assert_eq!(fake.read("unified/x/c2/cpu.weight"), "100");
    // No io.bfq.weight in this tree: io.weight with the converted value.
    assert_eq!(fake.read("unified/x/c2/io.weight"), "4950");
    assert_eq!(fake.read("unified/x/c2/hugetlb.2MB.max"), "4194304");
}

#[test]
fn apply_on_hybrid_puts_hugetlb_in_the_v2_tree() {
    let fake = FakeFs::new(Layout::Hybrid);
    let h = fake.hierarchy();
    let cg = Cgroup::new(&h, None, "c3").unwrap();
    fake.precreate(&h, "berth/c3");
    cg.create().unwrap();
    cg.apply(&resources(FULL)).unwrap();
    assert_eq!(
        fake.read("memory/berth/c3/memory.limit_in_bytes"),
        "1048576"
    );
    assert_eq!(fake.read("unified/berth/c3/hugetlb.2MB.max"), "4194304");
    assert!(!fake.path("memory/berth/c3/memory.max").exists());
}
