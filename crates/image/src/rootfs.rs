//! The root filesystem of a container: an overlayfs with the image's unpacked layers as
//! lower layers and a per-container upper/work directory. Built with the fd-based mount
//! API (`fsopen("overlay")`, one `lowerdir+` per layer), so there is no page-size limit on
//! the option string and images with hundreds of layers mount.

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
    let mut lowers = Vec::new();
    for l in image.record.layers.iter().rev() {
        if !store.has_layer(&l.chain_id) {
            return Err(RootfsError::MissingLayer(l.chain_id.to_string()));
        }
        lowers.push(store.layer_diff(&l.chain_id));
    }
    let path_c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    };
    let ctx = sys::fsopen(c"overlay").map_err(err("fsopen"))?;
    for l in &lowers {
        let v = path_c(l).map_err(err("name lower layer"))?;
        sys::fsconfig_set(ctx.as_fd(), c"lowerdir+", Some(&v)).map_err(err("add lower layer"))?;
    }
    let upper_c = path_c(upper).map_err(err("name upperdir"))?;
    let work_c = path_c(work).map_err(err("name workdir"))?;
    sys::fsconfig_set(ctx.as_fd(), c"upperdir", Some(&upper_c)).map_err(err("set upperdir"))?;
    sys::fsconfig_set(ctx.as_fd(), c"workdir", Some(&work_c)).map_err(err("set workdir"))?;
    let mnt = sys::fs_create_mount(ctx.as_fd()).map_err(err("create"))?;
    sys::move_mount_to(mnt.as_fd(), target).map_err(err("attach"))
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
