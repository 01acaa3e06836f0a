#!/usr/bin/env bash
# Make an OCI bundle (DIR/rootfs + DIR/config.json from `berth-runtime spec`) from Debian's
# busybox-static: one static binary plus a symlink per applet, and the usual top dirs.
#   scripts/busybox-bundle.sh DIR [RUNTIME]   RUNTIME defaults to target/release/berth-runtime
set -euo pipefail
dir=${1:?usage: $0 DIR [RUNTIME]}
runtime=${2:-$(cd "$(dirname "$0")/.." && pwd)/target/release/berth-runtime}
bb=/bin/busybox
if ! "$bb" --list >/dev/null 2>&1 || ldd "$bb" >/dev/null 2>&1; then
    echo "need a static /bin/busybox: apt-get install -y busybox-static" >&2
    exit 1
fi
mkdir -p "$dir/rootfs"
root=$dir/rootfs
mkdir -p "$root"/{bin,dev,etc,home,proc,root,sys,tmp,usr/bin,var}
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$root/etc/group"
if [ ! -e "$dir/config.json" ]; then
    (cd "$dir" && "$runtime" spec)
fi
