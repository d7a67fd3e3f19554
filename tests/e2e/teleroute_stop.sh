#!/usr/bin/env bash
# teleroute stopped while a Join hangs on a frozen daemon (issue 13, finding 2). The stop must
# begin by ending the calls in flight (tr_stopping, the stopping hook of struct plg_plugin) while
# the HTTP server still runs, so that Docker gets the Join's answer, CANCELLED, instead of a
# connection that the server dropped. Needs teleroute/main.c to pass .stopping = tr_stopping.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
hostile=$SOURCE_DIR/tests/peers/teleroute-hostile/run
work=$(mktemp -d /tmp/tr-stop.XXXXXX)
on_exit rm -rf "$work"

tr=$(e2e_name teleroute-stop)
# deadlines no one waits for: only the stop can end the Join
plugin_install_local "$tr" "$BUILD_DIR/plugins/teleroute" DEBUG=true LOG_FILE=/var/log/teleroute.log \
  CALL_TIMEOUT=60s CONNECT_TIMEOUT=60s
log=$(plugin_file "$tr" /var/log/teleroute.log)
on_exit sh -c "echo '--- plugin log (tail)'; tail -n 20 '$log'"

setsid "$hostile" flood-routes --routes 0 --hang-join --port-file "$work/port" </dev/null >"$work/peer.log" 2>&1 &
on_exit kill "$!"
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || fail "the frozen daemon did not start: $(tail -5 "$work/peer.log")"
net=$(e2e_name tr-frozen)
docker network create -d "$tr:latest" --internal -o host=127.0.0.1 -o port="$(cat "$work/port")" "$net" >/dev/null ||
  fail "network create against the frozen daemon failed"
on_exit remove_network "$net"

with_deadline 120 docker run --rm --network "$net" "$image" true >"$work/run.out" 2>&1 &
run=$!
for _ in $(seq 300); do grep -q "POST /NetworkDriver.CreateEndpoint -> 200" "$log" && break; sleep 0.1; done
grep -q "POST /NetworkDriver.CreateEndpoint -> 200" "$log" || fail "the container never reached its Join"
with_deadline 30 docker plugin disable -f "$tr" >/dev/null || fail "docker plugin disable -f failed"
rc=0
wait "$run" || rc=$?
((rc != 0)) || fail "the container ran although its Join never got an answer"
grep -q "Join: CANCELLED: the plugin is stopping" "$work/run.out" ||
  fail "the Join in flight did not end with the stop: $(cat "$work/run.out")"
pass "docker plugin disable -f ends a Join that hangs on a frozen daemon, with CANCELLED"
