//! The few raw calls the engine needs that have no safe wrapper: handing the monitor its
//! pipes across exec, and taking them back in the monitor. All unsafe code of the crate
//! lives here.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;

/// The environment variable that tells the monitor which fd its status pipe is.
pub(crate) const STATUS_FD_ENV: &str = "BERTH_MONITOR_STATUS_FD";

/// The environment variable that names the fd of the monitor's hand-off pipe (see
/// `Engine::hand_off`).
pub(crate) const HANDOFF_FD_ENV: &str = "BERTH_MONITOR_HANDOFF_FD";

/// Lets the child `cmd` spawns inherit `fd` (at the same number, named in its
/// environment as `env`). No `pre_exec` hook: with none, std spawns with posix_spawn (a vfork-like
/// clone) instead of fork + exec, which copies none of our page tables — on every
/// container start. `berth` is single-threaded, so no other spawn can inherit the fd
/// while its close-on-exec flag is off; the caller closes it right after the spawn.
pub(crate) fn pass_fd(cmd: &mut Command, env: &str, fd: &OwnedFd) -> std::io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: F_SETFD on an fd we own (borrowed for the call) touches no memory.
    if unsafe { libc::fcntl(raw, libc::F_SETFD, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    cmd.env(env, raw.to_string());
    Ok(())
}

/// Takes ownership of the pipe the environment variable `env` names in the monitor, if
/// one was passed; marks it close-on-exec so the container never inherits it.
pub(crate) fn take_fd(env: &str) -> Option<File> {
    let raw: RawFd = std::env::var(env).ok()?.parse().ok()?;
    if raw < 3 {
        return None;
    }
    // SAFETY: F_GETFD only queries whether the fd is open; it touches no memory.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: as above; sets FD_CLOEXEC on an fd that is open.
    unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the fd is open (checked above) and nothing else in the monitor owns it: the
    // monitor is a fresh exec whose only inherited fds are stdio and the pipes its parent
    // named in the environment, each taken once at start-up.
    Some(unsafe { File::from_raw_fd(raw) })
}

/// Returns freed heap memory to the kernel (glibc keeps it otherwise), so an idle monitor
/// holds only what it still uses.
pub(crate) fn trim_heap() {
    // SAFETY: malloc_trim only walks glibc's own allocator state; it has no arguments that
    // point into our memory and is safe to call from a single-threaded program at any time.
    unsafe { libc::malloc_trim(0) };
}

/// Drops this process's page-table entries for read-only, file-backed mappings that hold
/// no private (copied-on-write) pages: the code and constants of the binary and its
/// libraries that the start-up used and the idle loop will not. The pages stay in the
/// page cache, shared with every other process; whatever is used again faults back in.
/// Returns the number of bytes advised.
pub(crate) fn drop_clean_file_mappings() -> usize {
    let Ok(text) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut total = 0;
    let mut current: Option<(usize, usize, bool)> = None;
    let mut flush = |m: Option<(usize, usize, bool)>, anon_zero: bool| {
        if let Some((start, end, eligible)) = m
            && eligible
            && anon_zero
        {
            // SAFETY: [start, end) is a mapping of this process read from smaps just now;
            // it is not writable and has no anonymous (private, modified) pages, so
            // MADV_DONTNEED only drops page-table entries for pages that are identical
            // to the file and are re-read from the page cache on the next access. The
            // monitor is single-threaded, so no other thread changes the mappings.
            let r = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            };
            if r == 0 {
                total += end - start;
            }
        }
    };
    let mut anon_zero = false;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            flush(current.take(), anon_zero);
            let perms = parts.next().unwrap_or("");
            let path = parts.nth(3).unwrap_or("");
            let eligible = !perms.contains('w') && path.starts_with('/');
            current = Some((start, end, eligible));
            anon_zero = false;
        } else if first == "Anonymous:" {
            anon_zero = parts.next() == Some("0");
        }
    }
    flush(current.take(), anon_zero);
    total
}
