use super::*;
use crate::fake::{FakeFs, Layout};
use crate::mounts::CgroupMountKind;

#[test]
fn default_path_is_berth_id_in_every_hierarchy() {
    let fake = FakeFs::new(Layout::Hybrid);
    let cg = Cgroup::new(&fake.hierarchy(), None, "abc").unwrap();
    assert_eq!(cg.version(), CgroupVersion::Hybrid);
    assert!(cg.paths().iter().all(|p| p.ends_with("berth/abc")));
    assert!(
        cg.paths()
            .contains(&fake.path("memory/berth/abc").as_path())
    );
    assert!(
        cg.paths()
            .contains(&fake.path("unified/berth/abc").as_path())
    );
    assert_eq!(cg.owned_parents, 1);
}

#[test]
fn absolute_and_relative_paths() {
    let fake = FakeFs::new(Layout::Hybrid);
    let h = fake.hierarchy();
    let abs = Cgroup::new(&h, Some("/kube/pod1/c"), "c").unwrap();
    assert!(
        abs.paths()
            .contains(&fake.path("cpu/kube/pod1/c").as_path())
    );
    assert_eq!(abs.owned_parents, 0);
    // Relative: v1 under this process's own cgroup, v2 under its parent.
    let rel = Cgroup::new(&h, Some("sub/c"), "c").unwrap();
    assert!(
        rel.paths()
            .contains(&fake.path("memory/own/sub/c").as_path())
    );
    assert!(rel.paths().contains(&fake.path("cpu/sub/c").as_path()));
    assert!(
        rel.paths()
            .contains(&fake.path("unified/user/sub/c").as_path())
    );
}

#[test]
fn refused_paths() {
    let fake = FakeFs::new(Layout::V1);
    let h = fake.hierarchy();
    let err = Cgroup::new(&h, Some("system.slice:berth:abc"), "abc").unwrap_err();
    assert!(matches!(err, CgroupError::SystemdPath { .. }), "{err}");
    for bad in ["/a/../../etc", "/", "../x"] {
        let err = Cgroup::new(&h, Some(bad), "x").unwrap_err();
        assert!(
            matches!(err, CgroupError::InvalidPath { .. }),
            "{bad}: {err}"
        );
    }
    for id in ["", "..", "a/b"] {
        assert!(Cgroup::new(&h, None, id).is_err(), "{id:?}");
    }
}

#[test]
fn create_fills_empty_cpusets_from_the_parent() {
    let fake = FakeFs::new(Layout::V1);
    let h = fake.hierarchy();
    fake.precreate(&h, "berth/c");
    Cgroup::new(&h, None, "c").unwrap().create().unwrap();
    assert_eq!(fake.read("cpuset/berth/cpuset.cpus"), "0-3");
    assert_eq!(fake.read("cpuset/berth/c/cpuset.cpus"), "0-3");
    assert_eq!(fake.read("cpuset/berth/c/cpuset.mems"), "0");
}

#[test]
fn create_enables_v2_controllers_down_the_path() {
    let fake = FakeFs::new(Layout::V2);
    let h = fake.hierarchy();
    fake.precreate(&h, "a/b");
    Cgroup::new(&h, Some("/a/b"), "b")
        .unwrap()
        .create()
        .unwrap();
    // The fake keeps the last write only; the kernel accumulates them.
    assert_eq!(fake.read("unified/cgroup.subtree_control"), "+pids");
    assert_eq!(fake.read("unified/a/cgroup.subtree_control"), "+pids");
    assert_eq!(fake.read("unified/a/b/cgroup.subtree_control"), "");
}

#[test]
fn create_makes_dirs_and_rolls_back_on_failure() {
    let fake = FakeFs::new(Layout::V1);
    let h = fake.hierarchy();
    // Nothing precreated: the cpuset fill fails on the missing files, and every
    // directory made so far is removed again.
    let cg = Cgroup::new(&h, None, "r").unwrap();
    let err = cg.create().unwrap_err();
    assert!(err.to_string().contains("cpuset"), "{err}");
    assert!(!cg.exists());
    assert!(!fake.path("cpu/berth").exists());
}

#[test]
fn destroy_of_a_never_created_cgroup_is_ok() {
    let fake = FakeFs::new(Layout::Hybrid);
    let cg = Cgroup::new(&fake.hierarchy(), None, "gone").unwrap();
    assert!(!cg.exists());
    cg.destroy().unwrap();
}

#[test]
fn destroy_removes_owned_empty_parents_only() {
    let fake = FakeFs::new(Layout::V1);
    let h = fake.hierarchy();
    // Bare directories (no files) so that rmdir works on the fake.
    for p in cgroup_paths(&h, "berth/a")
        .into_iter()
        .chain(cgroup_paths(&h, "berth/b"))
    {
        fs::create_dir_all(p).unwrap();
    }
    fs::create_dir_all(fake.path("cpu/keep/x")).unwrap();
    Cgroup::new(&h, None, "a").unwrap().destroy().unwrap();
    assert!(fake.path("cpu/berth/b").is_dir(), "sibling untouched");
    Cgroup::new(&h, None, "b").unwrap().destroy().unwrap();
    assert!(!fake.path("cpu/berth").exists(), "empty /berth removed");
    Cgroup::new(&h, Some("/keep/x"), "x")
        .unwrap()
        .destroy()
        .unwrap();
    assert!(fake.path("cpu/keep").is_dir(), "config-given parents stay");
}

fn cgroup_paths(h: &Hierarchy, rel: &str) -> Vec<PathBuf> {
    h.mounts.iter().map(|m| m.mount_point.join(rel)).collect()
}

#[test]
fn state_round_trips_through_json() {
    let fake = FakeFs::new(Layout::Hybrid);
    let cg = Cgroup::new(&fake.hierarchy(), None, "j").unwrap();
    let text = serde_json::to_string(&cg).unwrap();
    let back: Cgroup = serde_json::from_str(&text).unwrap();
    assert_eq!(back, cg);
}

#[test]
fn pids_include_sub_cgroups() {
    let fake = FakeFs::new(Layout::V1);
    let h = fake.hierarchy();
    fake.precreate(&h, "berth/p/inner");
    fs::write(fake.path("pids/berth/p/cgroup.procs"), "10\n12\n").unwrap();
    fs::write(fake.path("pids/berth/p/inner/cgroup.procs"), "11\n").unwrap();
    let cg = Cgroup::new(&h, None, "p").unwrap();
    assert_eq!(cg.pids().unwrap(), [10, 11, 12]);
    cg.add_pid(99).unwrap();
    assert_eq!(fake.read("memory/berth/p/cgroup.procs"), "99");
}

#[test]
fn join_self_writes_zero_to_v1_tasks_and_skips_unified_when_born_there() {
    let fake = FakeFs::new(Layout::Hybrid);
    let h = fake.hierarchy();
    fake.precreate(&h, "berth/s");
    let cg = Cgroup::new(&h, None, "s").unwrap();
    let unified = cg.unified_path().unwrap().to_path_buf();
    assert!(
        unified.ends_with("unified/berth/s"),
        "{}",
        unified.display()
    );
    cg.join_self(true).unwrap();
    assert_eq!(fake.read("memory/berth/s/tasks"), "0");
    assert_eq!(fake.read("pids/berth/s/tasks"), "0");
    let procs = || fs::read_to_string(unified.join("cgroup.procs")).unwrap();
    assert_eq!(procs(), "", "born in the v2 cgroup: no write");
    cg.join_self(false).unwrap();
    assert_eq!(procs(), "0");

    let fake = FakeFs::new(Layout::V1);
    let h = fake.hierarchy();
    fake.precreate(&h, "berth/s");
    assert_eq!(Cgroup::new(&h, None, "s").unwrap().unified_path(), None);
}

#[test]
fn freezer_v1_and_v2() {
    let fake = FakeFs::new(Layout::V1);
    let h = fake.hierarchy();
    fake.precreate(&h, "berth/f");
    let cg = Cgroup::new(&h, None, "f").unwrap();
    cg.freeze().unwrap();
    assert_eq!(fake.read("freezer/berth/f/freezer.state"), "FROZEN");
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());

    let fake = FakeFs::new(Layout::V2);
    let h = fake.hierarchy();
    fake.precreate(&h, "berth/f");
    let cg = Cgroup::new(&h, None, "f").unwrap();
    // The fake's cgroup.events says frozen at once, as the kernel would eventually.
    fs::write(
        fake.path("unified/berth/f/cgroup.events"),
        "populated 1\nfrozen 1\n",
    )
    .unwrap();
    cg.freeze().unwrap();
    assert_eq!(fake.read("unified/berth/f/cgroup.freeze"), "1");
    assert!(cg.is_frozen().unwrap());
}

#[test]
fn stats_and_oom_count_v1() {
    let fake = FakeFs::new(Layout::V1);
    let h = fake.hierarchy();
    fake.precreate(&h, "berth/s");
    let w = |rel: &str, v: &str| fs::write(fake.path(rel), v).unwrap();
    w("cpuacct/berth/s/cpuacct.usage", "5000\n");
    w("cpuacct/berth/s/cpuacct.usage_percpu", "3000 2000 \n");
    w("cpuacct/berth/s/cpuacct.stat", "user 2\nsystem 1\n");
    w(
        "cpu/berth/s/cpu.stat",
        "nr_periods 4\nnr_throttled 1\nthrottled_time 77\n",
    );
    w("memory/berth/s/memory.stat", "cache 4096\nrss 8192\n");
    w("memory/berth/s/memory.usage_in_bytes", "12288\n");
    w(
        "memory/berth/s/memory.limit_in_bytes",
        "9223372036854771712\n",
    );
    w("memory/berth/s/memory.memsw.limit_in_bytes", "-1\n");
    w("hugetlb/berth/s/hugetlb.2MB.limit_in_bytes", "0\n");
    w(
        "memory/berth/s/memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    w("pids/berth/s/pids.current", "3\n");
    w("pids/berth/s/pids.max", "max\n");
    let cg = Cgroup::new(&h, None, "s").unwrap();
    let s = cg.stats().unwrap();
    assert_eq!(s.cpu.usage.total, 5000);
    assert_eq!(s.cpu.usage.percpu, [3000, 2000]);
    assert_eq!(
        (s.cpu.usage.user, s.cpu.usage.kernel),
        (20_000_000, 10_000_000)
    );
    assert_eq!(s.cpu.throttling.throttled_time, 77);
    assert_eq!((s.memory.cache, s.memory.usage.usage), (4096, 12288));
    assert_eq!(s.memory.raw.get("rss"), Some(&8192));
    assert_eq!((s.pids.current, s.pids.limit), (3, 0));
    assert!(s.hugetlb.contains_key("2MB"));
    assert_eq!(cg.oom_kill_count().unwrap(), 2);
}

#[test]
fn stats_and_oom_count_v2() {
    let fake = FakeFs::new(Layout::V2);
    let h = fake.hierarchy();
    fake.precreate(&h, "berth/s");
    let w =
        |rel: &str, v: &str| fs::write(fake.path(&format!("unified/berth/s/{rel}")), v).unwrap();
    w(
        "cpu.stat",
        "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 2\nthrottled_usec 3\n",
    );
    w("memory.stat", "anon 100\nfile 200\n");
    w("memory.current", "300\n");
    w("memory.max", "max\n");
    w("memory.swap.max", "0\n");
    w("memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n");
    w(
        "io.stat",
        "8:0 rbytes=1024 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n",
    );
    w("pids.current", "1\n");
    w("pids.max", "64\n");
    let cg = Cgroup::new(&h, None, "s").unwrap();
    let s = cg.stats().unwrap();
    assert_eq!(
        (s.cpu.usage.total, s.cpu.usage.user, s.cpu.usage.kernel),
        (10_000, 6000, 4000)
    );
    assert_eq!(s.cpu.throttling.throttled_time, 3000);
    assert_eq!(
        (s.memory.cache, s.memory.usage.usage, s.memory.usage.failcnt),
        (200, 300, 5)
    );
    assert_eq!(s.memory.usage.limit, u64::MAX);
    assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
    assert_eq!(s.blkio.io_serviced_recursive[1].value, 2);
    assert_eq!((s.pids.current, s.pids.limit), (1, 64));
    assert_eq!(cg.oom_kill_count().unwrap(), 1);
}

#[test]
fn container_mounts_per_layout() {
    let fake = FakeFs::new(Layout::V2);
    let m = Cgroup::new(&fake.hierarchy(), None, "m")
        .unwrap()
        .container_mounts();
    assert_eq!(m.len(), 1);
    assert!(matches!(&m[0].kind, CgroupMountKind::Mount { fstype, .. } if fstype == "cgroup2"));

    let fake = FakeFs::new(Layout::Hybrid);
    std::os::unix::fs::symlink("cpu", fake.path("cpu-alias")).unwrap();
    let m = Cgroup::new(&fake.hierarchy(), None, "m")
        .unwrap()
        .container_mounts();
    let desc: Vec<String> = m
        .iter()
        .map(|m| match &m.kind {
            CgroupMountKind::Mount { fstype, data, .. } => {
                format!(
                    "{} {fstype} {}",
                    m.dest.display(),
                    data.clone().unwrap_or_default()
                )
            }
            CgroupMountKind::Symlink { target } => format!("{} -> {target}", m.dest.display()),
        })
        .collect();
    assert_eq!(desc[0], " tmpfs mode=755");
    assert!(desc.contains(&"cpu cgroup cpu".to_owned()), "{desc:?}");
    assert!(desc.contains(&"cpu-alias -> cpu".to_owned()), "{desc:?}");
    assert!(
        desc.contains(&"systemd cgroup name=systemd".to_owned()),
        "{desc:?}"
    );
    assert!(desc.contains(&"unified cgroup2 ".to_owned()), "{desc:?}");
}
