//! berth-cgroups: control groups v1, v2 and the hybrid layout behind one interface.
