//! Control groups: v1, v2 and the hybrid layout behind one `Cgroup` interface.
//!
//! PLACEHOLDER: the interface the rest of the runtime relies on. See the helper brief.
