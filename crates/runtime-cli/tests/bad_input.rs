//! Bad input: each case is a clear error, a non-zero exit, and nothing left behind.

mod common;

use common::*;

fn assert_clean_failure(b: &Bundle, id: &str, args: &[&str], needle: &str) {
    let out = b.rt(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = stderr(&out);
    assert!(
        err.contains(needle),
        "{args:?}: error `{err}` does not mention `{needle}`"
    );
    b.assert_no_leaks(id);
}

#[test]
fn malformed_and_wrong_typed_config_name_the_problem() {
    if !need_root("bad_config") {
        return;
    }
    let b = Bundle::new();
    let id = unique_id("badcfg");
    std::fs::write(b.path().join("config.json"), "{\"ociVersion\": \"1.0.2\", ").unwrap();
    assert_clean_failure(&b, &id, &["create", &id], "config.json");
    std::fs::write(
        b.path().join("config.json"),
        r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":"zero","gid":0}}}"#,
    )
    .unwrap();
    assert_clean_failure(&b, &id, &["create", &id], "process.user.uid");
}

#[test]
fn missing_rootfs_is_refused() {
    if !need_root("missing_rootfs") {
        return;
    }
    let b = Bundle::new();
    b.edit(|c| c["root"]["path"] = "no-such-rootfs".into());
    let id = unique_id("norootfs");
    assert_clean_failure(&b, &id, &["create", &id], "no-such-rootfs");
}

#[test]
fn ids_that_name_paths_are_refused() {
    if !need_root("bad_ids") {
        return;
    }
    let b = Bundle::new();
    for bad in ["../escape", "a/b", "..", "."] {
        let out = b.rt(&["create", bad]);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(stderr(&out).contains("invalid"), "{}", stderr(&out));
        let left: Vec<_> = std::fs::read_dir(b.state.path()).unwrap().collect();
        assert!(left.is_empty(), "state root not empty after `{bad}`");
    }
    assert!(!b.state.path().parent().unwrap().join("escape").exists());
    assert!(cgroup_dirs("escape").is_empty());
}

#[test]
fn duplicate_id_is_refused_and_the_first_container_survives() {
    if !need_root("duplicate_id") {
        return;
    }
    let b = Bundle::new();
    b.args(&["sleep", "30"]);
    let id = unique_id("dup");
    b.rt_ok(&["create", &id]);
    let out = b.rt(&["create", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(b.status(&id), "created");
    b.rt_ok(&["delete", "--force", &id]);
    b.assert_no_leaks(&id);
}

#[test]
fn unknown_signal_and_delete_of_a_running_container_are_refused() {
    if !need_root("kill_delete_refusals") {
        return;
    }
    let b = Bundle::new();
    b.args(&["sleep", "30"]);
    let id = unique_id("refuse");
    b.rt_ok(&["create", &id]);
    b.rt_ok(&["start", &id]);
    let out = b.rt(&["kill", &id, "SIGNOPE"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown signal"), "{}", stderr(&out));
    let out = b.rt(&["delete", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(b.status(&id), "running");
    b.rt_ok(&["delete", "--force", &id]);
    b.assert_no_leaks(&id);
}

#[test]
fn missing_executable_fails_create_and_leaves_nothing() {
    if !need_root("missing_executable") {
        return;
    }
    let b = Bundle::new();
    b.args(&["no-such-program"]);
    let id = unique_id("noexe");
    assert_clean_failure(&b, &id, &["create", &id], "not found");
}

#[test]
fn a_create_killed_half_way_is_reported_stopped_and_deleted_cleanly() {
    if !need_root("crashed_create") {
        return;
    }
    let b = Bundle::new();
    // The prestart hook holds `create` half-way: cgroup made, init forked.
    b.edit(|c| {
        c["hooks"] =
            serde_json::json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"]}]})
    });
    b.args(&["true"]);
    let id = unique_id("crash");
    b.ids.borrow_mut().push(id.clone());
    let mut create = std::process::Command::new(RUNTIME)
        .arg("--root")
        .arg(b.state.path())
        .args(["create", &id])
        .current_dir(b.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen_creating = false;
    for _ in 0..300 {
        let out = b.rt(&["state", &id]);
        if out.status.success() && stdout(&out).contains("\"creating\"") {
            seen_creating = true;
            if !cgroup_dirs(&id).is_empty() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(seen_creating, "state never showed `creating`");
    assert!(
        !cgroup_dirs(&id).is_empty(),
        "the cgroup should exist half-way"
    );
    // The create's own children (the hook) are ours to end too.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", create.id()))
        .unwrap_or_default();
    create.kill().unwrap();
    create.wait().unwrap();
    for pid in children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        // SAFETY: plain kill(2) of a process this test's child started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    b.wait_status(&id, "stopped");
    b.rt_ok(&["delete", &id]);
    b.assert_no_leaks(&id);
}
