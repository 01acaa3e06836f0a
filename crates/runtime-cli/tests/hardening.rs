//! Hardening: seccomp through the runtime, hooks, consoles, and one regression test per
//! known runtime escape — each attempts the escape and proves it fails.

mod common;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;

fn add_caps(b: &Bundle, caps: &[&str]) {
    b.edit(|c| {
        for set in ["bounding", "effective", "permitted"] {
            for cap in caps {
                c["process"]["capabilities"][set]
                    .as_array_mut()
                    .unwrap()
                    .push((*cap).into());
            }
        }
    });
}

#[test]
fn seccomp_errno_kill_and_argument_conditions() {
    if !need_root("seccomp_rules") {
        return;
    }
    let b = Bundle::new();
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18},
                {"names": ["sync"], "action": "SCMP_ACT_KILL"},
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "args": [{"index": 1, "value": 448, "op": "SCMP_CMP_EQ"}]},
                {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "args": [{"index": 2, "value": 448, "op": "SCMP_CMP_EQ"}]}
            ]
        });
    });
    b.args(&[
        "sh",
        "-c",
        "exec 2>&1; mkdir /tmp/d; rmdir /tmp/d; chmod 700 /tmp/d; chmod 755 /tmp/d && echo f-ok",
    ]);
    let id = unique_id("seccomp");
    let out = b.rt(&["run", &id]);
    let text = stdout(&out);
    assert!(
        text.contains("Invalid cross-device link"),
        "rmdir must get errno 18: {text}"
    );
    assert!(
        text.contains("Operation not permitted"),
        "mode 0700 denied: {text}"
    );
    assert!(text.contains("f-ok"), "mode 0755 allowed: {text}");
    b.args(&["sh", "-c", "exec sync"]);
    let id = unique_id("seccomp-kill");
    let out = b.rt(&["run", &id]);
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGSYS),
        "kill action: {}",
        stdout(&out)
    );
    b.assert_no_leaks(&id);
}

#[test]
fn docker_default_profile_blocks_new_user_namespaces() {
    if !need_root("docker_default_profile") {
        return;
    }
    let b = Bundle::new();
    let caps: Vec<String> = b.config()["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let profile = berth_seccomp::docker_default(&caps);
    b.edit(|c| c["linux"]["seccomp"] = serde_json::to_value(&profile).unwrap());
    b.args(&["sh", "-c", "exec 2>&1; unshare -U true && echo escaped; echo still-here; ls / >/dev/null && echo ls-ok"]);
    let id = unique_id("dockerprof");
    let text = stdout(&b.rt(&["run", &id]));
    assert!(!text.contains("escaped"), "{text}");
    assert!(text.contains("Operation not permitted"), "{text}");
    assert!(text.contains("ls-ok"), "{text}");
    b.assert_no_leaks(&id);
}

/// seccomp_notif / seccomp_notif_resp from linux/seccomp.h.
#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

fn recv_fd(stream: &std::os::unix::net::UnixStream) -> (Vec<u8>, OwnedFd) {
    let mut buf = vec![0u8; 8192];
    let mut cbuf = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr is valid; it points at live buffers during recvmsg, and the
    // single SCM_RIGHTS fd received is owned by us afterwards.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len();
        let n = libc::recvmsg(stream.as_raw_fd(), &raw mut msg, 0);
        assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        assert!(!cmsg.is_null(), "no fd received");
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
        buf.truncate(n as usize);
        (buf, OwnedFd::from_raw_fd(fd))
    }
}

#[test]
fn seccomp_notify_listener_receives_and_answers() {
    if !need_root("seccomp_notify") {
        return;
    }
    let b = Bundle::new();
    let sock = b.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "from-test",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    b.args(&["sh", "-c", "exec 2>&1; mkdir /tmp/n; echo done"]);
    let agent = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let (state, fd) = recv_fd(&stream);
        let mut n = Notif::default();
        // SAFETY: ioctl(SECCOMP_IOCTL_NOTIF_RECV) fills a zeroed seccomp_notif.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), 0xc050_2100u64 as _, &raw mut n) };
        assert_eq!(r, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
        let resp = NotifResp {
            id: n.id,
            val: 0,
            error: -libc::EXDEV,
            flags: 0,
        };
        // SAFETY: ioctl(SECCOMP_IOCTL_NOTIF_SEND) reads a seccomp_notif_resp.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), 0xc018_2101u64 as _, &raw const resp) };
        assert_eq!(r, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
        (String::from_utf8(state).unwrap(), n.nr)
    });
    let id = unique_id("notify");
    let out = b.rt(&["run", &id]);
    let (state, nr) = agent.join().unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "from-test");
    assert_eq!(state["state"]["id"], id.as_str());
    assert!(
        nr == libc::SYS_mkdir as i32 || nr == libc::SYS_mkdirat as i32,
        "nr {nr}"
    );
    assert!(
        stdout(&out).contains("Invalid cross-device link"),
        "{}",
        stdout(&out)
    );
    b.assert_no_leaks(&id);
}

fn hook(path: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec![path.to_string()];
    a.extend(args.iter().map(|s| s.to_string()));
    json!({"path": path, "args": a})
}

#[test]
fn hooks_run_in_order_with_state_on_stdin() {
    if !need_root("hooks_order") {
        return;
    }
    let b = Bundle::new();
    let log = b.path().join("hooks.log");
    let logs = log.to_str().unwrap().to_string();
    let host = |kind: &str| {
        hook(
            "/bin/sh",
            &["-c", &format!("read s; echo \"{kind} $s\" >> {logs}")],
        )
    };
    b.edit(|c| {
        c["hooks"] = json!({
            "prestart": [host("prestart")],
            "createRuntime": [host("createRuntime")],
            "createContainer": [host("createContainer")],
            "startContainer": [hook("/bin/sh", &["-c", "read s; echo \"startContainer $s\" >> /tmp/hooks.log"])],
            "poststart": [host("poststart")],
            "poststop": [host("poststop")],
        });
    });
    b.args(&["sh", "-c", "echo program >> /tmp/hooks.log"]);
    let id = unique_id("hooks");
    b.rt_ok(&["create", &id]);
    b.rt_ok(&["start", &id]);
    b.wait_status(&id, "stopped");
    b.rt_ok(&["delete", &id]);
    let host_log = std::fs::read_to_string(&log).unwrap();
    let kinds: Vec<&str> = host_log
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop"
        ],
        "{host_log}"
    );
    for line in host_log.lines() {
        let state: serde_json::Value =
            serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
        assert_eq!(state["id"], id.as_str(), "{line}");
    }
    assert!(host_log.lines().last().unwrap().contains("\"stopped\""));
    let inside = std::fs::read_to_string(b.path().join("rootfs/tmp/hooks.log")).unwrap();
    let kinds: Vec<&str> = inside
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(kinds, ["startContainer", "program"], "{inside}");
    b.assert_no_leaks(&id);
}

#[test]
fn failing_prestart_hook_aborts_create_and_cleans_up() {
    if !need_root("hooks_fail") {
        return;
    }
    let b = Bundle::new();
    b.edit(|c| c["hooks"] = json!({"prestart": [hook("/bin/false", &[])]}));
    b.args(&["sleep", "30"]);
    let id = unique_id("hookfail");
    let out = b.rt(&["create", &id]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("prestart hook `/bin/false`"),
        "{}",
        stderr(&out)
    );
    b.assert_no_leaks(&id);
}

#[test]
fn no_host_fd_leaks_and_cwd_outside_the_root_is_refused() {
    // CVE-2024-21626
    if !need_root("fd_leak_cwd") {
        return;
    }
    let b = Bundle::new();
    b.args(&["ls", "/proc/self/fd"]);
    let id = unique_id("fds");
    let fds = b.rt_ok(&["run", &id]);
    let fds: Vec<&str> = fds.split_whitespace().collect();
    // 0-2 and the directory ls itself is reading.
    assert_eq!(fds, ["0", "1", "2", "3"], "unexpected fds inside: {fds:?}");
    b.args(&["pwd"]);
    for n in 3..10 {
        let cwd = format!("/proc/self/fd/{n}");
        b.edit(|c| c["process"]["cwd"] = cwd.clone().into());
        let id = unique_id("cwd");
        let out = b.rt(&["run", &id]);
        assert!(
            !out.status.success(),
            "cwd {cwd} accepted: {}",
            stdout(&out)
        );
        b.assert_no_leaks(&id);
    }
}

#[test]
fn mount_destinations_cannot_follow_symlinks_out_of_the_rootfs() {
    // CVE-2021-30465 class
    if !need_root("symlink_mount_escape") {
        return;
    }
    let b = Bundle::new();
    let rootfs = b.path().join("rootfs");
    std::os::unix::fs::symlink("/", rootfs.join("evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../..", rootfs.join("tmp/evil2")).unwrap();
    let tag = format!("berth-escape-{}", std::process::id());
    b.edit(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": format!("/evil/{tag}-a"), "type": "tmpfs", "source": "tmpfs"}));
        m.push(json!({"destination": format!("/tmp/evil2/{tag}-b"), "type": "tmpfs", "source": "tmpfs"}));
    });
    b.args(&["sh", "-c", &format!("grep -c {tag} /proc/self/mountinfo")]);
    let id = unique_id("symlink");
    let out = b.rt_ok(&["run", &id]);
    assert_eq!(out.trim(), "2");
    assert!(
        !Path::new("/").join(format!("{tag}-a")).exists(),
        "mount escaped to the host root"
    );
    assert!(
        !Path::new("/").join(format!("{tag}-b")).exists(),
        "mount escaped to the host root"
    );
    assert!(rootfs.join(format!("{tag}-a")).is_dir());
    assert!(rootfs.join(format!("{tag}-b")).is_dir());
    b.assert_no_leaks(&id);
}

#[test]
fn masked_paths_refuse_a_fake_dev_null() {
    // CVE-2025-31133
    if !need_root("fake_dev_null") {
        return;
    }
    let b = Bundle::new();
    let rootfs = b.path().join("rootfs");
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", rootfs.join("dev/null")).unwrap();
    b.edit(|c| {
        // No tmpfs on /dev: the image's own /dev (with the fake null) is used.
        let m = c["mounts"].as_array_mut().unwrap();
        m.retain(|m| {
            m["destination"] != "/dev" && !m["destination"].as_str().unwrap().starts_with("/dev/")
        });
    });
    b.args(&["true"]);
    let id = unique_id("fakenull");
    let out = b.rt(&["run", &id]);
    assert!(!out.status.success(), "a fake /dev/null was accepted");
    assert!(stderr(&out).contains("/dev/null"), "{}", stderr(&out));
    b.assert_no_leaks(&id);
}

#[test]
fn sysctl_writes_refuse_a_fake_procfs() {
    // CVE-2025-52881 class
    if !need_root("fake_procfs") {
        return;
    }
    let b = Bundle::new();
    let fake = b.path().join("fake-sys");
    std::fs::create_dir_all(fake.join("kernel")).unwrap();
    std::fs::write(fake.join("kernel/domainname"), "untouched").unwrap();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/proc/sys", "type": "bind", "source": fake, "options": ["rbind"]
        }));
        c["linux"]["sysctl"] = json!({"kernel.domainname": "written"});
        c["linux"]["readonlyPaths"] = json!([]);
    });
    b.args(&["true"]);
    let id = unique_id("fakeproc");
    let out = b.rt(&["run", &id]);
    assert!(
        !out.status.success(),
        "sysctl written through a fake procfs"
    );
    assert!(stderr(&out).contains("procfs"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(fake.join("kernel/domainname")).unwrap(),
        "untouched"
    );
    b.assert_no_leaks(&id);
}

#[test]
fn console_comes_from_the_pty_peer_over_the_console_socket() {
    // CVE-2025-52565: /dev/console is the pty peer, set up without a path lookup.
    if !need_root("console_socket") {
        return;
    }
    let b = Bundle::new();
    b.edit(|c| c["process"]["terminal"] = true.into());
    b.args(&[
        "sh",
        "-c",
        "tty; stat -c %t /dev/console; stat -c %t $(tty)",
    ]);
    let sock = b.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let recv = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        recv_fd(&stream).1
    });
    let id = unique_id("console");
    b.rt_ok(&["create", "--console-socket", sock.to_str().unwrap(), &id]);
    let master = recv.join().unwrap();
    b.rt_ok(&["start", &id]);
    let mut f = std::fs::File::from(master);
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    // The pty reports EIO once the container's side is closed.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{text:?}");
    assert_eq!(
        lines[1], "88",
        "/dev/console must be a pty (major 136 = 0x88): {text:?}"
    );
    assert_eq!(lines[1], lines[2]);
    b.wait_status(&id, "stopped");
    b.rt_ok(&["delete", &id]);
    b.assert_no_leaks(&id);
}

#[test]
fn exec_does_not_expose_the_host_runtime_binary() {
    // CVE-2019-5736: a container process grabs /proc/PID/exe of every process that
    // appears during `exec` and tries to write through it once it may.
    if !need_root("proc_self_exe_overwrite") {
        return;
    }
    let b = Bundle::new();
    // Even with CAP_SYS_PTRACE the sealed copy must hold.
    add_caps(&b, &["CAP_SYS_PTRACE"]);
    let bin_dir = tempfile::tempdir().unwrap();
    let runtime = bin_dir.path().join("berth-runtime");
    std::fs::copy(RUNTIME, &runtime).unwrap();
    let before = std::fs::read(&runtime).unwrap();
    // `command exec` so that a refused open does not end the shell (pid 1).
    let attacker = r#"
        exec 2>/dev/null
        while true; do
            for p in /proc/[0-9]*; do
                n=${p#/proc/}
                [ "$n" = 1 ] && continue
                [ "$n" = "$$" ] && continue
                t=$(readlink $p/exe 2>/dev/null) || continue
                case "$t" in *busybox*) continue;; esac
                echo "$t" >> /tmp/seen
                command exec 3< $p/exe || { echo denied >> /tmp/seen; continue; }
                for k in 1 2 3 4 5 6 7 8 9 10; do
                    sleep 0.01
                    if echo pwned 2>/dev/null >> /proc/self/fd/3; then echo WROTE >> /tmp/seen; break; fi
                done
                exec 3<&-
            done
        done
    "#;
    b.args(&["sh", "-c", attacker]);
    let id = unique_id("cve5736");
    let state = b.state.path().to_str().unwrap().to_string();
    let cmd = |args: &[&str]| {
        let mut c = std::process::Command::new(&runtime);
        c.arg("--root").arg(&state).args(args).current_dir(b.path());
        c.stdin(std::process::Stdio::null());
        c
    };
    // The container inherits create's stdio: give it none, or it would hold a pipe open.
    let run = |args: &[&str]| {
        cmd(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    };
    b.ids.borrow_mut().push(id.clone());
    assert!(run(&["create", &id]).success());
    assert!(run(&["start", &id]).success());
    for _ in 0..15 {
        let out = cmd(&["exec", &id, "sleep", "0.05"]).output().unwrap();
        assert!(
            out.status.success(),
            "exec failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let seen = std::fs::read_to_string(b.path().join("rootfs/tmp/seen")).unwrap_or_default();
    assert!(run(&["delete", "--force", &id]).success());
    assert_eq!(
        std::fs::read(&runtime).unwrap(),
        before,
        "host runtime binary was modified"
    );
    assert!(
        !seen.contains("WROTE"),
        "attacker wrote through a runtime exe: {seen}"
    );
    assert!(
        !seen.contains(bin_dir.path().to_str().unwrap()),
        "the host binary path was visible: {seen}"
    );
    b.assert_no_leaks(&id);
}
