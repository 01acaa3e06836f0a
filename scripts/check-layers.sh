#!/usr/bin/env bash
# Fails if a lower crate depends on a higher one (DESIGN.md: cli -> engine -> {image, net,
# runtime} -> kernel; runtime may use cgroups and seccomp).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() { # crate, forbidden deps...
    local crate=$1; shift
    local deps
    deps=$(cargo tree -p "$crate" --edges normal --prefix none --format '{p}' 2>/dev/null | awk '{print $1}' | sort -u)
    for bad in "$@"; do
        if grep -qx "$bad" <<<"$deps"; then
            echo "layering: $crate must not depend on $bad" >&2
            fail=1
        fi
    done
}
check berth-runtime berth-image berth-net berth-engine berth-cli
check berth-image berth-runtime berth-net berth-engine berth-cli
check berth-net berth-runtime berth-image berth-engine berth-cli
check berth-engine berth-cli
check berth-cgroups berth-runtime berth-seccomp berth-image berth-net berth-engine berth-cli
check berth-seccomp berth-runtime berth-cgroups berth-image berth-net berth-engine berth-cli
exit $fail
