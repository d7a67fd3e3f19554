#!/usr/bin/env bash
# Docker Compose (Debian's docker-compose) with telemount volumes declared by driver and
# driver_opts: `up` mounts the pod's files into the service, `down -v` removes the volumes.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
peer=$SOURCE_DIR/tests/peers/sftp-export

work=$(mktemp -d /tmp/tm-compose.XXXXXX)
on_exit rm -rf "$work"
mkdir -p "$work/export/echo-easy/var/run/secrets/kubernetes.io/serviceaccount" "$work/export/echo-easy/config" "$work/peer"
echo "token-$$" >"$work/export/echo-easy/var/run/secrets/kubernetes.io/serviceaccount/token"
echo "greeting=compose" >"$work/export/echo-easy/config/app.conf"
port=$("$peer" start "$work/export" "$work/peer")
on_exit "$peer" stop "$work/peer"

tm=$(e2e_name telemount)
plugin_install_local "$tm" "$BUILD_DIR/plugins/telemount"

project=$(e2e_name tmcompose)
compose=(docker-compose -p "$project" -f "$SOURCE_DIR/tests/e2e/compose/telemount.yml")
# Docker records a managed driver as NAME:latest; compose compares names, so use the tag
export TM_DRIVER=$tm:latest TM_PORT=$port
on_exit "${compose[@]}" down -v --remove-orphans

out=$(with_deadline 180 "${compose[@]}" run --rm app 2>&1) || fail "compose run failed: $out"
[[ $out == *"token-$$"* && $out == *"greeting=compose"* ]] || fail "the service did not see the pod's files: $out"
out=$(with_deadline 120 "${compose[@]}" run --rm sidecar 2>&1) || fail "the local service failed: $out"
[[ $out == *local-only* ]] || fail "the local service printed: $out"
vols=$(docker volume ls -q --filter "label=com.docker.compose.project=$project")
[ "$(wc -w <<<"$vols")" = 2 ] || fail "expected two project volumes, got: $vols"
pass "compose mounts the telemount volumes into the service; the local service is untouched"

with_deadline 120 "${compose[@]}" down -v >/dev/null 2>&1 || fail "compose down -v failed"
vols=$(docker volume ls -q --filter "label=com.docker.compose.project=$project")
[ -z "$vols" ] || fail "down -v left volumes: $vols"
[ "$(cat "$work/export/echo-easy/config/app.conf")" = greeting=compose ] || fail "down -v changed the export"
pass "compose down -v removes the telemount volumes and leaves the export intact"
