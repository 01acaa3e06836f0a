//! berth-seccomp: OCI `linux.seccomp` profiles compiled to classic BPF.
