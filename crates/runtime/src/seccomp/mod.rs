//! seccomp: OCI `linux.seccomp` compiled to classic BPF and installed before execve.
//!
//! PLACEHOLDER.
