#!/usr/bin/env bash
# Start or stop a throwaway Distribution registry (Debian's docker-registry) on 127.0.0.1.
#   eval "$(scripts/registry.sh start)"   -> exports BERTH_TEST_REGISTRY=127.0.0.1:PORT and
#                                            BERTH_TEST_REGISTRY_PID, BERTH_TEST_REGISTRY_DIR
#   scripts/registry.sh stop              -> stops the one started above (by PID) and
#                                            removes its storage
# Anonymous pulls and pushes, plain HTTP, storage in a temp dir.
set -euo pipefail

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case "${1:-}" in
start)
    dir=$(mktemp -d /tmp/berth-registry.XXXXXX)
    port=$(free_port)
    cat > "$dir/config.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/v2/')" 2>/dev/null; then
            echo "export BERTH_TEST_REGISTRY=127.0.0.1:$port BERTH_TEST_REGISTRY_PID=$pid BERTH_TEST_REGISTRY_DIR=$dir"
            exit 0
        fi
        sleep 0.1
    done
    echo "registry did not come up; log:" >&2
    cat "$dir/log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
    ;;
stop)
    if [ -n "${BERTH_TEST_REGISTRY_PID:-}" ]; then
        kill "$BERTH_TEST_REGISTRY_PID" 2>/dev/null || true
        wait "$BERTH_TEST_REGISTRY_PID" 2>/dev/null || true
    fi
    if [ -n "${BERTH_TEST_REGISTRY_DIR:-}" ] && [ -d "$BERTH_TEST_REGISTRY_DIR" ]; then
        rm -rf "$BERTH_TEST_REGISTRY_DIR"
    fi
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
