//! Asks the project's linker wrapper (scripts/cc-runtime) to link `berth-runtime`
//! statically: no ld.so, libc.so or relocation pass at start-up, which is paid in every
//! container start. See docs/PERFORMANCE.md.
fn main() {
    println!("cargo:rustc-link-arg-bin=berth-runtime=-Wl,--berth-static");
}
