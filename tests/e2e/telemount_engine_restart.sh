#!/usr/bin/env bash
# A dockerd restart while the SFTP server is up keeps telemount's volumes (the rule that lets go of
# forgotten names must not touch them: their server answers), on a second engine that the test may
# restart without disturbing anything else on the machine.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
peer=$SOURCE_DIR/tests/peers/sftp-export
engine=$SOURCE_DIR/tests/env/second-dockerd
linger=2

work=$(mktemp -d /tmp/tm-restart.XXXXXX)
on_exit rm -rf --one-file-system "$work"
mkdir -p "$work/export/echo/config"
echo greeting=hello >"$work/export/echo/config/app.conf"
chmod -R a+rwX "$work/export"
mkdir -p "$work/peer"
port=$("$peer" start "$work/export" "$work/peer")
on_exit "$peer" stop "$work/peer"

d2=$(mktemp -d /tmp/d2.XXXXXX)
on_exit "$engine" remove "$d2"
on_exit sh -c "echo '--- second dockerd log (tail)'; tail -n 20 '$d2/dockerd.log' 2>/dev/null"
DOCKER_HOST=$("$engine" start "$d2") || fail "the second dockerd did not start"
export DOCKER_HOST # every docker command from here on, cleanups included, talks to the second engine

tm=$(e2e_name telemount)
plugin_install_local "$tm" "$BUILD_DIR/plugins/telemount" DISCONNECTED_LINGER_TIME=${linger}s
vol=$(e2e_name echo)-0
on_exit docker volume rm -f "$vol"
docker volume create -d "$tm" -o host=127.0.0.1 -o port="$port" -o container=echo -o dir=/config -o ro=true "$vol" >/dev/null
read_config() { with_deadline 60 docker run --rm -v "$vol:/c:ro" "$image" cat /c/app.conf; }
[ "$(read_config)" = greeting=hello ] || fail "cannot read through the volume"

"$engine" stop "$d2"
"$engine" start "$d2" >/dev/null || fail "the second dockerd did not start again"
for _ in $(seq 60); do [ "$(docker plugin inspect -f '{{.Enabled}}' "$tm" 2>/dev/null)" = true ] && break; sleep 0.5; done
sleep $((linger + 1))
[ "$(docker volume inspect -f '{{.Status.port}}' "$vol")" = "$port" ] ||
  fail "after a dockerd restart the volume is gone or changed: $(docker volume inspect "$vol" 2>&1)"
[ "$(read_config)" = greeting=hello ] || fail "cannot read through the volume after a dockerd restart"
pass "a dockerd restart while the server answers keeps the volume, and it reads as before"
