#!/usr/bin/env bash
# `run --rm busybox true` (issue 5): berth vs podman (runc and crun) vs `ctr run --rm`,
# the same busybox image pulled by each from a throwaway local registry. Runs are
# interleaved (one of each tool, then the next round, each round starting with another tool,
# 0.2 s between samples) so drift in machine load and background cleanups hit all
# alike. Also: 100 x `berth run -d` then `rm -f` (total time) and the RSS of an idle
# monitor. Every tool runs with --network none (bridge setup is measured by
# bench/engine-net.sh). Prints Markdown on stdout, progress on stderr.
#
#   bench/engine-run.sh [RUNS]         as root; RUNS defaults to 30
#
# Every tool keeps its run-time state (berth's and podman's --runroot, podman's --tmpdir,
# containerd's --state) on one tmpfs, as under a systemd host's /run; this VM's /run is
# on its disk (ext4 without a journal, where creating files right after others were
# deleted is slow: see docs/PERFORMANCE.md). RUN_TMPFS=0 keeps it all on the disk.
#
# Env: BERTH (default target/release/berth, with berth-monitor next to it), RUN_TMPFS.
# Needs: busybox-static, umoci, skopeo, podman, runc, crun, containerd, docker-registry.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-30}
berth=${BERTH:-$repo/target/release/berth}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$berth" ] || { echo "build berth first: cargo build --release -p berth-cli" >&2; exit 1; }
for t in umoci skopeo podman runc crun containerd ctr docker-registry; do
    command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done

work=$(mktemp -d /var/tmp/berth-engine-bench.XXXXXX)
run=$work/run
mkdir "$run"
if [ "${RUN_TMPFS:-1}" != 0 ]; then mount -t tmpfs -o mode=0755 berth-bench-run "$run"; fi
ctrd_pid=
cleanup() {
    set +e
    "$berth" --root "$work/berth" --runroot "$run/berth" ps -aq 2>/dev/null |
        xargs -r "$berth" --root "$work/berth" --runroot "$run/berth" rm -f >/dev/null 2>&1
    for rt in runc crun; do
        podman --root "$work/podman-$rt" --runroot "$run/podman-$rt" --tmpdir "$run/libpod-$rt" \
            --storage-driver overlay rm -af >/dev/null 2>&1
        podman --root "$work/podman-$rt" --runroot "$run/podman-$rt" --tmpdir "$run/libpod-$rt" \
            --storage-driver overlay system reset -f >/dev/null 2>&1
    done
    [ -n "$ctrd_pid" ] && kill "$ctrd_pid" && wait "$ctrd_pid" 2>/dev/null
    # crun, seeing no cgroup2 mount, wrote its v2 cgroup dirs into the tmpfs beneath
    # /sys/fs/cgroup/unified (a view only the namespace has): delete them there.
    if [ -e "$work/ns/mnt" ]; then
        nsenter --mount="$work/ns/mnt" sh -c \
            '[ "$(stat -f -c %T /sys/fs/cgroup/unified)" = tmpfs ] &&
             find /sys/fs/cgroup/unified -mindepth 1 -depth -delete'
        umount "$work/ns/mnt"
    fi
    # Podman's parent cgroup (and its conmon child), where empty now.
    rmdir /sys/fs/cgroup/*/libpod_parent/conmon /sys/fs/cgroup/*/libpod_parent 2>/dev/null
    "$repo/scripts/registry.sh" stop >/dev/null 2>&1
    grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# 1. A busybox image (busybox-static, one layer) in a local registry.
echo "building the busybox image" >&2
"$repo/scripts/busybox-bundle.sh" "$work/bb" /bin/true >/dev/null
umoci init --layout "$work/oci"
umoci new --image "$work/oci:bb"
umoci unpack --image "$work/oci:bb" "$work/bundle" >/dev/null
cp -a "$work/bb/rootfs/." "$work/bundle/rootfs/"
umoci repack --image "$work/oci:bb" "$work/bundle"
umoci config --image "$work/oci:bb" --config.cmd sh
eval "$("$repo/scripts/registry.sh" start)"
ref=$BERTH_TEST_REGISTRY/busybox:latest
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:bb" "docker://$ref" >&2

# 2. Every tool pulls it into its own store.
B=("$berth" --root "$work/berth" --runroot "$run/berth")
"${B[@]}" pull -q "$ref" >/dev/null
P() { local rt=$1; shift; podman --root "$work/podman-$rt" --runroot "$run/podman-$rt" \
    --tmpdir "$run/libpod-$rt" --storage-driver overlay --cgroup-manager cgroupfs --runtime "$rt" "$@"; }
for rt in runc crun; do P "$rt" pull -q --tls-verify=false "$ref" >/dev/null; done
containerd --root "$work/ctrd" --state "$run/ctrd" --address "$work/ctrd.sock" \
    >"$work/ctrd.log" 2>&1 &
ctrd_pid=$!
C=(ctr --address "$work/ctrd.sock")
for _ in $(seq 100); do "${C[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"${C[@]}" images pull -q --plain-http "$ref" >/dev/null

# crun 1.8 refuses the hybrid cgroup layout; like bench/runtime-cycle, it runs in a mount
# namespace where /sys/fs/cgroup/unified is unmounted (made once, entered with nsenter).
hide_unified=
if mountpoint -q /sys/fs/cgroup/unified; then
    mkdir "$work/ns"
    touch "$work/ns/mnt"
    unshare --mount="$work/ns/mnt" --propagation private umount -l /sys/fs/cgroup/unified
    hide_unified=(nsenter --mount="$work/ns/mnt")
fi
run_berth() { "${B[@]}" run --rm --network none "$ref" true; }
run_podman_runc() { P runc run --rm --network none "$ref" true; }
run_podman_crun() { ${hide_unified[@]+"${hide_unified[@]}"} podman --root "$work/podman-crun" \
    --runroot "$run/podman-crun" --tmpdir "$run/libpod-crun" --storage-driver overlay --cgroup-manager cgroupfs \
    --runtime crun run --rm --network none "$ref" true; }
n=0
run_ctr() { n=$((n + 1)); "${C[@]}" run --rm "$ref" "bench-$n" true; }
tools=(berth podman_runc podman_crun ctr)
for t in "${tools[@]}"; do "run_$t" >/dev/null || { echo "$t does not work" >&2; exit 1; }; done

declare -A times
for ((r = 0; r < runs + 2; r++)); do
    # Each round starts with another tool, and each sample waits 0.2 s first: what a tool
    # leaves to do in the background after its command returns (containerd's snapshot
    # garbage collection, podman's cleanup process, berth's cgroup removal) then does
    # not land on the same neighbour's samples every round.
    n_tools=${#tools[@]}
    for ((i = 0; i < n_tools; i++)); do
        t=${tools[$(((i + r) % n_tools))]}
        sleep 0.2
        # bash's own clock (µs): a `$(date)` on each side would add ~1 ms of fork and
        # exec to every sample, a share that would shrink the ratios of the fastest tool.
        start=${EPOCHREALTIME/./}
        "run_$t" >/dev/null
        end=${EPOCHREALTIME/./}
        # Two warm-up rounds are not counted.
        if [ "$r" -ge 2 ]; then times[$t]+="$((end - start)) "; fi
    done
    echo "round $r done" >&2
done

# What the crun wrapper above adds to each podman+crun sample (nsenter), measured the
# same way, so the table can be read without it.
wrap="0 "
if [ -n "$hide_unified" ]; then
    wrap=""
    for ((r = 0; r < runs; r++)); do
        start=${EPOCHREALTIME/./}
        "${hide_unified[@]}" true
        end=${EPOCHREALTIME/./}
        wrap+="$((end - start)) "
    done
fi
stats() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1; s+=$1} END {printf "%.1f %.1f %.1f\n", a[int((NR+1)/2)]/1000, s/NR/1000, a[int(NR*0.95+0.999)]/1000}'; }
read -r berth_med _ < <(echo "${times[berth]}" | stats)
echo "\`run --rm busybox true\`, same image from a local registry; $runs runs each (+2 warm-up rounds), interleaved, order rotated each round, 0.2 s between samples; $(nproc) CPUs; run-time state on $(if [ "${RUN_TMPFS:-1}" != 0 ]; then echo tmpfs; else echo "the disk (RUN_TMPFS=0)"; fi)."
echo
echo "| tool | median ms | mean ms | p95 ms | median / berth |"
echo "|---|---|---|---|---|"
for t in "${tools[@]}"; do
    read -r med mean p95 < <(echo "${times[$t]}" | stats)
    ratio=$(awk -v a="$med" -v b="$berth_med" 'BEGIN {printf "%.1f", a / b}')
    case $t in
    podman_runc) label="podman run --rm (runc)" ;;
    podman_crun) label="podman run --rm (crun)" ;;
    ctr) label="ctr run --rm (containerd, runc)" ;;
    *) label="berth run --rm" ;;
    esac
    echo "| $label | $med | $mean | $p95 | $ratio× |"
done
read -r wrap_med _ < <(echo "$wrap" | stats)
echo
echo "podman+crun's samples include ${wrap_med} ms (median) of the wrapper that hides the hybrid layout's cgroup2 mount from crun (nsenter)."

# 3. 100 x run -d, then rm -f of all of them.
echo "100 x run -d" >&2
start=$(date +%s%N)
for i in $(seq 100); do "${B[@]}" run -d --network none --name "many$i" "$ref" sleep 1000 >/dev/null; done
mid=$(date +%s%N)
# 4. The idle monitors' memory, while the 100 containers run.
rss=$(for p in $(pgrep -x berth-monitor); do
    grep -q -- "$work/berth" "/proc/$p/cmdline" 2>/dev/null || continue
    awk '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2} /^RssFile/ {f=$2} END {print r, a, f}' "/proc/$p/status"
done | awk '{r+=$1; a+=$2; f+=$3; n++} END {printf "%d %.0f %.0f %.0f\n", n, r/n, a/n, f/n}')
pss=$(for p in $(pgrep -x berth-monitor); do
    grep -q -- "$work/berth" "/proc/$p/cmdline" 2>/dev/null || continue
    awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"
done | awk '{s+=$1; n++} END {printf "%.0f\n", s/n}')
"${B[@]}" ps -aq | xargs "${B[@]}" rm -f >/dev/null
end=$(date +%s%N)
read -r nmon vmrss anon file <<<"$rss"
echo
echo "100 × \`berth run -d --network none busybox sleep 1000\`: $(( (mid - start) / 1000000 )) ms; then \`rm -f\` of all 100: $(( (end - mid) / 1000000 )) ms."
echo
echo "Idle monitor ($nmon measured): VmRSS $vmrss KiB (RssAnon $anon KiB, RssFile $file KiB), PSS $pss KiB."
