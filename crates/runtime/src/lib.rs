//! berth-runtime: turns an OCI bundle into a running container.
//!
//! It owns namespaces, user-namespace id maps, rootfs mounts, pivot_root, `/dev`,
//! capabilities, rlimits, the state directory and the container lifecycle (create, start,
//! kill, delete, pause, resume, update, exec). Control groups live in `berth-cgroups` and
//! seccomp compilation in `berth-seccomp`, both used only from here. It knows nothing of
//! images, registries, networks or the engine's database. The entry point is
//! [`container`]; the `berth-runtime` binary is a thin clap front end over it.
