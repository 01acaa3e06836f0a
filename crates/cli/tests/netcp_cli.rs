//! `cp` with tar streams, `-P/--publish-all` and `NetworkSettings`, through the real
//! `berth` binary (root): `cp CONTAINER:SRC -` archives, `cp - CONTAINER:DIR` round trips,
//! hostile archives refused with nothing written outside the destination (a sentinel
//! directory on the host stays empty), the image's `ExposedPorts` published by `-P` and
//! reachable on loopback, and the inspected address equal to the one inside the
//! container. Each test has its own `--root`; networks are reset when the Env drops.

mod engine;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use engine::{Env, can_run, err, wait_for};

/// Runs berth with `input` on stdin.
fn berth_stdin(env: &Env, args: &[&str], input: &[u8]) -> Result<Output> {
    let mut c = env.cmd(args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    // A refused archive may be dropped before it is read to the end.
    let _ = stdin.write_all(input);
    drop(stdin);
    Ok(child.wait_with_output()?)
}

/// Name → (kind, contents or link target) of every entry of an archive.
fn listing(tar_bytes: &[u8]) -> Result<BTreeMap<String, (char, String)>> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut m = BTreeMap::new();
    for e in a.entries()? {
        let mut e = e?;
        let name = e.path()?.to_string_lossy().into_owned();
        let kind = match e.header().entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Regular => 'f',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Fifo => 'p',
            _ => '?',
        };
        let body = match kind {
            'l' | 'h' => e
                .link_name()?
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            _ => {
                let mut s = String::new();
                e.read_to_string(&mut s)?;
                s
            }
        };
        m.insert(name.trim_end_matches('/').to_string(), (kind, body));
    }
    Ok(m)
}

/// An archive of (name, kind, data or link target, mode).
fn make_tar(entries: &[(&str, char, &str, u32)]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_mtime(1_600_000_000);
        h.set_uid(1234);
        h.set_gid(5678);
        let body: &[u8] = match kind {
            'f' => data.as_bytes(),
            _ => b"",
        };
        h.set_entry_type(match kind {
            'd' => tar::EntryType::Directory,
            'l' => tar::EntryType::Symlink,
            'h' => tar::EntryType::Link,
            _ => tar::EntryType::Regular,
        });
        h.set_size(body.len() as u64);
        if matches!(kind, 'l' | 'h') {
            // Raw bytes: the tar crate's setters refuse some of the hostile names.
            let raw = &mut h.as_old_mut().linkname;
            raw[..data.len()].copy_from_slice(data.as_bytes());
        }
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, body)?;
    }
    Ok(b.into_inner()?)
}

fn entries(m: &BTreeMap<String, (char, String)>) -> Vec<(&str, char)> {
    m.iter().map(|(k, v)| (k.as_str(), v.0)).collect()
}

#[test]
fn cp_to_stdout_writes_a_tar_of_the_path() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let script = "mkdir -p /data/sub && echo one >/data/a && echo two >/data/sub/b \
                  && ln -s a /data/l && ln /data/a /data/h && chmod 640 /data/a && mkfifo /data/p \
                  && exec sleep 1000";
    let id = env
        .ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            script,
        ])?
        .trim()
        .to_string();
    wait_for("the files", || {
        Ok(env
            .berth(&["exec", &id, "test", "-p", "/data/p"])
            .status
            .success())
    })?;
    let check = |tar_bytes: &[u8]| -> Result<()> {
        let m = listing(tar_bytes)?;
        assert_eq!(
            entries(&m),
            [
                ("data", 'd'),
                ("data/a", 'f'),
                ("data/h", 'h'),
                ("data/l", 'l'),
                ("data/p", 'p'),
                ("data/sub", 'd'),
                ("data/sub/b", 'f')
            ],
            "{m:?}"
        );
        assert_eq!(m["data/a"].1, "one\n");
        assert_eq!(m["data/sub/b"].1, "two\n");
        assert_eq!(m["data/l"].1, "a");
        assert_eq!(m["data/h"].1, "data/a");
        let mut a = tar::Archive::new(tar_bytes);
        let modes: Vec<(String, u32)> = a
            .entries()?
            .flatten()
            .map(|e| {
                let p = e.path().unwrap().to_string_lossy().into_owned();
                (p, e.header().mode().unwrap())
            })
            .collect();
        assert!(modes.contains(&("data/a".into(), 0o640)), "{modes:?}");
        Ok(())
    };
    // Running, then stopped (the rootfs is mounted for the copy only).
    let o = env.berth(&["cp", &format!("{id}:/data"), "-"]);
    ensure!(o.status.success(), "cp: {}", err(&o));
    check(&o.stdout)?;
    env.ok(&["stop", "-t", "1", &id])?;
    let o = env.berth(&["cp", &format!("{id}:/data/"), "-"]);
    ensure!(o.status.success(), "cp stopped: {}", err(&o));
    check(&o.stdout)?;
    // A single file is the only entry, under its own name.
    let o = env.berth(&["cp", &format!("{id}:/data/sub/b"), "-"]);
    let m = listing(&o.stdout)?;
    assert_eq!(entries(&m), [("b", 'f')]);
    // A FIFO named as the source is archived, not opened for reading (which would block).
    let m = listing(&env.berth(&["cp", &format!("{id}:/data/p"), "-"]).stdout)?;
    assert_eq!(entries(&m), [("p", 'p')]);
    // A symlink is archived as itself; `-L` follows it (both in the tar and on the host).
    let link = format!("{id}:/data/l");
    let m = listing(&env.berth(&["cp", &link, "-"]).stdout)?;
    assert_eq!(m["l"], ('l', "a".to_string()));
    let m = listing(&env.berth(&["cp", "-L", &link, "-"]).stdout)?;
    assert_eq!(m["l"], ('f', "one\n".to_string()));
    let host = tempfile::Builder::new()
        .prefix("berth-netcp-out-")
        .tempdir()?;
    env.ok(&["cp", &link, &host.path().to_string_lossy()])?;
    assert_eq!(fs::read_link(host.path().join("l"))?.to_string_lossy(), "a");
    let followed = host.path().join("followed");
    env.ok(&["cp", "-L", &link, &followed.to_string_lossy()])?;
    assert_eq!(fs::read_to_string(&followed)?, "one\n");
    // A missing path fails like Docker's, with nothing on stdout.
    let o = env.berth(&["cp", &format!("{id}:/nope"), "-"]);
    assert_eq!(o.status.code(), Some(125), "{}", err(&o));
    assert!(o.stdout.is_empty());
    env.assert_clean_after_rm(&[id])
}

#[test]
fn cp_from_stdin_extracts_and_round_trips() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let id = env
        .ok(&["run", "-d", "--network", "none", "busybox", "sleep", "1000"])?
        .trim()
        .to_string();
    env.ok(&["exec", &id, "mkdir", "/dst"])?;
    let input = make_tar(&[
        ("top/", 'd', "", 0o750),
        ("top/f", 'f', "hello\n", 0o604),
        ("top/deep/er/g", 'f', "g\n", 0o644),
        ("top/link", 'l', "f", 0o777),
        ("top/hard", 'h', "top/f", 0o604),
        ("top/.wh.kept", 'f', "plain\n", 0o644),
    ])?;
    let o = berth_stdin(&env, &["cp", "-", &format!("{id}:/dst")], &input)?;
    ensure!(o.status.success(), "cp -: {}", err(&o));
    let shown = env.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /dst/top/f /dst/top/deep/er/g /dst/top/.wh.kept; readlink /dst/top/link; \
         stat -c '%a %h' /dst/top /dst/top/f",
    ])?;
    assert_eq!(shown, "hello\ng\nplain\nf\n750 3\n604 2\n", "{shown}");
    // Owned by root as Docker's; `-a` keeps the archive's owners.
    let owners = |p: &str| env.ok(&["exec", &id, "stat", "-c", "%u:%g", p]);
    assert_eq!(owners("/dst/top/f")?, "0:0\n");
    env.ok(&["exec", &id, "mkdir", "/keep"])?;
    let o = berth_stdin(&env, &["cp", "-a", "-", &format!("{id}:/keep")], &input)?;
    ensure!(o.status.success(), "cp -a -: {}", err(&o));
    assert_eq!(owners("/keep/top/f")?, "1234:5678\n");
    assert_eq!(owners("/keep/top")?, "1234:5678\n");
    // And back out: the same names and contents.
    let o = env.berth(&["cp", &format!("{id}:/dst/top"), "-"]);
    ensure!(o.status.success(), "cp out: {}", err(&o));
    let (want, got) = (listing(&input)?, listing(&o.stdout)?);
    let mut names: Vec<&str> = want.keys().map(String::as_str).collect();
    // The parents the archive left implicit are directories of their own now.
    names.extend(["top/deep", "top/deep/er"]);
    names.sort();
    assert_eq!(names, got.keys().collect::<Vec<_>>());
    assert_eq!((got["top/deep"].0, got["top/hard"].0), ('d', 'h'));
    for k in ["top/f", "top/deep/er/g", "top/link", "top/.wh.kept"] {
        assert_eq!(want[k], got[k], "{k}");
    }
    // Plain `cp -a` both ways keeps owners too; without it the copy is the caller's.
    let host = tempfile::Builder::new()
        .prefix("berth-netcp-host-")
        .tempdir()?;
    let f = host.path().join("owned");
    fs::write(&f, "o\n")?;
    std::os::unix::fs::chown(&f, Some(4321), Some(8765))?;
    let fs_ = f.to_string_lossy().into_owned();
    env.ok(&["cp", "-a", &fs_, &format!("{id}:/dst/owned-a")])?;
    env.ok(&["cp", &fs_, &format!("{id}:/dst/owned")])?;
    assert_eq!(owners("/dst/owned-a")?, "4321:8765\n");
    assert_eq!(owners("/dst/owned")?, "0:0\n");
    let back = host.path().join("back");
    env.ok(&[
        "cp",
        "-a",
        &format!("{id}:/keep/top"),
        &back.to_string_lossy(),
    ])?;
    let md = fs::symlink_metadata(back.join("f"))?;
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    let md = fs::symlink_metadata(back.join("link"))?;
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    // Also into a stopped container; a file as the destination is refused.
    env.ok(&["stop", "-t", "1", &id])?;
    let more = make_tar(&[("later", 'f', "x\n", 0o644)])?;
    // Compressed, as Docker accepts too.
    let mut gz = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    gz.stdin.take().context("gzip stdin")?.write_all(&more)?;
    let gzipped = gz.wait_with_output()?.stdout;
    assert_eq!(&gzipped[..2], [0x1f, 0x8b]);
    let o = berth_stdin(&env, &["cp", "-", &format!("{id}:/dst")], &gzipped)?;
    ensure!(o.status.success(), "cp - stopped: {}", err(&o));
    let o = berth_stdin(&env, &["cp", "-", &format!("{id}:/dst/later")], &more)?;
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("is not a directory"), "{}", err(&o));
    env.ok(&["start", &id])?;
    let got = env.ok(&["exec", &id, "cat", "/dst/later"])?;
    assert_eq!(got, "x\n");
    env.assert_clean_after_rm(&[id])
}

#[test]
fn hostile_archives_are_refused() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let sentinel = tempfile::Builder::new()
        .prefix("berth-netcp-sentinel-")
        .tempdir()?;
    let s = sentinel.path().to_string_lossy().into_owned();
    let id = env
        .ok(&["run", "-d", "--network", "none", "busybox", "sleep", "1000"])?
        .trim()
        .to_string();
    // A symlink already in the container, pointing at the host's sentinel path and at
    // the container's root.
    env.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        &format!("mkdir /dst && ln -s {s} /dst/evil && ln -s / /dst/rootlink"),
    ])?;
    let up = "../../../../../../../..";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (make_tar(&[("../escape", 'f', "x", 0o644)])?, "`..`"),
        (make_tar(&[("a/../../escape", 'f', "x", 0o644)])?, "`..`"),
        (
            make_tar(&[(&format!("{s}/abs"), 'f', "x", 0o644)])?,
            "absolute",
        ),
        (
            make_tar(&[("l", 'l', &s, 0o777), ("l/x", 'f', "x", 0o644)])?,
            "symlink",
        ),
        (
            make_tar(&[("u", 'l', up, 0o777), (&format!("u{s}/x"), 'f', "x", 0o644)])?,
            "symlink",
        ),
        (make_tar(&[("evil/x", 'f', "x", 0o644)])?, "symlink"),
        (
            make_tar(&[("rootlink/escape", 'f', "x", 0o644)])?,
            "symlink",
        ),
        (
            make_tar(&[("evil", 'd', "", 0o755), ("evil/x", 'f', "x", 0o644)])?,
            "symlink",
        ),
        (
            make_tar(&[("h", 'h', "../../etc/passwd", 0o644)])?,
            "hard link",
        ),
        (
            make_tar(&[("h", 'h', "rootlink/etc/passwd", 0o644)])?,
            "symlink",
        ),
    ];
    for (i, (t, why)) in cases.iter().enumerate() {
        let o = berth_stdin(&env, &["cp", "-", &format!("{id}:/dst")], t)?;
        let e = err(&o);
        assert_eq!(o.status.code(), Some(125), "case {i}: {e}");
        assert!(
            e.contains("extract the tar stream into `/dst`"),
            "case {i}: {e}"
        );
        assert!(e.contains(why), "case {i}: want {why}: {e}");
        let left: Vec<_> = fs::read_dir(sentinel.path())?.flatten().collect();
        assert!(
            left.is_empty(),
            "case {i}: wrote into the sentinel: {left:?}"
        );
    }
    // Nothing reached the container's root or /etc either.
    let o = env.berth(&[
        "exec",
        &id,
        "sh",
        "-c",
        "ls /escape /x /etc/passwd /dst/l/x",
    ]);
    let e = err(&o);
    assert!(e.contains("/escape") && e.contains("/x"), "{e}");
    assert!(!e.contains("/etc/passwd"), "{e}");
    env.assert_clean_after_rm(&[id])
}

/// Loads an image (built with umoci from /bin/busybox) whose config exposes 8080/tcp;
/// returns its id.
fn load_exposing_image(env: &Env) -> Result<String> {
    let dir = tempfile::Builder::new()
        .prefix("berth-netcp-img-")
        .tempdir()?;
    let layer = dir.path().join("layer.tar");
    let mut b = tar::Builder::new(fs::File::create(&layer)?);
    b.append_path_with_name("/bin/busybox", "bin/busybox")?;
    b.into_inner()?.sync_all()?;
    let layout = dir.path().join("L");
    let l = layout.to_string_lossy().into_owned();
    let img = format!("{l}:t");
    let steps: [&[&str]; 4] = [
        &["init", "--layout", &l],
        &["new", "--image", &img],
        &[
            "raw",
            "add-layer",
            "--image",
            &img,
            &layer.to_string_lossy(),
        ],
        &[
            "config",
            "--image",
            &img,
            "--config.exposedports",
            "8080/tcp",
        ],
    ];
    for s in steps {
        let o = Command::new("umoci").args(s).output()?;
        ensure!(o.status.success(), "umoci {s:?}: {}", err(&o));
    }
    let archive = dir.path().join("img.tar");
    let mut b = tar::Builder::new(fs::File::create(&archive)?);
    b.append_dir_all(".", &layout)?;
    b.into_inner()?.sync_all()?;
    let loaded = env.ok(&["load", "-i", &archive.to_string_lossy()])?;
    let id = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image ID: "))
        .context(format!("no image id in {loaded:?}"))?;
    Ok(id.trim().to_string())
}

fn read_all(port: u16) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut got = String::new();
    s.read_to_string(&mut got)?;
    Ok(got)
}

#[test]
fn publish_all_publishes_the_image_ports() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    if Command::new("umoci").arg("--version").output().is_err() {
        ensure!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "this test needs umoci under CI"
        );
        eprintln!("SKIP: needs umoci (apt-get install umoci)");
        return Ok(());
    }
    let env = Env::new()?;
    let image = load_exposing_image(&env)?;
    let script = "echo hello-from-nc | /bin/busybox nc -l -p 8080; exec /bin/busybox sleep 1000";
    let id = env
        .ok(&[
            "run",
            "-d",
            "-P",
            "--expose",
            "9090",
            &image,
            "/bin/busybox",
            "sh",
            "-c",
            script,
        ])?
        .trim()
        .to_string();
    let ports = env.ok(&["port", &id])?;
    let lines: Vec<&str> = ports.lines().collect();
    assert_eq!(lines.len(), 2, "{ports}");
    let host_port = |container: &str| -> Result<u16> {
        let l = lines
            .iter()
            .find(|l| l.starts_with(&format!("{container} -> 0.0.0.0:")))
            .context(format!("no {container} in {ports}"))?;
        Ok(l.rsplit(':').next().unwrap_or("").parse()?)
    };
    let (p8080, p9090) = (host_port("8080/tcp")?, host_port("9090/tcp")?);
    assert_ne!(p8080, p9090);
    let mut got = String::new();
    wait_for("nc in the container through the published port", || {
        got = read_all(p8080).unwrap_or_default();
        Ok(!got.is_empty())
    })?;
    assert_eq!(got, "hello-from-nc\n");
    let ports = env.ok(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", &id])?;
    let v: serde_json::Value = serde_json::from_str(&ports)?;
    assert_eq!(v["9090/tcp"][0]["HostPort"], p9090.to_string());
    assert_eq!(
        v["8080/tcp"],
        serde_json::json!([{"HostIp": "0.0.0.0", "HostPort": p8080.to_string()}])
    );
    let exposed = env.ok(&["inspect", "-f", "{{json .Config.ExposedPorts}}", &id])?;
    assert_eq!(exposed.trim(), r#"{"8080/tcp":{},"9090/tcp":{}}"#);
    // Without -P the image's port is exposed but not published.
    let quiet = env
        .ok(&["create", &image, "/bin/busybox", "true"])?
        .trim()
        .to_string();
    assert_eq!(env.ok(&["port", &quiet])?, "");
    let v = env.ok(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", &quiet])?;
    assert_eq!(v.trim(), r#"{"8080/tcp":null}"#);
    env.assert_clean_after_rm(&[id, quiet])
}

#[test]
fn inspect_shows_the_address_inside_the_container() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let id = env
        .ok(&["run", "-d", "busybox", "sleep", "1000"])?
        .trim()
        .to_string();
    let f =
        |t: &str| -> Result<String> { Ok(env.ok(&["inspect", "-f", t, &id])?.trim().to_string()) };
    assert_eq!(f("{{.HostConfig.NetworkMode}}")?, "bridge");
    let ip = f("{{.NetworkSettings.IPAddress}}")?;
    let ranged = f("{{range .NetworkSettings.Networks}}{{.IPAddress}}/{{.IPPrefixLen}}{{end}}")?;
    let inside = env.ok(&["exec", &id, "ip", "-4", "-o", "addr", "show", "eth0"])?;
    let cidr = inside
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .context(format!("no inet in {inside}"))?;
    assert!(!ip.is_empty());
    assert_eq!(ranged, cidr, "{inside}");
    assert_eq!(
        format!("{ip}/{}", f("{{.NetworkSettings.IPPrefixLen}}")?),
        cidr
    );
    let mac = env.ok(&["exec", &id, "cat", "/sys/class/net/eth0/address"])?;
    assert_eq!(f("{{.NetworkSettings.MacAddress}}")?, mac.trim());
    let route = env.ok(&["exec", &id, "ip", "route", "show", "default"])?;
    let gw = f("{{.NetworkSettings.Gateway}}")?;
    assert!(route.contains(&format!("via {gw} ")), "{route} vs {gw}");
    let net = f("{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{$e.NetworkID}}{{end}}")?;
    let bridge: serde_json::Value =
        serde_json::from_str(&env.ok(&["network", "inspect", "bridge"])?)?;
    let want = bridge[0]["Id"].as_str().context("network id")?;
    assert_eq!(net, format!("bridge {want}"));
    // Stopped: the network stays listed, without an address.
    env.ok(&["stop", "-t", "1", &id])?;
    assert_eq!(f("{{.NetworkSettings.IPAddress}}")?, "");
    assert_eq!(
        f("{{range $n, $e := .NetworkSettings.Networks}}{{$n}}={{$e.IPAddress}}{{end}}")?,
        "bridge="
    );
    // --network none and host: no addresses.
    let none = env
        .ok(&["create", "--network", "none", "busybox", "true"])?
        .trim()
        .to_string();
    let o = env.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.IPAddress}}|{{range $n, $e := .NetworkSettings.Networks}}{{$n}}={{$e.IPAddress}}{{end}}",
        &none,
    ])?;
    assert_eq!(o.trim(), "|none=");
    let host = env
        .ok(&["create", "--network", "host", "busybox", "true"])?
        .trim()
        .to_string();
    let o = env.ok(&[
        "inspect",
        "-f",
        "{{range $n, $e := .NetworkSettings.Networks}}{{$n}}={{$e.IPAddress}}{{end}}",
        &host,
    ])?;
    assert_eq!(o.trim(), "host=");
    env.assert_clean_after_rm(&[id, none, host])
}
