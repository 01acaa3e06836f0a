#!/usr/bin/env bash
# `berth run --rm busybox true` with bridge networking (the default network) vs
# `--network none` (issue 6: bridge must add <= 5 ms). Runs alternate (one of each per
# round) so drift in machine load hits both alike. Also `-p` (one published port) and
# a user-defined network with its DNS responder. Prints Markdown on stdout, progress on
# stderr.
#
#   bench/engine-net.sh [RUNS]         as root; RUNS defaults to 50
#
# Env: BERTH (default target/release/berth, with berth-monitor next to it).
# Needs: busybox-static.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-50}
berth=${BERTH:-$repo/target/release/berth}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$berth" ] || { echo "build berth first: cargo build --release -p berth-cli" >&2; exit 1; }

work=$(mktemp -d /var/tmp/berth-net-bench.XXXXXX)
run=$(mktemp -d /run/berth-net-bench.XXXXXX) # runroot as /run/berth (rootfs mounts are there)
B=("$berth" --root "$work/root" --runroot "$run")
cleanup() {
    set +e
    "${B[@]}" ps -aq 2>/dev/null | xargs -r "${B[@]}" rm -f >/dev/null 2>&1
    "${B[@]}" network reset >/dev/null 2>&1
    grep -oE " ($work|$run)[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$work" "$run"
}
trap cleanup EXIT

echo "building the busybox image" >&2
"$repo/scripts/busybox-bundle.sh" "$work/bb" /bin/true >/dev/null
tar -C "$work/bb/rootfs" -cf "$work/bb.tar" .
"${B[@]}" import "$work/bb.tar" busybox >/dev/null
"${B[@]}" network create --subnet 10.231.200.0/24 benchnet >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# One warm-up run of each kind (creates the default network, fills caches).
modes=(none bridge publish usernet)
run_one() {
    case $1 in
        none) "${B[@]}" run --rm --network none busybox true ;;
        bridge) "${B[@]}" run --rm busybox true ;;
        publish) "${B[@]}" run --rm -p "127.0.0.1:$port:80" busybox true ;;
        usernet) "${B[@]}" run --rm --network benchnet busybox true ;;
    esac
}
for m in "${modes[@]}"; do run_one "$m"; done

declare -A samples
for ((i = 1; i <= runs; i++)); do
    for m in "${modes[@]}"; do
        t0=${EPOCHREALTIME/./}
        run_one "$m"
        t1=${EPOCHREALTIME/./}
        samples[$m]+="$((t1 - t0)) "
    done
    ((i % 10 == 0)) && echo "round $i/$runs" >&2
done

stats() { # microseconds on stdin -> "p50 p90 mean" in ms
    sort -n | awk '{a[NR]=$1; s+=$1} END {
        printf "%.1f %.1f %.1f\n", a[int((NR+1)/2)]/1000, a[int(NR*0.9+0.5)]/1000, s/NR/1000 }'
}
read -r n50 n90 nmean < <(tr ' ' '\n' <<<"${samples[none]}" | grep . | stats)
echo "## berth run --rm busybox true: bridge vs --network none ($runs runs each, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
echo
echo "| network | p50 ms | p90 ms | mean ms | p50 - none |"
echo "|---|---|---|---|---|"
for m in "${modes[@]}"; do
    read -r p50 p90 mean < <(tr ' ' '\n' <<<"${samples[$m]}" | grep . | stats)
    label=$m
    case $m in
        none) label="--network none" ;;
        bridge) label="bridge (default network)" ;;
        publish) label="bridge + -p 127.0.0.1:P:80" ;;
        usernet) label="user-defined network (DNS responder)" ;;
    esac
    d=$(awk -v a="$p50" -v b="$n50" 'BEGIN{printf "%+.1f", a-b}')
    echo "| $label | $p50 | $p90 | $mean | $d |"
done
