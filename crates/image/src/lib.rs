//! berth-image owns everything about images: references (`reference`), the registry
//! client (`registry`, OCI distribution API with token/basic auth), the verified
//! content-addressed store (`store`), safe layer unpacking with overlayfs whiteouts
//! (`unpack`), the overlay rootfs of a container (`rootfs`) and archives. It knows
//! nothing of containers' processes, networks or the engine's metadata. Entry points:
//! [`Store::open`], then [`pull`], [`Store::resolve`], [`mount_rootfs`].

mod archive;
mod auth;
mod digest;
mod hold;
mod import;
mod init_layer;
mod layer;
mod manifest;
mod pull;
mod reference;
mod registry;
mod rootfs;
mod store;
mod sys;
mod unpack;

pub use archive::{ArchiveError, load, save};
pub use auth::{AuthFileError, AuthFiles, Credentials};
pub use digest::{Digest, ParseDigestError};
pub use import::{ImportError, import};
pub use layer::{DEFAULT_MAX_LAYER_BYTES, LayerError, decompressed};
pub use manifest::{
    Descriptor, Index, Manifest, ManifestError, ParsePlatformError, Platform, PlatformJson,
    chain_ids,
};
pub use pull::{NoProgress, PullError, PullEvent, PullOptions, PullProgress, pull};
pub use reference::{ParseReferenceError, Reference};
pub use registry::{ClientOptions, RegistryClient, RegistryError};
pub use rootfs::{
    OverlayApi, RootfsError, mount_rootfs, mount_rootfs_opts, mount_rootfs_with, unmount_rootfs,
};
pub use store::{Image, ImageRecord, LayerRecord, Store, StoreError, StoreLock, TempDir};
pub use unpack::{UnpackError, UnpackOptions, unpack_layer, unpack_tree_at};
