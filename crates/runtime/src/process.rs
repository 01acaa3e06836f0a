//! The container process's last steps before execve: rlimits, scheduler, I/O priority,
//! user and groups, capabilities, no_new_privs, umask, cwd, seccomp, exec.
//!
//! Shared by a container's init and by `exec`, so both apply a `process` the same way.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{IOPriorityClass, LinuxSchedulerPolicy, PosixRlimitType, Process};

use crate::caps::{self, CapSets, CapsError};
use crate::sys;

/// Why the process could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("set rlimit `{name}`: {source}")]
    Rlimit { name: String, source: io::Error },
    #[error("{op}: {source}")]
    Creds { op: &'static str, source: io::Error },
    #[error(transparent)]
    Caps(#[from] CapsError),
    #[error("chdir to cwd `{cwd}`: {source}")]
    Cwd { cwd: PathBuf, source: io::Error },
    #[error("executable file `{0}` not found in $PATH")]
    NotFound(String),
    #[error("exec `{path}`: {source}")]
    Exec { path: String, source: io::Error },
    #[error("set scheduler: {0}")]
    Scheduler(io::Error),
    #[error("set io priority: {0}")]
    IoPriority(io::Error),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("invalid string in process: {0}")]
    Nul(String),
}

/// Everything of `process` resolved before the fork, so the child only makes syscalls.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub cwd: PathBuf,
    pub caps: CapSets,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: Option<u32>,
    pub no_new_privs: bool,
    pub rlimits: Vec<(libc::c_int, u64, u64, String)>,
    pub path_env: String,
}

/// One line per rlimit: OCI name and the kernel's resource number.
const RLIMITS: &[(PosixRlimitType, libc::c_int)] = &[
    (PosixRlimitType::RlimitCpu, libc::RLIMIT_CPU as libc::c_int),
    (
        PosixRlimitType::RlimitFsize,
        libc::RLIMIT_FSIZE as libc::c_int,
    ),
    (
        PosixRlimitType::RlimitData,
        libc::RLIMIT_DATA as libc::c_int,
    ),
    (
        PosixRlimitType::RlimitStack,
        libc::RLIMIT_STACK as libc::c_int,
    ),
    (
        PosixRlimitType::RlimitCore,
        libc::RLIMIT_CORE as libc::c_int,
    ),
    (PosixRlimitType::RlimitRss, libc::RLIMIT_RSS as libc::c_int),
    (
        PosixRlimitType::RlimitNproc,
        libc::RLIMIT_NPROC as libc::c_int,
    ),
    (
        PosixRlimitType::RlimitNofile,
        libc::RLIMIT_NOFILE as libc::c_int,
    ),
    (
        PosixRlimitType::RlimitMemlock,
        libc::RLIMIT_MEMLOCK as libc::c_int,
    ),
    (PosixRlimitType::RlimitAs, libc::RLIMIT_AS as libc::c_int),
    (
        PosixRlimitType::RlimitLocks,
        libc::RLIMIT_LOCKS as libc::c_int,
    ),
    (
        PosixRlimitType::RlimitSigpending,
        libc::RLIMIT_SIGPENDING as libc::c_int,
    ),
    (
        PosixRlimitType::RlimitMsgqueue,
        libc::RLIMIT_MSGQUEUE as libc::c_int,
    ),
    (
        PosixRlimitType::RlimitNice,
        libc::RLIMIT_NICE as libc::c_int,
    ),
    (
        PosixRlimitType::RlimitRtprio,
        libc::RLIMIT_RTPRIO as libc::c_int,
    ),
    (
        PosixRlimitType::RlimitRttime,
        libc::RLIMIT_RTTIME as libc::c_int,
    ),
];

fn cstring(s: &str) -> Result<CString, ProcessError> {
    CString::new(s).map_err(|_| ProcessError::Nul(s.to_string()))
}

/// Resolves a `process` into plain values.
pub(crate) fn prepare(p: &Process) -> Result<Prepared, ProcessError> {
    let args = p.args().clone().unwrap_or_default();
    let argv = args.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;
    let env = p.env().clone().unwrap_or_default();
    let envp = env.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;
    let path_env = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .to_string();
    let mut rlimits = Vec::new();
    for r in p.rlimits().iter().flatten() {
        let res = RLIMITS
            .iter()
            .find(|(t, _)| *t == r.typ())
            .map(|(_, n)| *n)
            .ok_or_else(|| ProcessError::Rlimit {
                name: r.typ().to_string(),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            })?;
        rlimits.push((res, r.soft(), r.hard(), r.typ().to_string()));
    }
    let user = p.user();
    Ok(Prepared {
        argv,
        envp,
        cwd: p.cwd().clone(),
        caps: caps::from_spec(p.capabilities().as_ref())?,
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        rlimits,
        path_env,
    })
}

/// Sets rlimits; done before the user switch so hard limits can still be lowered freely.
pub(crate) fn apply_rlimits(p: &Prepared) -> Result<(), ProcessError> {
    for (res, soft, hard, name) in &p.rlimits {
        sys::setrlimit(*res, *soft, *hard).map_err(|source| ProcessError::Rlimit {
            name: name.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Applies `process.scheduler` and `process.ioPriority` if given.
pub(crate) fn apply_sched(p: &Process) -> Result<(), ProcessError> {
    if let Some(s) = p.scheduler() {
        let policy = match s.policy() {
            LinuxSchedulerPolicy::SchedOther => libc::SCHED_OTHER,
            LinuxSchedulerPolicy::SchedFifo => libc::SCHED_FIFO,
            LinuxSchedulerPolicy::SchedRr => libc::SCHED_RR,
            LinuxSchedulerPolicy::SchedBatch => libc::SCHED_BATCH,
            LinuxSchedulerPolicy::SchedIso => 4,
            LinuxSchedulerPolicy::SchedIdle => libc::SCHED_IDLE,
            LinuxSchedulerPolicy::SchedDeadline => 6,
        };
        let param = libc::sched_param {
            sched_priority: s.priority().unwrap_or(0),
        };
        // SAFETY: `param` is a valid sched_param for the call; pid 0 is this process.
        if unsafe { libc::sched_setscheduler(0, policy, &raw const param) } != 0 {
            return Err(ProcessError::Scheduler(io::Error::last_os_error()));
        }
        if let Some(nice) = s.nice() {
            // SAFETY: plain syscall with integer arguments on this process.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, *nice) } != 0 {
                return Err(ProcessError::Scheduler(io::Error::last_os_error()));
            }
        }
    }
    if let Some(io) = p.io_priority() {
        let class: i64 = match io.class() {
            IOPriorityClass::IoprioClassRt => 1,
            IOPriorityClass::IoprioClassBe => 2,
            IOPriorityClass::IoprioClassIdle => 3,
        };
        let prio = (class << 13) | io.priority();
        // SAFETY: ioprio_set takes integer arguments only (IOPRIO_WHO_PROCESS = 1, self).
        if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) } != 0 {
            return Err(ProcessError::IoPriority(io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Switches to the process's user and groups, keeping the capabilities asked for.
pub(crate) fn apply_user_and_caps(
    p: &Prepared,
    setgroups_allowed: bool,
) -> Result<(), ProcessError> {
    let creds = |op| move |source| ProcessError::Creds { op, source };
    caps::drop_bounding(&p.caps)?;
    if setgroups_allowed {
        sys::setgroups(&p.groups).map_err(creds("setgroups"))?;
    }
    sys::setresgid(p.gid).map_err(creds("setresgid"))?;
    sys::setresuid(p.uid).map_err(creds("setresuid"))?;
    caps::apply_sets(&p.caps)?;
    if let Some(mask) = p.umask {
        sys::umask(mask);
    }
    Ok(())
}

/// Sets no_new_privs if asked.
pub(crate) fn apply_no_new_privs(p: &Prepared) -> Result<(), ProcessError> {
    if p.no_new_privs {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(|source| ProcessError::Creds {
            op: "set no_new_privs",
            source,
        })?;
    }
    Ok(())
}

/// chdir to the process cwd, inside the (already pivoted) root.
pub(crate) fn enter_cwd(p: &Prepared) -> Result<(), ProcessError> {
    sys::chdir(&p.cwd).map_err(|source| ProcessError::Cwd {
        cwd: p.cwd.clone(),
        source,
    })
}

/// Finds argv[0] like execvp: a name with a `/` is used as is; otherwise each PATH entry.
/// Runs inside the container's root, so only the container's files are consulted.
pub(crate) fn find_executable(p: &Prepared) -> Result<CString, ProcessError> {
    let arg0 = p
        .argv
        .first()
        .ok_or_else(|| ProcessError::NotFound(String::new()))?;
    let name = OsStr::from_bytes(arg0.as_bytes());
    if name.as_bytes().contains(&b'/') {
        return Ok(arg0.clone());
    }
    for dir in p.path_env.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if is_executable(&candidate) {
            return CString::new(candidate.as_os_str().as_bytes())
                .map_err(|_| ProcessError::Nul(candidate.display().to_string()));
        }
    }
    Err(ProcessError::NotFound(name.to_string_lossy().into_owned()))
}

fn is_executable(p: &Path) -> bool {
    let Ok(c) = sys::cstr(p) else { return false };
    // SAFETY: `c` is a valid NUL-terminated path alive for the call.
    let ok = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0;
    ok && std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

/// Replaces this process with the container's program. Returns only on failure.
pub(crate) fn exec(p: &Prepared, path: &CString) -> ProcessError {
    let source = sys::execve(path, &p.argv, &p.envp);
    ProcessError::Exec {
        path: path.to_string_lossy().into_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_resolves_user_env_and_rlimits() {
        let p: Process = serde_json::from_str(
            r#"{"cwd":"/tmp","args":["sh","-c","true"],"env":["PATH=/bin:/usr/bin","A=b"],
                "user":{"uid":1000,"gid":100,"additionalGids":[5,6],"umask":18},
                "rlimits":[{"type":"RLIMIT_NOFILE","soft":512,"hard":1024}],
                "noNewPrivileges":true}"#,
        )
        .unwrap();
        let prep = prepare(&p).unwrap();
        assert_eq!(prep.uid, 1000);
        assert_eq!(prep.groups, vec![5, 6]);
        assert_eq!(prep.umask, Some(18));
        assert_eq!(prep.path_env, "/bin:/usr/bin");
        assert_eq!(prep.rlimits[0].0, libc::RLIMIT_NOFILE as libc::c_int);
        assert!(prep.no_new_privs);
    }

    #[test]
    fn executables_are_found_on_path() {
        let p: Process =
            serde_json::from_str(r#"{"cwd":"/","args":["sh"],"env":["PATH=/nope:/bin:/usr/bin"],"user":{"uid":0,"gid":0}}"#)
                .unwrap();
        let prep = prepare(&p).unwrap();
        let found = find_executable(&prep).unwrap();
        assert!(found.to_str().unwrap().ends_with("/sh"));
        let p: Process = serde_json::from_str(
            r#"{"cwd":"/","args":["no-such-program-x"],"user":{"uid":0,"gid":0}}"#,
        )
        .unwrap();
        assert!(matches!(
            find_executable(&prepare(&p).unwrap()),
            Err(ProcessError::NotFound(_))
        ));
    }
}
