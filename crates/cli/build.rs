//! Asks the project's linker wrapper (scripts/cc-runtime) to link `berth-monitor`
//! statically, as `berth-runtime` is: the monitor is started for every container, and a
//! static binary maps no ld.so or libc.so and has no relocation pass at start-up. It
//! needs nothing from glibc's dynamic parts (no NSS: users come from the image's own
//! /etc/passwd, DNS upstreams from resolv.conf by berth's own code). See
//! docs/PERFORMANCE.md.
fn main() {
    println!("cargo:rustc-link-arg-bin=berth-monitor=-Wl,--berth-static");
    println!("cargo:rustc-link-arg-bin=berth=-Wl,--berth-static");
}
