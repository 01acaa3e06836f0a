//! Bridge networking through the real `berth` binary (root): names and aliases on a
//! user-defined network and isolation between networks, published TCP and UDP ports
//! on the host's loopback, 50 concurrent containers with distinct addresses and no
//! leftovers, and the none/host/container: modes. Traffic goes only to loopback and to
//! the test's own containers. Each test has its own `--root`/`--runroot` (hence its own
//! nftables table and default bridge) and its own subnets in 10.231.0.0/16; a guard
//! removes its containers and then every network of the installation.

mod engine;

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use engine::{Env, can_run, err, wait_for};

/// An installation whose networks are removed on drop (after its containers).
struct NetEnv {
    env: Env,
}

impl NetEnv {
    fn new() -> Result<NetEnv> {
        Ok(NetEnv { env: Env::new()? })
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        self.env.ok(args)
    }

    /// The attachments of `network`: (container name, ip, host veth).
    fn attachments(&self, network: &str) -> Result<Vec<(String, String, String)>> {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["network", "inspect", network])?)?;
        let c = v[0]["Containers"].as_object().context("Containers")?;
        Ok(c.values()
            .map(|a| {
                let ip = a["IPv4Address"].as_str().unwrap_or("");
                (
                    a["Name"].as_str().unwrap_or("").to_string(),
                    ip.split('/').next().unwrap_or("").to_string(),
                    a["HostInterface"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }

    fn bridge(&self, network: &str) -> Result<String> {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["network", "inspect", network])?)?;
        Ok(v[0]["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .context("bridge name")?
            .to_string())
    }

    fn run_dir(&self) -> PathBuf {
        self.env.runroot().join("net")
    }

    /// Lease files of every network.
    fn leases(&self) -> usize {
        let dir = self.run_dir().join("endpoints");
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| fs::read_dir(d.path()).into_iter().flatten().count())
            .sum()
    }

    /// This installation's nftables table (`<run>/net/nft-<table>.stamp`).
    fn nft_table(&self) -> Result<String> {
        for e in fs::read_dir(self.run_dir())?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(t) = n
                .strip_prefix("nft-")
                .and_then(|t| t.strip_suffix(".stamp"))
            {
                return Ok(t.to_string());
            }
        }
        bail!("no nft stamp in {}", self.run_dir().display())
    }

    /// DNS responders serving this installation.
    fn responders(&self) -> Vec<i32> {
        let want = self.run_dir().to_string_lossy().into_owned();
        procs_matching(&["dns-serve", &want])
    }
}

impl Drop for NetEnv {
    fn drop(&mut self) {
        if let Ok(ids) = self.env.ids() {
            for id in ids {
                let _ = self.env.berth(&["rm", "-f", &id]);
            }
        }
        let o = self.env.berth(&["network", "reset"]);
        if !o.status.success() {
            eprintln!("network reset: {}", err(&o));
        }
    }
}

fn procs_matching(words: &[&str]) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if words.iter().all(|w| cmd.contains(w)) {
            out.push(pid);
        }
    }
    out
}

fn sh(cmd: &str, args: &[&str]) -> Result<String> {
    let o = std::process::Command::new(cmd).args(args).output()?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Links enslaved to `bridge` on the host.
fn ports_of(bridge: &str) -> Result<usize> {
    Ok(sh("ip", &["-o", "link", "show", "master", bridge])?
        .lines()
        .count())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A shell loop that retries `cmd` until it succeeds (up to ~5 s).
fn retry(cmd: &str) -> String {
    format!("i=0; until {cmd}; do i=$((i+1)); [ $i -ge 50 ] && exit 1; sleep 0.1; done")
}

#[test]
fn user_network_names_aliases_and_isolation() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = NetEnv::new()?;
    env.ok(&["network", "create", "--subnet", "10.231.11.0/24", "ta"])?;
    env.ok(&["network", "create", "--subnet", "10.231.12.0/24", "tb"])?;
    assert_eq!(env.responders().len(), 2, "one DNS responder per network");
    let ls = env.ok(&["network", "ls"])?;
    assert!(
        ls.contains("ta") && ls.contains("tb") && ls.contains("bridge"),
        "{ls}"
    );
    env.ok(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "ta",
        "--network-alias",
        "www",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ])?;
    let atts = env.attachments("ta")?;
    assert_eq!(atts.len(), 1);
    let other_ip = atts[0].1.clone();
    assert!(other_ip.starts_with("10.231.11."), "{other_ip}");
    // By name and by alias, through the network's DNS responder.
    let script = format!(
        "ping -c1 -W2 other >/dev/null && {} && wget -qO- http://www/hostname",
        retry("wget -qO- http://other/hostname")
    );
    let o = env.ok(&[
        "run",
        "--rm",
        "--network",
        "ta",
        "busybox",
        "sh",
        "-c",
        &script,
    ])?;
    let id = env.ok(&["inspect", "-f", "{{.Id}}", "other"])?;
    assert_eq!(o.lines().collect::<Vec<_>>(), [&id.trim()[..12]; 2], "{o}");
    // A container on another network reaches neither the address nor the name.
    let probe = format!(
        "ping -c1 -W1 {other_ip} >/dev/null 2>&1 && echo ping-ok; \
         timeout 3 wget -qO- http://{other_ip}/hostname >/dev/null 2>&1 && echo wget-ok; \
         nslookup other 2>/dev/null | grep -q {other_ip} && echo dns-ok; echo done"
    );
    let o = env.ok(&[
        "run",
        "--rm",
        "--network",
        "tb",
        "busybox",
        "sh",
        "-c",
        &probe,
    ])?;
    assert_eq!(o.trim(), "done", "network tb reached ta: {o}");
    // Positive control: the same probe from ta gets through.
    let o = env.ok(&[
        "run",
        "--rm",
        "--network",
        "ta",
        "busybox",
        "sh",
        "-c",
        &probe,
    ])?;
    assert!(
        o.contains("ping-ok") && o.contains("wget-ok") && o.contains("dns-ok"),
        "{o}"
    );
    // A removed network cannot go while used; afterwards nothing of it stays.
    let o = env.env.berth(&["network", "rm", "ta"]);
    assert_ne!(o.status.code(), Some(0), "rm of a network in use");
    let bridge = env.bridge("ta")?;
    env.ok(&["rm", "-f", "other"])?;
    // The kernel deletes a container's veth when it tears its network namespace down,
    // which it does asynchronously after the last process is gone.
    wait_for("no veth on the bridge", || Ok(ports_of(&bridge)? == 0))?;
    env.ok(&["network", "rm", "ta", "tb"])?;
    assert!(
        env.responders().is_empty(),
        "responders left: {:?}",
        env.responders()
    );
    assert!(
        sh("ip", &["-o", "link", "show", &bridge])?.is_empty(),
        "bridge {bridge} left"
    );
    assert_eq!(env.leases(), 0);
    env.env.assert_clean_after_rm(&[id.trim().to_string()])
}

fn http_get(port: u16, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

#[test]
fn published_tcp_and_udp_ports_on_loopback() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = NetEnv::new()?;
    let tcp = free_port()?;
    let publish = format!("127.0.0.1:{tcp}:80");
    let id = env
        .ok(&[
            "run", "-d", "-p", &publish, "busybox", "httpd", "-f", "-p", "80", "-h", "/etc",
        ])?
        .trim()
        .to_string();
    let port = env.ok(&["port", &id])?;
    assert_eq!(port.trim(), format!("80/tcp -> 127.0.0.1:{tcp}"));
    let mut got = String::new();
    wait_for("the published httpd", || {
        got = http_get(tcp, "/hostname").unwrap_or_default();
        Ok(got.contains(&id[..12]))
    })?;
    assert!(got.starts_with("HTTP/1.") && got.contains(" 200 "), "{got}");

    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let uport = udp.local_addr()?.port();
    drop(udp);
    let publish = format!("127.0.0.1:{uport}:9999/udp");
    // Debian's busybox has no UDP server (its nc lacks -u), so the container's own UDP
    // counters show the datagrams arriving at the published port: with no listener each
    // one counts as `NoPorts` in the container's namespace, and only DNAT brings them
    // there (a datagram to an unpublished host port does not).
    let uid = env
        .ok(&["run", "-d", "-p", &publish, "busybox", "sleep", "1000"])?
        .trim()
        .to_string();
    let no_ports = || -> Result<u64> {
        let snmp = env.ok(&["exec", &uid, "cat", "/proc/net/snmp"])?;
        let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
        let (names, values) = (udp[0].split_whitespace(), udp[1].split_whitespace());
        let (_, v) = names
            .zip(values)
            .find(|(n, _)| *n == "NoPorts")
            .context("NoPorts")?;
        Ok(v.parse()?)
    };
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let before = no_ports()?;
    let other = free_port()?;
    for _ in 0..3 {
        sock.send_to(b"not-published\n", ("127.0.0.1", other))?;
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        no_ports()?,
        before,
        "a datagram to an unpublished port arrived"
    );
    for _ in 0..5 {
        sock.send_to(b"hello-udp\n", ("127.0.0.1", uport))?;
    }
    wait_for("5 datagrams in the container", || {
        Ok(no_ports()? >= before + 5)
    })?;
    assert_eq!(
        env.ok(&["port", &uid])?.trim(),
        format!("9999/udp -> 127.0.0.1:{uport}")
    );
    let table = env.nft_table()?;
    let rules = sh("nft", &["list", "table", "ip", &table])?;
    assert!(rules.contains(&format!("dport {tcp}")), "{rules}");
    env.ok(&["rm", "-f", &id, &uid])?;
    let rules = sh("nft", &["list", "table", "ip", &table])?;
    assert!(!rules.contains("dnat to"), "DNAT rules left: {rules}");
    assert!(
        http_get(tcp, "/hostname").is_err(),
        "port {tcp} still answers"
    );
    assert_eq!(env.leases(), 0);
    env.env.assert_clean_after_rm(&[id, uid])
}

#[test]
fn fifty_concurrent_containers_distinct_addresses_then_nothing_left() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = NetEnv::new()?;
    env.ok(&["network", "create", "--subnet", "10.231.13.0/24", "tc"])?;
    let bridge = env.bridge("tc")?;
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_>>()?;
    let results: Vec<Result<String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..50)
            .map(|i| {
                let env = &env;
                let publish = ports.get(i).map(|p| format!("127.0.0.1:{p}:80"));
                s.spawn(move || {
                    let name = format!("c{i}");
                    let mut args = vec!["run", "-d", "--network", "tc", "--name", &name];
                    if let Some(p) = &publish {
                        args.extend(["-p", p.as_str()]);
                    }
                    args.extend(["busybox", "sleep", "1000"]);
                    env.ok(&args)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let ids: Vec<String> = results
        .into_iter()
        .map(|r| r.map(|s| s.trim().to_string()))
        .collect::<Result<_>>()?;
    let atts = env.attachments("tc")?;
    let ips: HashSet<&str> = atts.iter().map(|a| a.1.as_str()).collect();
    assert_eq!((atts.len(), ips.len()), (50, 50), "{atts:?}");
    assert_eq!(ports_of(&bridge)?, 50);
    let table = env.nft_table()?;
    let rules = sh("nft", &["list", "table", "ip", &table])?;
    assert_eq!(rules.matches("dnat to").count(), 3, "{rules}");
    std::thread::scope(|s| {
        for id in &ids {
            let env = &env;
            s.spawn(move || env.ok(&["rm", "-f", id]).map(drop));
        }
    });
    assert!(env.env.ids()?.is_empty());
    // Namespace teardown (and with it the veths) is asynchronous in the kernel.
    wait_for(&format!("no veths left on {bridge}"), || {
        Ok(ports_of(&bridge)? == 0)
    })?;
    let veths = sh("ip", &["-o", "link"])?;
    for a in &atts {
        assert!(!veths.contains(&format!(" {}@", a.2)), "veth {} left", a.2);
    }
    assert_eq!(env.leases(), 0, "leases left");
    let rules = sh("nft", &["list", "table", "ip", &table])?;
    assert!(
        !rules.contains("dnat to"),
        "per-container rules left: {rules}"
    );
    env.env.assert_clean_after_rm(&ids)
}

/// Interface names in `ip -o link` output.
fn link_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

#[test]
fn none_host_and_container_modes() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = NetEnv::new()?;
    let o = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ])?;
    assert_eq!(link_names(&o), ["lo"], "{o}");
    // The host's default-route interface is visible with --network host.
    let route = fs::read_to_string("/proc/net/route")?;
    let dev = route
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(1) == Some("00000000"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("lo")
        .to_string();
    let o = env.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ip",
        "-o",
        "link",
    ])?;
    assert!(link_names(&o).contains(&dev), "{dev} not in {o}");
    // container:X shares X's interfaces and address.
    env.ok(&["network", "create", "--subnet", "10.231.14.0/24", "td"])?;
    env.ok(&[
        "run",
        "-d",
        "--name",
        "xx",
        "--network",
        "td",
        "--ip",
        "10.231.14.77",
        "busybox",
        "sleep",
        "1000",
    ])?;
    let o = env.ok(&[
        "run",
        "--rm",
        "--network",
        "container:xx",
        "busybox",
        "ip",
        "-o",
        "-4",
        "addr",
    ])?;
    assert!(o.contains("10.231.14.77/24"), "{o}");
    // An unknown network fails the run cleanly.
    let o = env
        .env
        .berth(&["run", "--rm", "--network", "nosuch", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", err(&o));
    env.ok(&["rm", "-f", "xx"])?;
    assert_eq!(env.leases(), 0);
    env.env.assert_clean_after_rm(&[])
}

#[test]
fn etc_files_add_host_dns_and_connect() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = NetEnv::new()?;
    let o = env.ok(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        "--add-host",
        "db:10.9.9.9",
        "--dns",
        "10.8.8.8",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hostname /etc/hosts /etc/resolv.conf; ip -o -4 addr show eth0",
    ])?;
    assert!(o.starts_with("box\n"), "{o}");
    assert!(
        o.contains("10.9.9.9\tdb") && o.contains("nameserver 10.8.8.8"),
        "{o}"
    );
    let ip = o
        .lines()
        .find(|l| l.contains("eth0") && l.contains("inet "))
        .and_then(|l| l.split("inet ").nth(1))
        .and_then(|l| l.split('/').next())
        .context("eth0 address")?
        .to_string();
    assert!(o.contains(&format!("{ip}\tbox")), "{o}");
    // connect / disconnect a running container to a second network.
    env.ok(&["network", "create", "--subnet", "10.231.15.0/24", "te"])?;
    env.ok(&["run", "-d", "--name", "yy", "busybox", "sleep", "1000"])?;
    env.ok(&["network", "connect", "--alias", "why", "te", "yy"])?;
    let o = env.ok(&["exec", "yy", "ip", "-o", "-4", "addr"])?;
    assert!(o.contains("eth1") && o.contains("10.231.15."), "{o}");
    let o = env.ok(&[
        "run",
        "--rm",
        "--network",
        "te",
        "busybox",
        "ping",
        "-c1",
        "-W2",
        "why",
    ])?;
    assert!(o.contains("1 packets received"), "{o}");
    env.ok(&["network", "disconnect", "te", "yy"])?;
    let o = env.ok(&["exec", "yy", "ip", "-o", "link"])?;
    assert!(!o.contains("eth1"), "{o}");
    env.ok(&["rm", "-f", "yy"])?;
    let o = env.ok(&["network", "prune", "-f"])?;
    assert!(o.contains("te"), "{o}");
    ensure!(env.responders().is_empty(), "responders left");
    env.env.assert_clean_after_rm(&[])
}

#[test]
fn failed_start_and_killed_monitor_release_leases() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let env = NetEnv::new()?;
    env.ok(&["network", "create", "--subnet", "10.231.16.0/24", "tf"])?;
    let bridge = env.bridge("tf")?;
    // The program is missing: the start fails after the attach, which is undone.
    let o = env
        .env
        .berth(&["run", "--rm", "--network", "tf", "busybox", "/nosuch"]);
    assert_ne!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(env.leases(), 0, "lease left by a failed start");
    // A port already published by another container: the second run fails cleanly.
    let p = format!("127.0.0.1:{}:80", free_port()?);
    env.ok(&[
        "run",
        "-d",
        "--network",
        "tf",
        "-p",
        &p,
        "busybox",
        "sleep",
        "1000",
    ])?;
    let o = env.env.berth(&[
        "run",
        "-d",
        "--network",
        "tf",
        "-p",
        &p,
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_ne!(o.status.code(), Some(0), "a port published twice");
    assert_eq!(env.leases(), 1);
    // SIGKILL of the monitor and of the container: the next `ps` records the exit and
    // drops the lease; the namespace (and so the veth) dies with the init.
    let id = env
        .ok(&["run", "-d", "--network", "tf", "busybox", "sleep", "1000"])?
        .trim()
        .to_string();
    let pid: i32 = env
        .ok(&["inspect", "-f", "{{.State.Pid}}", &id])?
        .trim()
        .parse()?;
    for m in env.env.monitors() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(m),
            nix::sys::signal::Signal::SIGKILL,
        )?;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    wait_for("the killed container's lease to go", || {
        env.ok(&["ps", "-a"])?;
        Ok(env.leases() == 1)
    })?;
    for id in env.env.ids()? {
        env.ok(&["rm", "-f", &id])?;
    }
    wait_for("no veth on the bridge", || Ok(ports_of(&bridge)? == 0))?;
    assert_eq!(env.leases(), 0);
    env.env.assert_clean_after_rm(&[id])
}
