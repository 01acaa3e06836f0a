//! Running work inside another network namespace: a short-lived thread joins the namespace
//! with setns(2) (allowed for network namespaces in a multi-threaded process) and exits
//! afterwards, so the caller's own thread never changes namespace.

use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};

/// Failure to run work inside a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// setns(2) into the namespace failed (not a netns fd, or no privilege).
    #[error("join network namespace")]
    Join(#[source] Errno),
    /// The helper thread could not be spawned.
    #[error("spawn netns helper thread")]
    Spawn(#[source] std::io::Error),
    /// The work panicked inside the helper thread.
    #[error("netns helper thread panicked")]
    Panicked,
}

/// Runs `work` on a fresh thread that has joined the network namespace `netns`.
pub(crate) fn run_in<T, E, F>(netns: BorrowedFd<'_>, work: F) -> Result<Result<T, E>, NetnsError>
where
    T: Send,
    E: Send,
    F: FnOnce() -> Result<T, E> + Send,
{
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("berth-netns".into())
            .spawn_scoped(scope, move || {
                setns(netns, CloneFlags::CLONE_NEWNET).map_err(NetnsError::Join)?;
                Ok(work())
            })
            .map_err(NetnsError::Spawn)?;
        handle.join().map_err(|_| NetnsError::Panicked)?
    })
}
