#!/usr/bin/env bash
# The main job on a fresh machine, offline:
#  1. install busybox-static (if missing) and build berth and berth-runtime;
#  2. berth-runtime: make an OCI bundle from busybox-static and run it with
#     `berth-runtime run` (own hostname, pid and network namespaces, 7 MiB memory limit);
#  3. berth: make a busybox image with `berth import` from a busybox-static rootfs
#     tarball (a user with internet would `berth pull busybox`) and run
#     `berth run --rm busybox echo hello`.
# berth keeps its images and containers in /var/lib/berth and /run/berth (override with
# BERTH_ROOT / BERTH_RUNROOT).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static
fi
cargo build --release --bins
rt=$PWD/target/release/berth-runtime
berth=$PWD/target/release/berth
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

scripts/busybox-bundle.sh "$work/bundle" "$rt" >/dev/null
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["hostname"] = "demo"
c["process"]["args"] = ["sh", "-c",
    "echo hello from $(hostname), pid $$; ps -o pid,comm; ls /sys/class/net; "
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"]
c["linux"]["resources"]["memory"] = {"limit": 7 * 1024 * 1024}
json.dump(c, open(p, "w"), indent=2)
PY
echo "== berth-runtime run (bundle $work/bundle)"
(cd "$work/bundle" && "$rt" --root "$work/runtime-state" run "demo-$$")
echo "== host hostname is still $(hostname)"

echo "== berth import busybox + berth run --rm busybox echo hello"
tar -C "$work/bundle/rootfs" -cf "$work/busybox.tar" .
"$berth" import "$work/busybox.tar" busybox
"$berth" run --rm busybox echo hello
