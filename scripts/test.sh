#!/usr/bin/env bash
# The project's test command (README, CI): installs missing test packages, starts a
# throwaway local registry for the pull tests, runs every test of the workspace, stops
# the registry. Needs root: the tests create real containers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cleanup() {
    # The engine keeps its `/berth` parent cgroup when its last container goes (as
    # Docker keeps `/docker`); the tests' containers are gone now, so remove the parent
    # where it is empty (rmdir refuses one that is not).
    rmdir /sys/fs/cgroup/berth /sys/fs/cgroup/*/berth 2>/dev/null || true
    if [ -n "${registry_started:-}" ]; then scripts/registry.sh stop; fi
}
trap cleanup EXIT
if [ -z "${BERTH_TEST_REGISTRY:-}" ]; then
    eval "$(scripts/registry.sh start)"
    registry_started=1
fi
cargo test --release --workspace --no-fail-fast "$@"
