#!/usr/bin/env bash
# The main job on a fresh machine: build berth, make a busybox OCI bundle from Debian's
# busybox-static, and run a container in it with `berth-runtime run` — its own hostname,
# pid namespace, network namespace, a 7 MiB memory limit — then clean up.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static
fi
cargo build --release --bins
rt=$PWD/target/release/berth-runtime
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
state=$work/state
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
echo "== berth-runtime run demo (bundle $work/bundle)"
(cd "$work/bundle" && "$rt" --root "$state" run "demo-$$")
echo "== host hostname is still $(hostname)"
