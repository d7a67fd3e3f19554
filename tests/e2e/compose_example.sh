#!/usr/bin/env bash
# examples/compose with Debian's docker-compose: the intercepted service reads the pod's token
# through a telemount volume and reaches the cluster through an external teleroute network; the
# local service is untouched; `down -v` removes the telemount volume and nothing else.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
work=$(mktemp -d /tmp/compose-e2e.XXXXXX)
on_exit rm -rf "$work"

tm=$(e2e_name telemount)
tr=$(e2e_name teleroute)
plugin_install_local "$tm" "$BUILD_DIR/plugins/telemount"
plugin_install_local "$tr" "$BUILD_DIR/plugins/teleroute"

# the cluster: the daemon container with the Teleroute peer, and the pod's SFTP export
tpd=$(e2e_name compose-daemon)
docker run -d --name "$tpd" "$image" sleep 3600 >/dev/null
on_exit docker rm -f "$tpd"
daemon_peer_start "$tpd" "$work/daemon"
mkdir -p "$work/export/echo-easy/var/run/secrets/kubernetes.io/serviceaccount" "$work/sftp"
echo "compose-token-$$" >"$work/export/echo-easy/var/run/secrets/kubernetes.io/serviceaccount/token"
port=$("$SOURCE_DIR/tests/peers/sftp-export" start "$work/export" "$work/sftp")
on_exit "$SOURCE_DIR/tests/peers/sftp-export" stop "$work/sftp"

net=$(e2e_name compose-net)
docker network create -d "$tr:latest" --internal -o host="$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$tpd")" \
  "$net" >/dev/null
on_exit docker network rm "$net"
on_exit docker network disconnect -f "$net" "$tpd"
docker network connect --driver-opt daemon=true "$net" "$tpd"

project=$(e2e_name example)
compose=(docker-compose -p "$project" -f "$SOURCE_DIR/examples/compose/docker-compose.yml")
export TELEROUTE_NETWORK=$net SFTP_HOST=127.0.0.1 SFTP_PORT=$port TELEMOUNT_DRIVER=$tm:latest APP_IMAGE=$image
on_exit "${compose[@]}" down -v --remove-orphans

out=$(with_deadline 180 "${compose[@]}" run --rm echo-easy 2>&1) || fail "the intercepted service failed: $out"
[[ $out == *"token: compose-token-$$"* ]] || fail "the service did not read the pod's token: $out"
[[ $out == *"hello from the cluster"* ]] || fail "the service did not reach the cluster: $out"
out=$(with_deadline 120 "${compose[@]}" run --rm cache 2>&1) || fail "the local service failed: $out"
[[ $out == *"local cache ready"* ]] || fail "the local service printed: $out"
pass "the intercepted service sees the pod's files and the cluster; the local service runs as before"

with_deadline 120 "${compose[@]}" down -v >/dev/null 2>&1 || fail "docker-compose down -v failed"
left=$(docker volume ls -q --filter "label=com.docker.compose.project=$project")
[ -z "$left" ] || fail "down -v left volumes: $left"
docker network inspect "$net" >/dev/null 2>&1 || fail "down -v removed the external network"
[ "$(cat "$work/export/echo-easy/var/run/secrets/kubernetes.io/serviceaccount/token")" = "compose-token-$$" ] ||
  fail "the export changed"
pass "docker-compose down -v removes the telemount volume and keeps the external network and the export"
