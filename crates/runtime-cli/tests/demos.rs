//! The seeds' demos, end to end on a busybox rootfs: each isolation is checked from inside
//! the container and from the host.

mod common;

use common::*;
use serde_json::json;

#[test]
fn hostname_is_private_to_the_container() {
    if !need_root("hostname_is_private_to_the_container") {
        return;
    }
    let b = Bundle::new();
    b.edit(|c| {
        c["hostname"] = "inside-box".into();
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push("CAP_SYS_ADMIN".into());
        }
    });
    b.args(&["sh", "-c", "hostname; hostname changed-inside; hostname"]);
    let host_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let id = unique_id("host");
    let out = b.rt_ok(&["run", &id]);
    assert_eq!(out, "inside-box\nchanged-inside\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_before
    );
    b.assert_no_leaks(&id);
}

#[test]
fn pid_namespace_makes_the_program_pid_1_and_hides_the_host() {
    if !need_root("pid_namespace") {
        return;
    }
    let b = Bundle::new();
    b.args(&["sh", "-c", "echo $$; ps -o pid,comm | wc -l"]);
    let id = unique_id("pid");
    let out = b.rt_ok(&["run", &id]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{out}");
    // header + sh + ps + wc: only the container's own processes.
    let count: usize = lines.next().unwrap().trim().parse().unwrap();
    assert!(count <= 4, "container sees {count} ps lines: {out}");

    // From the host the same process has another pid.
    b.args(&["sleep", "30"]);
    let id = unique_id("pid2");
    b.rt_ok(&["create", &id]);
    b.rt_ok(&["start", &id]);
    let pid = b.state_of(&id)["pid"].as_i64().unwrap();
    assert!(pid > 1);
    // `start` returns once the init is released; its execve of the program follows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut cmdline = Vec::new();
    while std::time::Instant::now() < deadline {
        cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        if cmdline.starts_with(b"sleep\x0030") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        cmdline.starts_with(b"sleep\x0030"),
        "{}",
        String::from_utf8_lossy(&cmdline)
    );
    let host_ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let ctr_ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_ne!(host_ns, ctr_ns);
    b.rt_ok(&["delete", "--force", &id]);
    b.assert_no_leaks(&id);
}

#[test]
fn memory_limit_oom_kills_and_the_runtime_reports_it() {
    if !need_root("memory_limit_oom") {
        return;
    }
    let b = Bundle::new();
    let limit = 7 * 1024 * 1024;
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": limit, "swap": limit});
    });
    b.args(&[
        "sh",
        "-c",
        "x=$(head -c 7500000 /dev/urandom); echo survived",
    ]);
    let id = unique_id("oom");
    let out = b.rt(&["run", &id]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "stdout {} stderr {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(!stdout(&out).contains("survived"));
    assert!(
        stderr(&out).contains("OOM"),
        "runtime did not report the OOM kill: {}",
        stderr(&out)
    );
    b.assert_no_leaks(&id);
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    if !need_root("pids_limit") {
        return;
    }
    let b = Bundle::new();
    b.edit(|c| c["linux"]["resources"]["pids"] = json!({"limit": 6}));
    b.args(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done 2>&1; wait; echo done",
    ]);
    let id = unique_id("pids");
    let out = b.rt(&["run", &id]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("can't fork") || all.contains("Resource temporarily unavailable"),
        "{all}"
    );
    b.assert_no_leaks(&id);
}

#[test]
fn new_network_namespace_holds_only_lo() {
    if !need_root("netns_only_lo") {
        return;
    }
    let b = Bundle::new();
    b.args(&["sh", "-c", "ls /sys/class/net"]);
    let id = unique_id("net");
    assert_eq!(b.rt_ok(&["run", &id]), "lo\n");
    b.assert_no_leaks(&id);
}

#[test]
fn after_pivot_root_the_host_root_is_unreachable() {
    if !need_root("pivot_root") {
        return;
    }
    let b = Bundle::new();
    let marker = format!("host-marker-{}", std::process::id());
    std::fs::write(b.path().join(&marker), "x").unwrap();
    b.args(&[
        "sh",
        "-c",
        &format!("ls /../{marker} /{marker} 2>&1; find / -xdev -name {marker} | wc -l; awk '$5 == \"/\"' /proc/self/mountinfo | wc -l"),
    ]);
    let id = unique_id("pivot");
    let out = b.rt_ok(&["run", &id]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.iter().filter(|l| l.contains("No such file")).count() == 2,
        "{out}"
    );
    assert_eq!(lines[lines.len() - 2], "0", "{out}");
    // The old root is detached: exactly one mount sits at "/".
    assert_eq!(lines[lines.len() - 1], "1", "{out}");
    b.assert_no_leaks(&id);
}

#[test]
fn user_namespace_maps_container_root_to_an_unprivileged_host_uid() {
    if !need_root("user_namespace") {
        return;
    }
    let b = Bundle::new();
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    b.args(&["sh", "-c", "id -u; cat /proc/self/uid_map; sleep 30"]);
    let id = unique_id("userns");
    b.rt_ok(&["create", &id]);
    b.rt_ok(&["start", &id]);
    let pid = b.state_of(&id)["pid"].as_i64().unwrap();
    let mut host_uid = String::new();
    for _ in 0..200 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(l) = status.lines().find(|l| l.starts_with("Uid:")) {
            host_uid = l.split_whitespace().nth(1).unwrap().to_string();
            if host_uid != "0" {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(host_uid, "100000");
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    b.rt_ok(&["delete", "--force", &id]);
    b.assert_no_leaks(&id);
}

#[test]
fn readonly_root_and_masked_paths_hold() {
    if !need_root("readonly_root") {
        return;
    }
    let b = Bundle::new();
    b.edit(|c| c["root"]["readonly"] = true.into());
    b.args(&["sh", "-c", "exec 2>&1; touch /x; stat -c %t:%T /proc/timer_list; ls /proc/acpi | wc -l; echo 1 > /proc/sys/kernel/hostname"]);
    let id = unique_id("ro");
    let out = b.rt(&["run", &id]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("Read-only file system"), "{text}");
    assert_eq!(
        lines[1], "1:3",
        "masked /proc/timer_list must be /dev/null: {text}"
    );
    assert_eq!(lines[2], "0", "masked /proc/acpi must be empty: {text}");
    assert!(
        lines[3].contains("Read-only file system"),
        "/proc/sys must be read-only: {text}"
    );
    b.assert_no_leaks(&id);
}
