# shellcheck shell=bash
# Callers of berth-runtime (crates/runtime-cli/tests/callers.rs): configure Podman for
# this machine and start a containerd. Sourced by .ci/run (bash, set -euo pipefail).
# Exports BERTH_CONTAINERD_ADDRESS (its socket) and BERTH_CONTAINERD_PID; stop it with
#   kill "$(cat /run/berth-ci-containerd/containerd.pid)"
# The tests pass the same Podman settings as flags, so they also run without this file.

# Podman ----------------------------------------------------------------------------------
# No systemd here: cgroupfs manager and file events. No network backend offline: none.
# Podman's default nofile/nproc (1048576) exceed this machine's hard limits and runtimes
# lack CAP_SYS_RESOURCE to raise them; Podman itself (and conmon) run with nproc 32768.
callers_nofile=$(ulimit -Hn)
callers_nproc=$(ulimit -Hu)
if [ "$callers_nofile" = unlimited ] || [ "$callers_nofile" -gt 1048576 ]; then callers_nofile=1048576; fi
if [ "$callers_nproc" = unlimited ] || [ "$callers_nproc" -gt 32768 ]; then callers_nproc=32768; fi
mkdir -p /etc/containers
cat > /etc/containers/containers.conf <<CONF
# Written by berth .ci/setup.d/30-callers.sh
[containers]
default_ulimits = ["nofile=$callers_nofile:$callers_nofile", "nproc=$callers_nproc:$callers_nproc"]
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat > /etc/containers/storage.conf <<CONF
# Written by berth .ci/setup.d/30-callers.sh
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF

# containerd ------------------------------------------------------------------------------
callers_ctd_root=/var/lib/berth-ci-containerd
callers_ctd_state=/run/berth-ci-containerd
mkdir -p "$callers_ctd_root" "$callers_ctd_state"
cat > "$callers_ctd_root/config.toml" <<CONF
version = 2
root = "$callers_ctd_root"
state = "$callers_ctd_state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$callers_ctd_state/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$callers_ctd_root/opt"
CONF
if [ -s "$callers_ctd_state/containerd.pid" ] && kill -0 "$(cat "$callers_ctd_state/containerd.pid")" 2>/dev/null; then
    echo "containerd already running (pid $(cat "$callers_ctd_state/containerd.pid"))"
else
    containerd --config "$callers_ctd_root/config.toml" >"$callers_ctd_root/log" 2>&1 </dev/null &
    echo $! >"$callers_ctd_state/containerd.pid"
fi
export BERTH_CONTAINERD_PID
BERTH_CONTAINERD_PID=$(cat "$callers_ctd_state/containerd.pid")
export BERTH_CONTAINERD_ADDRESS=$callers_ctd_state/containerd.sock
for _ in $(seq 1 100); do
    ctr -a "$BERTH_CONTAINERD_ADDRESS" version >/dev/null 2>&1 && break
    sleep 0.1
done
if ! ctr -a "$BERTH_CONTAINERD_ADDRESS" version >/dev/null 2>&1; then
    echo "containerd did not come up; log:" >&2
    cat "$callers_ctd_root/log" >&2
    return 1
fi
echo "containerd pid $BERTH_CONTAINERD_PID at $BERTH_CONTAINERD_ADDRESS"
