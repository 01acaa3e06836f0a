//! The root filesystem of a container: an overlayfs with the image's unpacked layers as
//! lower layers and a per-container upper/work directory. Built with the fd-based mount
//! API (`fsopen("overlay")`, one `lowerdir+` per layer, Linux ≥ 6.8), so there is no
//! page-size limit on the option string and images with hundreds of layers mount. On older
//! kernels it falls back to `mount(2)` with short paths (`<store>/l/<id>` symlinks to the
//! layer directories), which fits about 100 layers in one page.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::store::{Image, Store};
use crate::sys;

/// A failure to mount or unmount a container rootfs.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A mount API call failed.
    #[error("{op} overlay on `{target}`")]
    Mount {
        /// The step.
        op: &'static str,
        /// The mount point.
        target: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A layer of the image is not unpacked.
    #[error("layer `{0}` of the image is missing from the store; pull the image again")]
    MissingLayer(String),
    /// The image has no layers.
    #[error("image `{0}` has no layers to mount")]
    NoLayers(String),
    /// The legacy option string does not fit in a page.
    #[error(
        "image has too many layers ({0}) for mount(2) on this kernel (needs Linux 6.8 for more)"
    )]
    TooManyLayers(usize),
    /// A short link for a layer could not be made.
    #[error("link layer `{path}`")]
    Link {
        /// The link path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Which mount API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayApi {
    /// The fd-based API, falling back to mount(2) when the kernel lacks `lowerdir+`.
    Auto,
    /// Only mount(2) with short paths (for tests and old kernels).
    Legacy,
}

/// Mount `image` at `target` as overlayfs with `upper` and `work` (same filesystem, both
/// existing and empty on first use). Layers are added top-most first.
pub fn mount_rootfs(
    store: &Store,
    image: &Image,
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RootfsError> {
    mount_rootfs_with(store, image, upper, work, target, OverlayApi::Auto)
}

fn path_c(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// [`mount_rootfs`] with a choice of mount API.
pub fn mount_rootfs_with(
    store: &Store,
    image: &Image,
    upper: &Path,
    work: &Path,
    target: &Path,
    api: OverlayApi,
) -> Result<(), RootfsError> {
    mount_rootfs_opts(store, image, upper, work, target, api, false, None)
}

/// [`mount_rootfs_with`], optionally `volatile`: overlayfs then never syncs the upper
/// directory (not on sync(2), not on unmount), which makes unmounting a short-lived
/// container cheap. Only for containers whose upper directory is thrown away with them
/// (`run --rm`): after a crash the kernel refuses to mount a volatile upper again.
/// `init`, if given, is the image's init layer ([`Store::init_layer`]), put above its
/// layers.
#[allow(clippy::too_many_arguments)]
pub fn mount_rootfs_opts(
    store: &Store,
    image: &Image,
    upper: &Path,
    work: &Path,
    target: &Path,
    api: OverlayApi,
    volatile: bool,
    init: Option<&Path>,
) -> Result<(), RootfsError> {
    let err = |op| {
        move |source| RootfsError::Mount {
            op,
            target: target.to_path_buf(),
            source,
        }
    };
    if image.record.layers.is_empty() {
        return Err(RootfsError::NoLayers(image.record.id.to_string()));
    }
    let mut lowers: Vec<PathBuf> = init.map(Path::to_path_buf).into_iter().collect();
    for l in image.record.layers.iter().rev() {
        if !store.has_layer(&l.chain_id) {
            return Err(RootfsError::MissingLayer(l.chain_id.to_string()));
        }
        lowers.push(store.layer_diff(&l.chain_id));
    }
    let ctx = match api {
        OverlayApi::Legacy => None,
        OverlayApi::Auto => match sys::fsopen(c"overlay") {
            Ok(ctx) => Some(ctx),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => None,
            Err(e) => return Err(err("fsopen")(e)),
        },
    };
    let Some(ctx) = ctx else {
        return mount_legacy(store, image, upper, work, target, init);
    };
    for (i, l) in lowers.iter().enumerate() {
        let v = path_c(l).map_err(err("name lower layer"))?;
        match sys::fsconfig_set(ctx.as_fd(), c"lowerdir+", Some(&v)) {
            Ok(()) => {}
            // Before Linux 6.8 overlayfs does not know `lowerdir+`.
            Err(e) if i == 0 && e.raw_os_error() == Some(libc::EINVAL) => {
                return mount_legacy(store, image, upper, work, target, init);
            }
            Err(e) => return Err(err("add lower layer")(e)),
        }
    }
    let upper_c = path_c(upper).map_err(err("name upperdir"))?;
    let work_c = path_c(work).map_err(err("name workdir"))?;
    sys::fsconfig_set(ctx.as_fd(), c"upperdir", Some(&upper_c)).map_err(err("set upperdir"))?;
    sys::fsconfig_set(ctx.as_fd(), c"workdir", Some(&work_c)).map_err(err("set workdir"))?;
    if volatile {
        sys::fsconfig_set(ctx.as_fd(), c"volatile", None).map_err(err("set volatile"))?;
    }
    let mnt = sys::fs_create_mount(ctx.as_fd()).map_err(err("create"))?;
    sys::move_mount_to(mnt.as_fd(), target).map_err(err("attach"))
}

/// The `l/<id>` short link of a layer, created if missing.
fn short_link(store: &Store, chain: &crate::digest::Digest) -> Result<PathBuf, RootfsError> {
    let dir = store.dir().join("l");
    let link = dir.join(&chain.hex()[..26]);
    if link.exists() {
        return Ok(link);
    }
    let link_err = |source| RootfsError::Link {
        path: link.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(link_err)?;
    let tmp = dir.join(format!(".{}-{}", &chain.hex()[..26], std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("../layers/{}/diff", chain.hex()), &tmp)
        .map_err(link_err)?;
    std::fs::rename(&tmp, &link).map_err(link_err)?;
    Ok(link)
}

/// The `mount(2)` option string, refused if it does not fit in a page.
fn legacy_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<CString, RootfsError> {
    let joined: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        joined.join(":"),
        upper.display(),
        work.display()
    );
    if opts.len() >= 4096 {
        return Err(RootfsError::TooManyLayers(lowers.len()));
    }
    CString::new(opts).map_err(|_| RootfsError::Link {
        path: upper.to_path_buf(),
        source: io::Error::from_raw_os_error(libc::EINVAL),
    })
}

fn mount_legacy(
    store: &Store,
    image: &Image,
    upper: &Path,
    work: &Path,
    target: &Path,
    init: Option<&Path>,
) -> Result<(), RootfsError> {
    let mut lowers: Vec<PathBuf> = init.map(Path::to_path_buf).into_iter().collect();
    for l in image.record.layers.iter().rev() {
        lowers.push(short_link(store, &l.chain_id)?);
    }
    let opts = legacy_options(&lowers, upper, work)?;
    sys::mount(c"overlay", target, c"overlay", 0, &opts).map_err(|source| RootfsError::Mount {
        op: "mount(2)",
        target: target.to_path_buf(),
        source,
    })
}

/// Unmount a rootfs mounted by [`mount_rootfs`] (lazily if it is busy).
pub fn unmount_rootfs(target: &Path) -> Result<(), RootfsError> {
    match sys::umount2(target, 0) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => sys::umount2(target, libc::MNT_DETACH)
            .map_err(|source| RootfsError::Mount {
                op: "detach",
                target: target.to_path_buf(),
                source,
            }),
        Err(source) => Err(RootfsError::Mount {
            op: "unmount",
            target: target.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_options_fit_a_page_or_refuse() {
        let short: Vec<PathBuf> = (0..3).map(|i| PathBuf::from(format!("/s/l/{i}"))).collect();
        let o = legacy_options(&short, Path::new("/u"), Path::new("/w")).unwrap();
        assert_eq!(
            o.to_str().unwrap(),
            "lowerdir=/s/l/0:/s/l/1:/s/l/2,upperdir=/u,workdir=/w"
        );
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/berth/images/l/{i:026}")))
            .collect();
        assert!(matches!(
            legacy_options(&many, Path::new("/u"), Path::new("/w")),
            Err(RootfsError::TooManyLayers(200))
        ));
    }
}
