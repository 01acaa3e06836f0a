#!/usr/bin/env bash
# The project's test command (README, CI): installs missing test packages, starts a
# throwaway local registry for the pull tests, runs every test of the workspace, stops
# the registry. Needs root: the tests create real containers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -z "${BERTH_TEST_REGISTRY:-}" ]; then
    eval "$(scripts/registry.sh start)"
    trap 'scripts/registry.sh stop' EXIT
fi
cargo test --release --workspace --no-fail-fast "$@"
