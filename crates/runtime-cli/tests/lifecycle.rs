//! Lifecycle through the runc command line: create, state, start, kill, pause/resume,
//! update, ps, exec, delete.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn create_start_exit_delete_walks_every_state() {
    if !need_root("lifecycle") {
        return;
    }
    let b = Bundle::new();
    b.args(&["sh", "-c", "read x < /dev/null; sleep 0.3"]);
    let id = unique_id("life");
    b.rt_ok(&["create", &id]);
    assert_eq!(b.status(&id), "created");
    let list = b.rt_ok(&["list", "--format", "json"]);
    assert!(list.contains(&id));
    b.rt_ok(&["start", &id]);
    assert_eq!(b.status(&id), "running");
    b.wait_status(&id, "stopped");
    assert_eq!(b.state_of(&id)["pid"], 0);
    b.rt_ok(&["delete", &id]);
    b.assert_no_leaks(&id);
    let out = b.rt(&["state", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"));
}

#[test]
fn kill_delivers_signals_by_name_and_number() {
    if !need_root("kill") {
        return;
    }
    let b = Bundle::new();
    b.args(&[
        "sh",
        "-c",
        "trap 'echo got-usr1 > /tmp/sig' USR1; trap 'exit 3' TERM; while true; do sleep 0.05; done",
    ]);
    let id = unique_id("kill");
    b.rt_ok(&["create", &id]);
    b.rt_ok(&["start", &id]);
    let pid = b.state_of(&id)["pid"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    b.rt_ok(&["kill", &id, "USR1"]);
    let sig_file = format!("/proc/{pid}/root/tmp/sig");
    let mut got = String::new();
    for _ in 0..100 {
        got = std::fs::read_to_string(&sig_file).unwrap_or_default();
        if !got.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(got, "got-usr1\n");
    b.rt_ok(&["kill", &id, "15"]);
    b.wait_status(&id, "stopped");
    let out = b.rt(&["kill", &id, "KILL"]);
    assert!(
        !out.status.success(),
        "kill of a stopped container must fail"
    );
    b.rt_ok(&["delete", &id]);
    b.assert_no_leaks(&id);
}

fn counter(pid: i64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/root/tmp/c"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn pause_stops_the_container_and_resume_continues_it() {
    if !need_root("pause_resume") {
        return;
    }
    let b = Bundle::new();
    b.args(&["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/c; sleep 0.02; done"]);
    let id = unique_id("pause");
    b.rt_ok(&["create", &id]);
    b.rt_ok(&["start", &id]);
    let pid = b.state_of(&id)["pid"].as_i64().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    b.rt_ok(&["pause", &id]);
    assert_eq!(b.status(&id), "paused");
    let frozen = counter(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(counter(pid), frozen, "counter advanced while paused");
    b.rt_ok(&["resume", &id]);
    assert_eq!(b.status(&id), "running");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        counter(pid) > frozen,
        "counter did not advance after resume"
    );
    b.rt_ok(&["delete", "--force", &id]);
    b.assert_no_leaks(&id);
}

#[test]
fn update_changes_the_memory_limit_of_a_running_container() {
    if !need_root("update") {
        return;
    }
    let b = Bundle::new();
    b.edit(|c| c["linux"]["resources"]["memory"] = serde_json::json!({"limit": 64 << 20}));
    b.args(&["sleep", "30"]);
    let id = unique_id("upd");
    b.rt_ok(&["create", &id]);
    b.rt_ok(&["start", &id]);
    let limit = |b: &Bundle| -> i64 {
        let s: serde_json::Value =
            serde_json::from_str(&b.rt_ok(&["events", "--stats", &id])).unwrap();
        s["data"]["memory"]["usage"]["limit"].as_i64().unwrap()
    };
    assert_eq!(limit(&b), 64 << 20);
    b.rt_ok(&["update", "--memory", "32m", &id]);
    assert_eq!(limit(&b), 32 << 20);
    let r = b.path().join("res.json");
    std::fs::write(&r, r#"{"memory":{"limit":50331648}}"#).unwrap();
    b.rt_ok(&["update", "--resources", r.to_str().unwrap(), &id]);
    assert_eq!(limit(&b), 48 << 20);
    b.rt_ok(&["delete", "--force", &id]);
    b.assert_no_leaks(&id);
}

#[test]
fn ps_and_exec_see_the_containers_processes() {
    if !need_root("ps_exec") {
        return;
    }
    let b = Bundle::new();
    b.args(&["sleep", "30"]);
    let id = unique_id("ps");
    b.rt_ok(&["create", &id]);
    b.rt_ok(&["start", &id]);
    let pid = b.state_of(&id)["pid"].as_i64().unwrap();
    let pids: Vec<i64> = serde_json::from_str(&b.rt_ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids, vec![pid]);
    let table = b.rt_ok(&["ps", &id]);
    assert!(table.lines().any(|l| l.contains("sleep 30")), "{table}");
    let out = b.rt(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo $$ $(cat /proc/1/cmdline | tr '\\0' ' '); exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("sleep 30"), "{text}");
    let exec_pid: i64 = text.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        exec_pid > 1,
        "exec'd process must be in the container's pid namespace"
    );
    b.rt_ok(&["delete", "--force", &id]);
    b.assert_no_leaks(&id);
}

/// The host's view of a process's cgroups: one `hierarchy-id:controllers:path` per line.
fn host_cgroups(pid: i64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap()
}

#[test]
fn init_and_exec_land_in_the_containers_cgroup_in_every_hierarchy() {
    if !need_root("cgroup_join") {
        return;
    }
    // Stage-1 moves itself (v1 `tasks`) and is forked into the v2 directory
    // (CLONE_INTO_CGROUP); nothing writes another pid into cgroup.procs any more.
    let b = Bundle::new();
    b.args(&["sleep", "30"]);
    let id = unique_id("cgj");
    b.rt_ok(&["create", &id]);
    b.rt_ok(&["start", &id]);
    let pid = b.state_of(&id)["pid"].as_i64().unwrap();
    let out = b.rt(&["exec", "-d", "--pid-file", "exec.pid", &id, "sleep", "30"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exec_pid: i64 = std::fs::read_to_string(b.path().join("exec.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for p in [pid, exec_pid] {
        let text = host_cgroups(p);
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert!(!lines.is_empty());
        for l in &lines {
            let path = l.splitn(3, ':').nth(2).unwrap();
            // Optional v1 hierarchies (net_cls, perf_event, …) may be skipped by design;
            // the ones that carry a controller or the v2 tree must hold the container.
            let optional = ["net_cls", "net_prio", "perf_event", "rdma", "misc"]
                .iter()
                .any(|c| l.split(':').nth(1).unwrap_or("").contains(c));
            assert!(
                path.ends_with(&id) || optional,
                "pid {p} is not in the container's cgroup: {l}\n{text}"
            );
        }
    }
    b.rt_ok(&["delete", "--force", &id]);
    b.assert_no_leaks(&id);
}
