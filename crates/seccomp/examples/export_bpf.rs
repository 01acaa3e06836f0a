//! Write a profile and its compiled program for outside checks (see
//! check/diff_libseccomp.py): `cargo run -p berth-seccomp --example export_bpf -- OUT
//! [PROFILE.json]` writes OUT.json (the profile; Docker's default resolved for the
//! capabilities in `$CAPS`, comma-separated, when no profile is given) and OUT.bpf
//! (the program as `struct sock_filter` array in native byte order).

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .context("usage: export_bpf OUT [PROFILE.json]")?;
    let profile: oci_spec::runtime::LinuxSeccomp = match args.next() {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("parse `{path}`"))?,
        None => {
            let caps = std::env::var("CAPS").unwrap_or_default();
            let caps: Vec<String> = caps
                .split(',')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
            berth_seccomp::docker_default(&caps)
        }
    };
    let filter = berth_seccomp::compile(&profile)?;
    std::fs::write(format!("{out}.json"), serde_json::to_vec_pretty(&profile)?)?;
    std::fs::write(format!("{out}.bpf"), filter.to_bytes())?;
    println!("{out}.bpf: {} instructions", filter.len());
    Ok(())
}
