//! berth-image: image references, the registry client, the content-addressed store, safe
//! layer unpack and overlay rootfs snapshots. It knows nothing of containers' processes.
