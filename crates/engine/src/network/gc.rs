//! A host-wide registry of the networks of installations other than the default root
//! (`/run/berth-net/installs/<table>/`): when such a root is deleted without `network
//! reset` (a test's temp dir), the next network creation on the host deletes its
//! bridges and nftables table instead of leaking them.

use super::*;

pub(super) fn registry() -> PathBuf {
    PathBuf::from("/run/berth-net")
}

fn entry(root: &Path) -> Option<PathBuf> {
    let cfg = net_config(root);
    (cfg.nft_table != "berth").then(|| registry().join("installs").join(cfg.nft_table))
}

/// Records `net` of the installation at `root` (best effort).
pub(super) fn register(root: &Path, net: &Network) {
    let Some(dir) = entry(root) else { return };
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let _ = fs::create_dir_all(dir.join("networks"));
    let _ = fs::write(dir.join("root"), root.as_os_str().as_bytes());
    if let Ok(text) = serde_json::to_vec(net) {
        let _ = fs::write(
            dir.join("networks").join(format!("{}.json", net.name)),
            text,
        );
    }
}

pub(super) fn unregister(root: &Path, name: &str) {
    if let Some(dir) = entry(root) {
        let _ = fs::remove_file(dir.join("networks").join(format!("{name}.json")));
    }
}

pub(super) fn forget(root: &Path) {
    if let Some(dir) = entry(root) {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Deletes the bridges and table of every registered installation whose network
/// records are gone (called under the host lock).
pub(super) fn collect(current: &Path) {
    let current = entry(current);
    let Ok(rd) = fs::read_dir(registry().join("installs")) else {
        return;
    };
    for e in rd.flatten() {
        let dir = e.path();
        let Ok(root) = fs::read(dir.join("root")) else {
            continue;
        };
        let root = PathBuf::from(std::ffi::OsStr::from_bytes(&root));
        if Some(&dir) == current.as_ref() || root.join("net/networks").is_dir() {
            continue;
        }
        let mut cfg = net_config(&root);
        cfg.default_network = "-".into();
        if let Ok(s) = NetStore::open_with(&dir, &dir.join("run"), cfg) {
            for n in s.list().unwrap_or_default() {
                let _ = s.remove(&n.name);
            }
            let _ = s.delete_firewall();
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
