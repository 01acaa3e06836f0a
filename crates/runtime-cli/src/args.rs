//! runc's command line, parsed by hand from one table of commands and flags.
//!
//! berth-runtime starts once per container operation, so its start-up is paid by every
//! caller; a full argument-parsing framework cost more in mapped pages than the rest of
//! the binary's start-up. Accepts what runc (urfave/cli) and its callers use:
//! `--flag value`, `--flag=value`, Go-style `-flag value`, `-f value`, `--bool`,
//! `--bool=false`, `--` and global flags before or after the command.

use std::fmt::Write as _;

/// One flag: long name, optional short letter, whether it takes a value, help.
#[derive(Debug)]
pub(crate) struct Flag {
    pub long: &'static str,
    pub short: Option<char>,
    pub value: bool,
    pub help: &'static str,
}

const fn flag(long: &'static str, short: Option<char>, value: bool, help: &'static str) -> Flag {
    Flag {
        long,
        short,
        value,
        help,
    }
}

/// Flags every command accepts.
const GLOBAL: &[Flag] = &[
    flag(
        "root",
        None,
        true,
        "directory for container state (default /run/berth-runtime)",
    ),
    flag("log", None, true, "also write errors to this file"),
    flag("log-format", None, true, "format of --log: text or json"),
    flag("debug", None, false, "print debug messages"),
    flag(
        "systemd-cgroup",
        None,
        false,
        "use systemd for cgroups (not supported: cgroupfs only)",
    ),
    flag(
        "rootless",
        None,
        false,
        "rootless mode (true, false, auto); with spec, a rootless spec",
    ),
    flag("criu", None, true, "path to criu (accepted, unused)"),
    flag("help", Some('h'), false, "show help"),
    flag("version", Some('v'), false, "print the version"),
];

const CREATE_FLAGS: &[Flag] = &[
    flag(
        "bundle",
        Some('b'),
        true,
        "path to the bundle directory (default .)",
    ),
    flag(
        "console-socket",
        None,
        true,
        "unix socket that receives the pty master",
    ),
    flag("pid-file", None, true, "file to write the init's pid to"),
    flag("no-pivot", None, false, "use chroot instead of pivot_root"),
    flag(
        "no-new-keyring",
        None,
        false,
        "do not make a new session keyring",
    ),
    flag(
        "preserve-fds",
        None,
        true,
        "pass N extra fds (3..3+N) into the container",
    ),
];

const RUN_FLAGS: &[Flag] = &[
    flag(
        "detach",
        Some('d'),
        false,
        "return once started instead of waiting",
    ),
    flag(
        "keep",
        None,
        false,
        "keep the container's state after it exits",
    ),
];

const KILL_FLAGS: &[Flag] = &[flag(
    "all",
    Some('a'),
    false,
    "signal every process of the container",
)];
const DELETE_FLAGS: &[Flag] = &[flag(
    "force",
    Some('f'),
    false,
    "kill the container first if it runs",
)];
const FORMAT: Flag = flag("format", Some('f'), true, "table or json");
const PS_FLAGS: &[Flag] = &[FORMAT];
const LIST_FLAGS: &[Flag] = &[FORMAT, flag("quiet", Some('q'), false, "print ids only")];
const EVENTS_FLAGS: &[Flag] = &[
    flag("stats", None, false, "print one stats sample and exit"),
    flag(
        "interval",
        None,
        true,
        "interval between samples (default 5s)",
    ),
];
const UPDATE_FLAGS: &[Flag] = &[
    flag(
        "resources",
        Some('r'),
        true,
        "a LinuxResources JSON file, or - for stdin",
    ),
    flag("memory", None, true, "memory limit (bytes or k/m/g)"),
    flag("memory-swap", None, true, "memory plus swap limit"),
    flag("memory-reservation", None, true, "memory soft limit"),
    flag("cpu-shares", None, true, "CPU shares"),
    flag("cpu-period", None, true, "CPU CFS period (µs)"),
    flag("cpu-quota", None, true, "CPU CFS quota (µs)"),
    flag("cpuset-cpus", None, true, "CPUs to run on"),
    flag("cpuset-mems", None, true, "memory nodes to use"),
    flag("pids-limit", None, true, "maximum number of processes"),
    flag("blkio-weight", None, true, "block I/O weight (10-1000)"),
];
const SPEC_FLAGS: &[Flag] = &[flag(
    "bundle",
    Some('b'),
    true,
    "where to write config.json (default .)",
)];
const EXEC_FLAGS: &[Flag] = &[
    flag(
        "process",
        Some('p'),
        true,
        "a process.json with the whole process to run",
    ),
    flag(
        "console-socket",
        None,
        true,
        "unix socket that receives the pty master",
    ),
    flag("cwd", None, true, "working directory"),
    flag(
        "env",
        Some('e'),
        true,
        "set an environment variable (repeatable)",
    ),
    flag("tty", Some('t'), false, "allocate a pty"),
    flag("user", Some('u'), true, "uid[:gid]"),
    flag(
        "additional-gids",
        Some('g'),
        true,
        "additional group (repeatable)",
    ),
    flag("cap", Some('c'), true, "add a capability (repeatable)"),
    flag("no-new-privs", None, false, "set no_new_privs"),
    flag("detach", Some('d'), false, "return once started"),
    flag("pid-file", None, true, "file to write the process's pid to"),
    flag(
        "preserve-fds",
        None,
        true,
        "pass N extra fds into the process",
    ),
    flag(
        "process-label",
        None,
        true,
        "SELinux label (accepted, unused)",
    ),
    flag(
        "apparmor",
        None,
        true,
        "AppArmor profile (accepted, unused)",
    ),
    flag("ignore-paused", None, false, "accepted for compatibility"),
    flag("cgroup", None, true, "accepted for compatibility"),
];

/// One command: name, flags, how many positionals before the rest is taken verbatim
/// (None: no verbatim tail), usage and summary.
pub(crate) struct CommandSpec {
    pub name: &'static str,
    /// Flag groups (`run` shares `create`'s and adds its own).
    pub flags: &'static [&'static [Flag]],
    pub tail_after: Option<usize>,
    pub usage: &'static str,
    pub about: &'static str,
}

const fn cmd(
    name: &'static str,
    flags: &'static [&'static [Flag]],
    tail_after: Option<usize>,
    usage: &'static str,
    about: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        flags,
        tail_after,
        usage,
        about,
    }
}

pub(crate) const COMMANDS: &[CommandSpec] = &[
    cmd(
        "create",
        &[CREATE_FLAGS],
        None,
        "create [flags] ID",
        "create a container; its program waits for start",
    ),
    cmd(
        "start",
        &[],
        None,
        "start ID",
        "start the program of a created container",
    ),
    cmd(
        "run",
        &[CREATE_FLAGS, RUN_FLAGS],
        None,
        "run [flags] ID",
        "create and start a container, and wait for it",
    ),
    cmd(
        "state",
        &[],
        None,
        "state ID",
        "print the state of a container as JSON",
    ),
    cmd(
        "kill",
        &[KILL_FLAGS],
        None,
        "kill [--all] ID [SIGNAL]",
        "send a signal (default TERM) to the container",
    ),
    cmd(
        "delete",
        &[DELETE_FLAGS],
        None,
        "delete [--force] ID",
        "delete a container and everything it holds",
    ),
    cmd(
        "ps",
        &[PS_FLAGS],
        Some(1),
        "ps [--format table|json] ID [PS ARGS]",
        "list the processes of a container",
    ),
    cmd(
        "list",
        &[LIST_FLAGS],
        None,
        "list [--format table|json] [-q]",
        "list containers",
    ),
    cmd(
        "pause",
        &[],
        None,
        "pause ID",
        "freeze every process of a container",
    ),
    cmd("resume", &[], None, "resume ID", "thaw a paused container"),
    cmd(
        "events",
        &[EVENTS_FLAGS],
        None,
        "events [--stats] [--interval 5s] ID",
        "print resource usage and OOM events",
    ),
    cmd(
        "update",
        &[UPDATE_FLAGS],
        None,
        "update [flags] ID",
        "change the resource limits of a running container",
    ),
    cmd(
        "spec",
        &[SPEC_FLAGS],
        None,
        "spec [--bundle DIR] [--rootless]",
        "write a default config.json",
    ),
    cmd(
        "features",
        &[],
        None,
        "features",
        "print the runtime-spec features JSON",
    ),
    cmd(
        "exec",
        &[EXEC_FLAGS],
        Some(1),
        "exec [flags] ID [COMMAND [ARG...]]",
        "run a new process in a running container",
    ),
    cmd(
        "init",
        &[],
        Some(0),
        "init [--] PROGRAM [ARG...]",
        "run PROGRAM under a minimal pid 1 that reaps zombies and forwards signals (run --init)",
    ),
];

/// A parsed command line: global flags, the command, its flags and positionals.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub command: Option<&'static str>,
    flags: Vec<(&'static str, String)>,
    pub positionals: Vec<String>,
}

impl Parsed {
    /// The last value of a flag.
    pub(crate) fn get(&self, long: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| *k == long)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable flag, in order.
    pub(crate) fn all(&self, long: &str) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(k, _)| *k == long)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag: present and not `=false`.
    pub(crate) fn on(&self, long: &str) -> bool {
        self.get(long).is_some_and(|v| v != "false")
    }

    /// A flag parsed as a number.
    pub(crate) fn num<T: std::str::FromStr>(&self, long: &str) -> Result<Option<T>, ArgsError> {
        self.get(long)
            .map(|v| {
                v.parse().map_err(|_| ArgsError::Value {
                    flag: long.to_string(),
                    value: v.to_string(),
                })
            })
            .transpose()
    }

    /// The positional at `i`, or an error naming what is missing.
    pub(crate) fn positional(&self, i: usize, what: &'static str) -> Result<&str, ArgsError> {
        self.positionals
            .get(i)
            .map(String::as_str)
            .ok_or(ArgsError::Missing {
                what,
                command: self.command.unwrap_or(""),
            })
    }
}

/// Why the command line was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArgsError {
    #[error("unknown command `{0}`; run `berth-runtime --help` for the list")]
    UnknownCommand(String),
    #[error("unknown flag `{flag}`{context}; run `berth-runtime {help}--help`")]
    UnknownFlag {
        flag: String,
        context: String,
        help: String,
    },
    #[error("flag `--{0}` needs a value")]
    NoValue(String),
    #[error("bad value `{value}` for `--{flag}`")]
    Value { flag: String, value: String },
    #[error("`{command}` needs {what}")]
    Missing {
        what: &'static str,
        command: &'static str,
    },
}

fn find<'a>(flags: &'a [Flag], name: &str, short: bool) -> Option<&'a Flag> {
    flags.iter().find(|f| {
        if short {
            name.chars().count() == 1 && f.short == name.chars().next()
        } else {
            f.long == name
        }
    })
}

/// Parses argv (without the program name).
pub(crate) fn parse(args: &[String]) -> Result<Parsed, ArgsError> {
    let mut out = Parsed::default();
    let mut spec: Option<&'static CommandSpec> = None;
    let mut verbatim = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if verbatim {
            out.positionals.push(arg.clone());
            continue;
        }
        if arg == "--" {
            verbatim = true;
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') {
            let double = arg.starts_with("--");
            let body = arg.trim_start_matches('-');
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let lookup = |flags: &'static [Flag]| {
                if double {
                    find(flags, name, false)
                } else {
                    find(flags, name, true).or_else(|| find(flags, name, false))
                }
            };
            let f = spec
                .and_then(|s| s.flags.iter().find_map(|g| lookup(g)))
                .or_else(|| lookup(GLOBAL))
                .ok_or_else(|| ArgsError::UnknownFlag {
                    flag: arg.clone(),
                    context: spec
                        .map(|s| format!(" for `{}`", s.name))
                        .unwrap_or_default(),
                    help: spec.map(|s| format!("{} ", s.name)).unwrap_or_default(),
                })?;
            let value = if f.value {
                match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| ArgsError::NoValue(f.long.to_string()))?,
                }
            } else {
                inline.unwrap_or_else(|| "true".to_string())
            };
            out.flags.push((f.long, value));
            continue;
        }
        match spec {
            None => {
                let s = COMMANDS
                    .iter()
                    .find(|c| c.name == arg)
                    .ok_or_else(|| ArgsError::UnknownCommand(arg.clone()))?;
                spec = Some(s);
                out.command = Some(s.name);
                if s.tail_after == Some(0) {
                    verbatim = true;
                }
            }
            Some(s) => {
                out.positionals.push(arg.clone());
                if s.tail_after == Some(out.positionals.len()) {
                    verbatim = true;
                }
            }
        }
    }
    Ok(out)
}

/// `--help` text: every command, or one command's flags.
pub(crate) fn help(command: Option<&str>) -> String {
    let mut s = String::new();
    let flags = |s: &mut String, flags: &[Flag]| {
        for f in flags {
            let short = f.short.map(|c| format!("-{c}, ")).unwrap_or_default();
            let val = if f.value { " VALUE" } else { "" };
            let _ = writeln!(s, "  {short}--{}{val}\n        {}", f.long, f.help);
        }
    };
    match command.and_then(|c| COMMANDS.iter().find(|x| x.name == c)) {
        Some(c) => {
            let _ = writeln!(s, "berth-runtime {}\n\n{}\n\nFlags:", c.usage, c.about);
            for group in c.flags {
                flags(&mut s, group);
            }
        }
        None => {
            s.push_str("berth-runtime: run containers from OCI bundles (runc's command line)\n\nUsage: berth-runtime [global flags] COMMAND [flags] [args]\n\nCommands:\n");
            for c in COMMANDS {
                let _ = writeln!(s, "  {:<10} {}", c.name, c.about);
            }
            s.push_str("\nGlobal flags:\n");
            flags(&mut s, GLOBAL);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Parsed, ArgsError> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn conmon_and_containerd_style_command_lines_parse() {
        let a = p(&[
            "--root",
            "/run/x",
            "--log=/l.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "create",
            "--bundle",
            "/b",
            "--pid-file=/p",
            "--console-socket",
            "/s",
            "ctr1",
        ])
        .unwrap();
        assert_eq!(a.command, Some("create"));
        assert_eq!(a.get("root"), Some("/run/x"));
        assert_eq!(a.get("log"), Some("/l.json"));
        assert!(a.on("systemd-cgroup"));
        assert_eq!(a.get("bundle"), Some("/b"));
        assert_eq!(a.get("pid-file"), Some("/p"));
        assert_eq!(a.positional(0, "an id").unwrap(), "ctr1");
    }

    #[test]
    fn go_style_single_dash_and_short_flags() {
        let a = p(&["run", "-bundle", "/b", "-d", "x"]).unwrap();
        assert_eq!(a.get("bundle"), Some("/b"));
        assert!(a.on("detach"));
        let a = p(&["delete", "-f", "x", "--root", "/r"]).unwrap();
        assert!(a.on("force"));
        assert_eq!(a.get("root"), Some("/r"));
        let a = p(&["list", "--quiet=false"]).unwrap();
        assert!(!a.on("quiet"));
    }

    #[test]
    fn exec_and_ps_keep_everything_after_the_id() {
        let a = p(&[
            "exec",
            "-e",
            "A=1",
            "--env=B=2",
            "-t",
            "c1",
            "sh",
            "-c",
            "ls -l",
            "--root",
            "x",
        ])
        .unwrap();
        assert_eq!(a.all("env"), ["A=1", "B=2"]);
        assert!(a.on("tty"));
        assert_eq!(a.positionals, ["c1", "sh", "-c", "ls -l", "--root", "x"]);
        let a = p(&["ps", "c1", "-ef"]).unwrap();
        assert_eq!(a.positionals, ["c1", "-ef"]);
    }

    #[test]
    fn init_takes_everything_after_it() {
        let a = p(&["init", "--", "sh", "-c", "x"]).unwrap();
        assert_eq!(a.positionals, ["--", "sh", "-c", "x"]);
        let a = p(&["init", "sleep", "-h"]).unwrap();
        assert_eq!(a.positionals, ["sleep", "-h"]);
    }

    #[test]
    fn mistakes_are_named() {
        assert!(matches!(p(&["nope"]), Err(ArgsError::UnknownCommand(_))));
        let e = p(&["create", "--bogus", "x"]).unwrap_err().to_string();
        assert!(e.contains("--bogus") && e.contains("create"), "{e}");
        assert!(matches!(
            p(&["create", "--bundle"]),
            Err(ArgsError::NoValue(_))
        ));
        let a = p(&["update", "--pids-limit", "x", "c"]).unwrap();
        assert!(a.num::<i64>("pids-limit").is_err());
        let a = p(&["start"]).unwrap();
        assert!(a.positional(0, "a container id").is_err());
    }

    #[test]
    fn help_lists_every_command() {
        let h = help(None);
        for c in COMMANDS {
            assert!(h.contains(c.name));
        }
        assert!(help(Some("exec")).contains("--console-socket"));
    }
}
