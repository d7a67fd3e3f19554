#!/usr/bin/env bash
# After dockerd crashes under a container that holds a telemount volume, the next intercept can
# take the volume's name with a new port: the lost container's mount ID does not hold the volume.
#
# Facts from dockerd 20.10 this test relies on (read off runs here): after `kill -9` of dockerd and
# a new start, a container that held the volume shows "Exited (137)", the managed plugin runs again
# (its sshfs ended with the old run), and no Unmount ever comes for the container's mount ID, not
# even when the container is removed: `docker volume inspect` keeps listing it in usedBy. Before
# telemount counted only the mounts of its own run, that ID held the volume for ever, and the next
# intercept's create of "<container>-0" silently reused the old port.
#
# It kills the engine, so it runs only on an engine that tests/env/docker-up started for these
# tests (BUILD_DIR/e2e-state/dockerd.pid), and starts it again the same way; elsewhere it skips.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
peer=$SOURCE_DIR/tests/peers/sftp-export
state=$BUILD_DIR/e2e-state
linger=2

engine=$(cat "$state/dockerd.pid" 2>/dev/null) || engine=
if [[ -z $engine ]] || ! [[ $(cat "/proc/$engine/comm" 2>/dev/null) == dockerd ]]; then
  echo "skip: the Docker engine was not started by tests/env/docker-up for these tests; not killing it"
  exit 77
fi

work=$(mktemp -d /tmp/tm-crash.XXXXXX)
on_exit rm -rf "$work"
mkdir -p "$work/export/echo/config"
echo "token-$$" >"$work/export/echo/config/token"
chmod -R a+rwX "$work/export"
manifest() { file_manifest "$work/export"; }
before=$(manifest)
start_peer() { mkdir -p "$work/$1" && "$peer" start "$work/export" "$work/$1"; }

tm=$(e2e_name telemount)
plugin_install_local "$tm" "$BUILD_DIR/plugins/telemount" DISCONNECTED_LINGER_TIME=${linger}s
vol=$(e2e_name echo)-0
on_exit docker volume rm -f "$vol"
create() { # create PORT: the client's options for a mount of the pod's /config
  with_deadline 60 docker volume create -d "$tm" -o host=127.0.0.1 -o container=echo -o port="$1" \
    -o dir=/config "$vol" >/dev/null
}
port_of() { docker volume inspect -f '{{.Status.port}}' "$vol"; }

port1=$(start_peer peer1)
on_exit "$peer" stop "$work/peer1"
create "$port1"
holder=$(e2e_name holder)
docker run -d --name "$holder" -v "$vol:/c" "$image" sleep 600 >/dev/null
on_exit docker rm -f "$holder"

# --- the crash: dockerd killed, then started again as the fixture does
kill -KILL "$engine"
for _ in $(seq 100); do kill -0 "$engine" 2>/dev/null || break; sleep 0.1; done
"$SOURCE_DIR/tests/env/docker-up" "$state" >/dev/null || fail "the engine did not start again"
status=$(docker inspect -f '{{.State.Status}}' "$holder")
[ "$status" = exited ] || fail "the holder is $status after the engine's crash, not exited"
docker rm "$holder" >/dev/null
used=$(with_deadline 30 docker volume inspect -f '{{len .Status.usedBy}}' "$vol")
[ "$used" = 1 ] || fail "expected the lost container's mount ID to stay recorded (Docker sent no Unmount), got $used"
pass "a dockerd crash leaves the lost container's mount ID recorded: Docker never unmounts it"

# --- the next intercept: the old server is gone, the same name comes with a new port
"$peer" stop "$work/peer1" >/dev/null
port2=$(start_peer peer2)
on_exit "$peer" stop "$work/peer2"
create "$port2" # Docker's Get waits out the linger time, then the name is free
[ "$(port_of)" = "$port2" ] || fail "the name kept the old port $(port_of) after the crash, not $port2"
got=$(with_deadline 60 docker run --rm -v "$vol:/c" "$image" cat /c/token)
[ "$got" = "token-$$" ] || fail "the next intercept read '$got' through the new port"
pass "after the crash the next intercept takes the name with its new port"

docker volume rm "$vol" >/dev/null
[ "$(manifest)" = "$before" ] || fail "the export changed: $(diff <(echo "$before") <(manifest))"
pass "nothing remote was touched: the export is unchanged"
