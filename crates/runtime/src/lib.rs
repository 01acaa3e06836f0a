//! berth-runtime: turns an OCI bundle into a running container.
//!
//! It owns namespaces, user-namespace id maps, rootfs mounts, pivot_root, `/dev`,
//! capabilities, rlimits, hooks, consoles, the state directory and the container lifecycle
//! (create, start, kill, delete, pause, resume, update, exec). Control groups live in
//! `berth-cgroups` and seccomp compilation in `berth-seccomp`, both used only from here. It
//! knows nothing of images, registries, networks or the engine's database. The entry
//! points are [`container`] (one function per runtime command), [`exec`] and
//! [`foreground`]; the `berth-runtime` binary is a thin clap front end over them.
//!
//! The process that calls [`container::create`] or [`exec::exec`] must be
//! single-threaded: they fork, and the forked stages keep using the heap.

mod caps;
mod console;
pub mod container;
pub mod defaults;
pub mod exec;
pub mod foreground;
mod hooks;
mod init;
mod mount;
mod namespace;
mod process;
pub mod reaper;
mod rootfs;
pub mod sealed;
pub mod signal;
pub mod spec;
pub mod state;
mod sync;
mod sys;
pub mod trace;

pub use caps::all_names as capability_names;
pub use mount::known_options as mount_options;
