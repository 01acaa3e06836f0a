#!/usr/bin/env bash
# Pull + unpack of a multi-layer Debian image from a local registry (issue 4):
# berth vs `podman pull` vs `skopeo copy` + `umoci unpack`, with `tar -xzf` of the same
# layers as the floor. Every tool starts from an empty store each run; runs are interleaved
# so drift in machine load hits all tools alike. Prints a Markdown table on stdout.
#
#   bench/image-pull.sh [RUNS]          as root; RUNS defaults to 5
#
# Env: BERTH (default target/release/berth), BERTH_BENCH_CACHE (default
# /var/tmp/berth-bench: the debootstrap rootfs and the OCI layout are built once there).
# Needs: debootstrap (and the Debian mirror apt uses), umoci, skopeo, podman, docker-registry.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
berth=${BERTH:-$repo/target/release/berth}
cache=${BERTH_BENCH_CACHE:-/var/tmp/berth-bench}
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$berth" ] || { echo "build berth first: cargo build --release -p berth-cli" >&2; exit 1; }
for t in debootstrap umoci skopeo podman docker-registry; do
    command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
mkdir -p "$cache"

# 1. A Debian minbase root filesystem, built once.
if [ ! -e "$cache/rootfs/usr/bin/dpkg" ]; then
    echo "debootstrap --variant=minbase bookworm ($mirror)" >&2
    rm -rf "$cache/rootfs.tmp"
    debootstrap --variant=minbase bookworm "$cache/rootfs.tmp" "$mirror" >&2
    rm -rf "$cache/rootfs"
    mv "$cache/rootfs.tmp" "$cache/rootfs"
fi
# Like Debian's container images: no downloaded .debs, no package lists.
rm -rf "$cache"/rootfs/var/cache/apt/archives/*.deb "$cache"/rootfs/var/lib/apt/lists/*

# 2. An OCI image of it in three layers: usr/lib, usr/share, everything else.
if [ ! -e "$cache/oci/index.json" ]; then
    echo "building the 3-layer OCI image" >&2
    rm -rf "$cache/oci" "$cache/bundle"
    umoci init --layout "$cache/oci"
    umoci new --image "$cache/oci:bench"
    step() {
        umoci unpack --image "$cache/oci:bench" "$cache/bundle" >/dev/null
        "$@"
        umoci repack --image "$cache/oci:bench" "$cache/bundle"
        rm -rf "$cache/bundle"
    }
    step sh -c "mkdir -p '$cache/bundle/rootfs/usr' && cp -a '$cache/rootfs/usr/lib' '$cache/bundle/rootfs/usr/'"
    step sh -c "mkdir -p '$cache/bundle/rootfs/usr' && cp -a '$cache/rootfs/usr/share' '$cache/bundle/rootfs/usr/'"
    step sh -c "cp -a '$cache/rootfs/.' '$cache/bundle/rootfs/'"
    umoci gc --layout "$cache/oci"
fi

# 3. A throwaway registry holding it.
eval "$("$repo/scripts/registry.sh" start)"
work=$(mktemp -d /var/tmp/berth-image-bench.XXXXXX)
# Every measurement gets a freshly made ext4 on a loop file: on a long-lived ext4, inode
# allocation slows down near recently deleted inodes (the kernel's `recently_deleted`
# scan), which made results depend on what the previous run had removed.
mnt=$work/mnt
mkdir -p "$mnt"
truncate -s 4G "$work/fs.img"
fresh_fs() {
    mountpoint -q "$mnt" && umount "$mnt"
    mkfs.ext4 -q -F "$work/fs.img"
    mount -o loop "$work/fs.img" "$mnt"
}
cleanup() {
    "$repo/scripts/registry.sh" stop || true
    mountpoint -q "$mnt" && umount "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT
ref=$BERTH_TEST_REGISTRY/debian:bench
skopeo copy -q --dest-tls-verify=false "oci:$cache/oci:bench" "docker://$ref" >&2

# The layer blobs, for the tar floor and the size line.
manifest=$(python3 -c '
import json,sys
idx=json.load(open(sys.argv[1]+"/index.json"))
d=[m for m in idx["manifests"] if m.get("annotations",{}).get("org.opencontainers.image.ref.name")=="bench"][0]["digest"]
print(d.split(":")[1])' "$cache/oci")
mapfile -t layers < <(python3 -c '
import json,sys
m=json.load(open(sys.argv[1]+"/blobs/sha256/"+sys.argv[2]))
for l in m["layers"]: print(sys.argv[1]+"/blobs/sha256/"+l["digest"].split(":")[1])' "$cache/oci" "$manifest")
compressed=$(du -cb "${layers[@]}" | tail -1 | cut -f1)

# 4. The contenders. Each gets an empty directory on a fresh filesystem.
run_berth() { "$berth" --root "$1/root" pull -q "$ref" >/dev/null; }
run_podman() {
    podman --root "$1/root" --runroot "$1/run" --storage-driver overlay \
        pull -q --tls-verify=false "$ref" >/dev/null
}
run_skopeo_umoci() {
    skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$1/oci:bench" >/dev/null
    umoci unpack --image "$1/oci:bench" "$1/bundle" >/dev/null
}
run_tar() { mkdir "$1/rootfs" && for l in "${layers[@]}"; do tar -xzf "$l" -C "$1/rootfs"; done; }
run_tar_parallel() {
    local i=0
    for l in "${layers[@]}"; do
        mkdir "$1/l$i" && tar -xzf "$l" -C "$1/l$i" &
        i=$((i + 1))
    done
    wait
}
tools=(berth podman skopeo_umoci tar tar_parallel)

declare -A times
for ((r = 0; r < runs + 1; r++)); do
    for t in "${tools[@]}"; do
        fresh_fs
        d="$mnt/$t"
        mkdir -p "$d"
        sync
        start=$(date +%s%N)
        "run_$t" "$d"
        end=$(date +%s%N)
        # Run 0 warms caches and is not counted.
        if [ "$r" -gt 0 ]; then times[$t]+="$(( (end - start) / 1000000 )) "; fi
        if [ "$t" = podman ]; then
            podman --root "$d/root" --runroot "$d/run" --storage-driver overlay rmi -a -f >/dev/null 2>&1 || true
        fi
    done
    echo "run $r done" >&2
done

stats() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1; s+=$1} END {printf "%.2f %.2f\n", a[int((NR+1)/2)]/1000, s/NR/1000}'; }
read -r podman_med _ < <(echo "${times[podman]}" | stats)
echo "Image: Debian bookworm minbase, ${#layers[@]} gzip layers, $((compressed / 1000000)) MB compressed; $runs runs (+1 warm-up), $(nproc) CPUs."
echo
echo "| tool | median s | mean s | median / podman |"
echo "|---|---|---|---|"
for t in "${tools[@]}"; do
    read -r med mean < <(echo "${times[$t]}" | stats)
    ratio=$(awk -v a="$med" -v b="$podman_med" 'BEGIN {printf "%.2f", a / b}')
    case $t in
    skopeo_umoci) label="skopeo copy + umoci unpack" ;;
    tar) label="tar -xzf (floor, sequential)" ;;
    tar_parallel) label="tar -xzf (floor, 3 in parallel)" ;;
    *) label=$t ;;
    esac
    echo "| $label | $med | $mean | $ratio |"
done
