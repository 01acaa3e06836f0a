//! Volumes through the `berth` binary (root, real containers): `volume create/ls/inspect/
//! rm/prune` output, refusing to remove a volume a container uses, prune of anonymous vs
//! named volumes, `rm -v`, and copy-up of image content into a new volume (once, not with
//! `nocopy`, never through a symlink of the image).

mod engine;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use engine::{Env, can_run, err, out, wait_for};

/// Imports `dataimg`: busybox plus `/data` (a file of uid 1234 mode 0640, a directory of
/// 1234:5678 mode 0750 with a file, a setuid file, symlinks to a host directory) and
/// `/evil`, a symlink to that host directory. Returns the host directory, which holds one
/// file `secret` and must never change.
fn import_data_image(env: &Env) -> Result<PathBuf> {
    let host = env.dir.path().join("host");
    fs::create_dir_all(&host)?;
    fs::write(host.join("secret"), "host secret\n")?;
    let stage = env.dir.path().join("stage");
    let data = stage.join("data");
    fs::create_dir_all(data.join("sub"))?;
    fs::write(data.join("hello"), "hello from the image\n")?;
    fs::set_permissions(data.join("hello"), fs::Permissions::from_mode(0o640))?;
    std::os::unix::fs::chown(data.join("hello"), Some(1234), Some(1234))?;
    fs::write(data.join("sub/deep"), "deep\n")?;
    fs::set_permissions(data.join("sub"), fs::Permissions::from_mode(0o750))?;
    std::os::unix::fs::chown(data.join("sub"), Some(1234), Some(5678))?;
    fs::write(data.join("suid"), "#!/bin/sh\n")?;
    fs::set_permissions(data.join("suid"), fs::Permissions::from_mode(0o4755))?;
    symlink(host.join("secret"), data.join("link"))?;
    symlink(&host, data.join("dirlink"))?;
    fs::set_permissions(&data, fs::Permissions::from_mode(0o711))?;
    std::os::unix::fs::chown(&data, Some(42), Some(43))?;
    symlink(&host, stage.join("evil"))?;
    // The shared Env made (and keeps) busybox's rootfs tarball here; append to a copy.
    let busybox = Path::new(env!("CARGO_TARGET_TMPDIR")).join("engine-busybox.tar");
    let tar = env.dir.path().join("data.tar");
    fs::copy(&busybox, &tar).context("copy the busybox tarball")?;
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&stage)
        .arg("-rf")
        .arg(&tar)
        .args(["./data", "./evil"])
        .status()?;
    ensure!(ok.success(), "tar -rf failed");
    env.ok(&["import", &tar.to_string_lossy(), "dataimg"])?;
    Ok(host)
}

/// The host directory is exactly as `import_data_image` made it, and nothing is mounted
/// on it.
fn assert_host_untouched(host: &Path) -> Result<()> {
    let names: Vec<_> = fs::read_dir(host)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    ensure!(names == ["secret"], "host dir changed: {names:?}");
    ensure!(fs::read_to_string(host.join("secret"))? == "host secret\n");
    let mounts = fs::read_to_string("/proc/self/mountinfo")?;
    let want = host.to_string_lossy();
    ensure!(
        !mounts.lines().any(|l| l.split(' ').nth(4) == Some(&*want)),
        "something is mounted on the host dir"
    );
    Ok(())
}

/// Removes every container and checks nothing is left, once the monitors of `run --rm`
/// containers (which report the exit, then return) have exited.
fn assert_clean(env: &Env) -> Result<()> {
    wait_for("monitors to exit", || Ok(env.monitors().is_empty()))?;
    env.assert_clean_after_rm(&[])
}

fn volume_dir(env: &Env, name: &str) -> PathBuf {
    env.root().join("volumes").join(name).join("_data")
}

fn names_in(dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    v.sort();
    Ok(v)
}

#[test]
fn create_ls_inspect_rm_formats() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    assert_eq!(
        env.ok(&[
            "volume", "create", "--label", "env=prod", "--label", "x", "myvol"
        ])?,
        "myvol\n"
    );
    let anon = out(&env.berth(&["volume", "create"]));
    ensure!(
        anon.len() == 64 && anon.bytes().all(|b| b.is_ascii_hexdigit()),
        "a random 64-hex name: {anon:?}"
    );
    // Creating an existing volume returns it.
    assert_eq!(env.ok(&["volume", "create", "myvol"])?, "myvol\n");
    let ls = env.ok(&["volume", "ls"])?;
    assert_eq!(
        ls,
        format!("DRIVER    VOLUME NAME\nlocal     {anon}\nlocal     myvol\n")
    );
    assert_eq!(env.ok(&["volume", "ls", "-q"])?, format!("{anon}\nmyvol\n"));
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "--filter", "label=env=prod"])?,
        "myvol\n"
    );
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "--filter", "name=myv"])?,
        "myvol\n"
    );
    assert_eq!(
        env.ok(&[
            "volume",
            "ls",
            "--format",
            "{{.Name}}|{{.Driver}}|{{.Labels}}",
            "-f",
            "label=x"
        ])?,
        "myvol|local|env=prod,x=\n"
    );
    assert_eq!(
        env.ok(&[
            "volume",
            "ls",
            "--format",
            "table {{.Name}}\t{{.Scope}}",
            "-f",
            "name=myvol"
        ])?,
        "VOLUME NAME   SCOPE\nmyvol         local\n"
    );
    let o = env.berth(&["volume", "ls", "--filter", "colour=red"]);
    ensure!(!o.status.success() && err(&o).contains("invalid filter 'colour'"));

    let text = env.ok(&["volume", "inspect", "myvol"])?;
    ensure!(
        text.starts_with("[\n    {\n        \"CreatedAt\": \""),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let v = &v[0];
    assert_eq!(v["Name"], "myvol");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"], serde_json::json!({"env": "prod", "x": ""}));
    assert_eq!(v["Options"], serde_json::Value::Null);
    let mp = v["Mountpoint"].as_str().context("Mountpoint")?;
    assert_eq!(Path::new(mp), volume_dir(&env, "myvol"));
    ensure!(Path::new(mp).is_dir());
    let created = v["CreatedAt"].as_str().context("CreatedAt")?;
    ensure!(created.len() == 20 && created.ends_with('Z'), "{created}");
    assert_eq!(
        env.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}}",
            "myvol",
            &anon
        ])?,
        format!("myvol local\n{anon} local\n")
    );
    assert_eq!(
        env.ok(&[
            "inspect",
            "--type",
            "volume",
            "-f",
            "{{.Mountpoint}}",
            "myvol"
        ])?,
        format!("{mp}\n")
    );
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.Scope}}", "myvol"])?,
        "local\n"
    );
    let o = env.berth(&["volume", "inspect", "nosuch"]);
    ensure!(
        !o.status.success() && err(&o).contains("no such volume"),
        "{}",
        err(&o)
    );

    // Bad names never reach the filesystem.
    for bad in ["a", "../x", ".hidden", "x/y"] {
        let o = env.berth(&["volume", "create", bad]);
        ensure!(o.status.code() == Some(125), "create {bad}: {:?}", o.status);
        ensure!(err(&o).contains("invalid characters"), "{}", err(&o));
    }
    let o = env.berth(&["run", "--rm", "-v", "..:/x", "busybox", "true"]);
    ensure!(!o.status.success() && err(&o).contains("invalid characters"));

    assert_eq!(env.ok(&["volume", "rm", "myvol"])?, "myvol\n");
    ensure!(!volume_dir(&env, "myvol").exists());
    let o = env.berth(&["volume", "rm", "myvol"]);
    ensure!(o.status.code() == Some(125) && err(&o).contains("no such volume"));
    env.ok(&["volume", "rm", "-f", "myvol"])?;
    let o = env.berth(&["volume", "rm", &anon, "nosuch"]);
    ensure!(!o.status.success(), "one of two failed");
    assert_eq!(out(&o), anon, "the other was removed");
    assert_eq!(env.ok(&["volume", "ls", "-q"])?, "");
    assert_clean(&env)
}

#[test]
fn rm_refuses_a_volume_in_use_until_its_container_is_gone() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    // `run -v name:/x` creates the named volume, with a record.
    let id = out(&env.berth(&["run", "-d", "-v", "used:/x", "busybox", "sleep", "60"]));
    ensure!(id.len() == 64, "run -d: {id}");
    assert_eq!(env.ok(&["volume", "ls", "-q"])?, "used\n");
    assert_eq!(env.ok(&["volume", "ls", "-q", "-f", "dangling=true"])?, "");
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "-f", "dangling=false"])?,
        "used\n"
    );
    let refused = |what: &str| -> Result<()> {
        let o = env.berth(&["volume", "rm", "used"]);
        ensure!(o.status.code() == Some(125), "{what}: {:?}", o.status);
        let want = format!("remove used: volume is in use - [{id}]");
        ensure!(err(&o).contains(&want), "{what}: {}", err(&o));
        // -f does not override it either.
        ensure!(!env.berth(&["volume", "rm", "-f", "used"]).status.success());
        ensure!(volume_dir(&env, "used").is_dir(), "{what}: directory kept");
        Ok(())
    };
    refused("running")?;
    env.ok(&["stop", "-t", "0", &id])?;
    refused("stopped")?;
    env.ok(&["rm", &id])?;
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "-f", "dangling=true"])?,
        "used\n"
    );
    assert_eq!(env.ok(&["volume", "rm", "used"])?, "used\n");
    ensure!(!env.root().join("volumes").join("used").exists());
    env.assert_clean_after_rm(&[id])
}

#[test]
fn prune_removes_unused_anonymous_volumes_and_with_all_named_ones() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    env.ok(&["volume", "create", "named"])?;
    // An anonymous volume left behind by `rm` without -v, one still in use, and one that
    // `rm -v` removes with its container.
    let gone = out(&env.berth(&["create", "-v", "/a", "busybox", "true"]));
    let kept = out(&env.berth(&["create", "-v", "/b", "busybox", "true"]));
    let with_v = out(&env.berth(&["create", "--mount", "type=volume,dst=/c", "busybox"]));
    let anon_of = |id: &str| -> Result<String> {
        let s = env.ok(&["inspect", "-f", "{{json .HostConfig.Mounts}}", id])?;
        let v: serde_json::Value = serde_json::from_str(&s)?;
        Ok(v[0]["Source"].as_str().context("mount source")?.to_string())
    };
    let (dangling, in_use, removed) = (anon_of(&gone)?, anon_of(&kept)?, anon_of(&with_v)?);
    let labels = env.ok(&["volume", "inspect", "-f", "{{json .Labels}}", &dangling])?;
    assert_eq!(labels, "{\"com.docker.volume.anonymous\":\"\"}\n");
    env.ok(&["rm", &gone])?;
    env.ok(&["rm", "-v", &with_v])?;
    ensure!(
        !env.ok(&["volume", "ls", "-q"])?.contains(&removed),
        "rm -v removes the anonymous volume's record"
    );
    ensure!(!env.root().join("volumes").join(&removed).exists());
    fs::write(volume_dir(&env, &dangling).join("f"), vec![7u8; 1500])?;

    let o = env.ok(&["volume", "prune", "-f"])?;
    assert_eq!(
        o,
        format!("Deleted Volumes:\n{dangling}\n\nTotal reclaimed space: 1.5kB\n")
    );
    let mut left: Vec<String> = env
        .ok(&["volume", "ls", "-q"])?
        .lines()
        .map(Into::into)
        .collect();
    left.sort();
    let mut want = vec![in_use.clone(), "named".to_string()];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(
        env.ok(&["volume", "prune", "-f"])?,
        "Total reclaimed space: 0B\n"
    );
    let o = env.ok(&["volume", "prune", "-a", "-f"])?;
    assert_eq!(o, "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n");
    assert_eq!(env.ok(&["volume", "ls", "-q"])?, format!("{in_use}\n"));
    // Without -f it asks, and an empty answer keeps everything.
    let o = env.berth(&["volume", "prune", "-a"]);
    ensure!(!o.status.success() && out(&o).contains("Are you sure"));
    env.ok(&["rm", "-v", &kept])?;
    assert_eq!(env.ok(&["volume", "ls", "-q"])?, "");
    env.assert_clean_after_rm(&[gone, kept, with_v])
}

#[test]
fn copy_up_fills_a_new_volume_once() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    import_data_image(&env)?;
    let o = env.ok(&[
        "run",
        "--rm",
        "-v",
        "cu:/data",
        "dataimg",
        "cat",
        "/data/hello",
    ])?;
    assert_eq!(o, "hello from the image\n");
    // A second container, of another image and at another path, sees the copy.
    let o = env.ok(&[
        "run",
        "--rm",
        "-v",
        "cu:/mnt",
        "busybox",
        "cat",
        "/mnt/sub/deep",
    ])?;
    assert_eq!(o, "deep\n");
    let vol = volume_dir(&env, "cu");
    assert_eq!(names_in(&vol)?, ["dirlink", "hello", "link", "sub", "suid"]);
    let md = |p: &str| fs::symlink_metadata(vol.join(p));
    let (h, s, su, root) = (md("hello")?, md("sub")?, md("suid")?, md("")?);
    assert_eq!((h.uid(), h.gid(), h.mode() & 0o7777), (1234, 1234, 0o640));
    assert_eq!((s.uid(), s.gid(), s.mode() & 0o7777), (1234, 5678, 0o750));
    assert_eq!(su.mode() & 0o7777, 0o4755, "set-uid bit kept");
    assert_eq!(
        (root.uid(), root.gid(), root.mode() & 0o7777),
        (42, 43, 0o711),
        "the volume's root takes the image directory's owner and mode"
    );
    // Once: emptied by a container, it is not filled again.
    env.ok(&[
        "run",
        "--rm",
        "-v",
        "cu:/data",
        "dataimg",
        "sh",
        "-c",
        "rm -rf /data/*",
    ])?;
    let o = env.ok(&[
        "run", "--rm", "-v", "cu:/data", "dataimg", "ls", "-A", "/data",
    ])?;
    assert_eq!(o, "", "not copied a second time");
    // An anonymous volume is filled too.
    let o = env.ok(&[
        "run",
        "--rm",
        "-v",
        "/data",
        "dataimg",
        "cat",
        "/data/hello",
    ])?;
    assert_eq!(o, "hello from the image\n");
    assert_clean(&env)
}

#[test]
fn nocopy_and_bind_mounts_are_not_filled() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    import_data_image(&env)?;
    // nocopy, both spellings.
    let o = env.ok(&[
        "run",
        "--rm",
        "-v",
        "nc:/data:nocopy",
        "dataimg",
        "ls",
        "-A",
        "/data",
    ])?;
    assert_eq!(o, "");
    let o = env.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=nc2,dst=/data,volume-nocopy",
        "dataimg",
        "ls",
        "-A",
        "/data",
    ])?;
    assert_eq!(o, "");
    ensure!(names_in(&volume_dir(&env, "nc"))?.is_empty());
    ensure!(names_in(&volume_dir(&env, "nc2"))?.is_empty());
    // A bind mount is never copied into.
    let bind = env.dir.path().join("bind");
    fs::create_dir_all(&bind)?;
    let spec = format!("{}:/data", bind.display());
    let o = env.ok(&["run", "--rm", "-v", &spec, "dataimg", "ls", "-A", "/data"])?;
    assert_eq!(o, "");
    ensure!(names_in(&bind)?.is_empty());
    assert_clean(&env)
}

#[test]
fn copy_up_never_follows_image_symlinks_out() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let host = import_data_image(&env)?;
    env.ok(&["run", "--rm", "-v", "esc:/data", "dataimg", "true"])?;
    let vol = volume_dir(&env, "esc");
    // The image's links are copied as links, with their text; never what they point to.
    for (name, target) in [("link", host.join("secret")), ("dirlink", host.clone())] {
        let md = fs::symlink_metadata(vol.join(name))?;
        ensure!(md.file_type().is_symlink(), "{name} is still a symlink");
        assert_eq!(fs::read_link(vol.join(name))?, target);
    }
    // The mount point itself a link to the host: resolved inside the rootfs, where it
    // leads nowhere, so nothing is copied and nothing is mounted on the host.
    let o = env.berth(&[
        "run",
        "--rm",
        "-v",
        "esc2:/evil",
        "dataimg",
        "ls",
        "-A",
        "/evil",
    ]);
    ensure!(!err(&o).contains("host secret") && !out(&o).contains("secret"));
    ensure!(names_in(&volume_dir(&env, "esc2"))?.is_empty());
    assert_host_untouched(&host)?;
    assert_clean(&env)
}

#[test]
fn concurrent_commands_keep_volume_records_whole() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    import_data_image(&env)?;
    // Containers starting together with one new volume: one copy-up, not a mix.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            env.cmd(&[
                "run",
                "--rm",
                "-v",
                "shared:/data",
                "dataimg",
                "cat",
                "/data/hello",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        })
        .collect::<Result<_, _>>()?;
    let creates: Vec<_> = (0..8)
        .map(|i| {
            env.cmd(&["volume", "create", &format!("v{i}")])
                .stdout(std::process::Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for c in runs {
        let o = c.wait_with_output()?;
        if !o.status.success() {
            bail!("run: {}", err(&o));
        }
        assert_eq!(out(&o), "hello from the image");
    }
    for mut c in creates {
        ensure!(c.wait()?.success(), "volume create");
    }
    assert_eq!(
        names_in(&volume_dir(&env, "shared"))?,
        ["dirlink", "hello", "link", "sub", "suid"]
    );
    let mut want: Vec<String> = (0..8).map(|i| format!("v{i}")).collect();
    want.push("shared".into());
    want.sort();
    let listed: Vec<String> = env
        .ok(&["volume", "ls", "-q"])?
        .lines()
        .map(Into::into)
        .collect();
    assert_eq!(listed, want);
    for n in &want {
        env.ok(&["volume", "inspect", n])?;
    }
    assert_clean(&env)
}

/// `--volumes-from`: the named and anonymous volumes and bind mounts of another container
/// (here a stopped one), in its mode or forced `:ro`; the new container's own mount of a
/// destination wins; an unknown container or mode is refused as Docker does; the
/// anonymous volume goes with the `rm -v` of the last container that uses it.
#[test]
fn volumes_from_another_container() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = Env::new()?;
    let host = env.dir.path().join("hostdir");
    fs::create_dir(&host)?;
    fs::write(host.join("h"), "from the host\n")?;
    let bind = format!("{}:/bind:ro", host.display());
    env.ok(&[
        "run",
        "--name",
        "src",
        "--network",
        "none",
        "-v",
        "shared:/data",
        "-v",
        "/anon",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "echo d > /data/f; echo a > /anon/g",
    ])?;
    let anon = env
        .ok(&["volume", "ls", "-q"])?
        .lines()
        .find(|n| *n != "shared")
        .context("the anonymous volume")?
        .to_string();
    let o = env.ok(&[
        "run", "--rm", "--network", "none", "--volumes-from", "src", "busybox", "sh", "-c",
        "cat /data/f /anon/g /bind/h; echo w > /data/f && echo data-rw; echo w > /bind/h || echo bind-ro",
    ])?;
    assert_eq!(o, "d\na\nfrom the host\ndata-rw\nbind-ro\n");
    let o = env.berth(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--volumes-from",
        "src:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /anon/g",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("Read-only file system"), "{}", err(&o));
    // Its own mount of /data wins over the borrowed one.
    let o = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--volumes-from",
        "src",
        "-v",
        "other:/data",
        "busybox",
        "sh",
        "-c",
        "ls /data | wc -l; cat /anon/g",
    ])?;
    assert_eq!(o.split_whitespace().collect::<Vec<_>>(), ["0", "a"]);
    for (arg, want) in [
        ("nope", "No such container: nope"),
        (
            "src:xx",
            "invalid argument \"src:xx\" for \"--volumes-from\" flag",
        ),
    ] {
        let o = env.berth(&["run", "--rm", "--volumes-from", arg, "busybox", "true"]);
        assert_eq!(o.status.code(), Some(125), "{arg}");
        assert!(err(&o).contains(want), "{arg}: {}", err(&o));
    }
    env.ok(&[
        "create",
        "--name",
        "user",
        "--volumes-from",
        "src",
        "busybox",
        "true",
    ])?;
    assert_eq!(
        env.ok(&["inspect", "-f", "{{json .HostConfig.VolumesFrom}}", "user"])?
            .trim(),
        r#"["src"]"#
    );
    env.ok(&["rm", "-v", "src"])?;
    assert!(
        env.ok(&["volume", "ls", "-q"])?.contains(&anon),
        "still used by `user`"
    );
    env.ok(&["rm", "-v", "user"])?;
    let left = env.ok(&["volume", "ls", "-q"])?;
    assert!(!left.contains(&anon), "{left}");
    env.ok(&["volume", "rm", "shared", "other"])?;
    assert_clean(&env)
}
