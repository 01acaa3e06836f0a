//! berth-runtime: turns an OCI bundle into a running container.
//!
//! It owns namespaces, user-namespace id maps, rootfs mounts, pivot_root, `/dev`, cgroups
//! (v1, v2 and hybrid behind one interface), capabilities, seccomp, rlimits, the state
//! directory and the container lifecycle (create, start, kill, delete, pause, resume,
//! update, exec). It knows nothing of images, registries, networks or the engine's
//! database. The entry point is [`container`]; the `berth-runtime` binary is a thin clap
//! front end over it.

pub mod cgroup;
pub mod seccomp;
