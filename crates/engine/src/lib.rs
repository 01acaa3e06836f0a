//! berth-engine: the metadata store, image config + flags to OCI spec, the per-container
//! monitor, volumes and exec/attach. It knows nothing of argument parsing or terminals.
#![forbid(unsafe_code)]
