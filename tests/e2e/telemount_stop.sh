#!/usr/bin/env bash
# telemount stopped while requests hang on a frozen SFTP server (issue 13, finding 2): the stop
# begins with the stopping hook, which ends every wait and kills every sshfs while the HTTP server
# still runs, so that Docker gets each request's error ("the plugin is stopping") at once instead of
# a connection dropped after Docker's 10 s. The settings make the plugin's own deadlines far longer
# than the test: only the stop can end these requests.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
peer=$SOURCE_DIR/tests/peers/sftp-export
work=$(mktemp -d /tmp/tm-stop.XXXXXX)
on_exit rm -rf "$work"
mkdir -p "$work/export/echo/config"
echo greeting=hello >"$work/export/echo/config/app.conf"
chmod -R a+rwX "$work/export"
mkdir -p "$work/peer"
port=$("$peer" start "$work/export" "$work/peer")
on_exit "$peer" stop "$work/peer"

tm=$(e2e_name telemount-stop)
plugin_install_local "$tm" "$BUILD_DIR/plugins/telemount" DEBUG=true LOG_FILE=/var/log/telemount.log \
  CONNECT_TIMEOUT=60s HEALTH_CHECK_TIMEOUT=60s HEALTH_CHECK_INTERVAL=0
log=$(plugin_file "$tm" /var/log/telemount.log)
on_exit sh -c "echo '--- plugin log (tail)'; tail -n 20 '$log'"

# asked: waits until the frozen server has a request it has not read (an SFTP greeting or request
# in its socket's receive queue): the plugin is waiting on it now
asked() {
  for _ in $(seq 300); do
    ss -Htn state established "( sport = :$port )" | awk '$1 > 0 { found = 1 } END { exit !found }' && return 0
    sleep 0.1
  done
  fail "no request reached the frozen server"
}

# --- a Create that waits for the server's SFTP greeting
"$peer" freeze "$work/peer"
vol=$(e2e_name tm-frozen)
on_exit docker volume rm -f "$vol"
with_deadline 120 docker volume create -d "$tm" -o host=127.0.0.1 -o port="$port" -o container=echo "$vol" \
  >"$work/create.out" 2>&1 &
create=$!
asked
with_deadline 30 docker plugin disable -f "$tm" >/dev/null || fail "docker plugin disable -f failed"
rc=0
wait "$create" || rc=$?
((rc != 0)) || fail "the create succeeded against a frozen server"
grep -q "the plugin is stopping" "$work/create.out" || fail "the Create in flight did not end with the stop: $(cat "$work/create.out")"
pass "docker plugin disable -f ends a Create that hangs on a frozen server, with its error"

# --- a Mount that waits for the server's greeting: after its sshfs ended, the export is started
# again by the next Mount (a container mounted the volume through this run of the plugin, so Get
# does not probe the server)
"$peer" thaw "$work/peer"
with_deadline 30 docker plugin enable "$tm" >/dev/null || fail "the plugin did not enable again"
docker volume create -d "$tm" -o host=127.0.0.1 -o port="$port" -o container=echo -o dir=config "$vol" >/dev/null
holder=$(e2e_name holder)
docker run -d --name "$holder" -v "$vol:/c" "$image" sleep 600 >/dev/null
on_exit docker rm -f "$holder"
pkill -KILL -f -- "sshfs .*directport=$port " || fail "no sshfs runs for port $port"
for _ in $(seq 100); do # until the plugin has seen its sshfs end
  [ "$(docker volume inspect -f '{{.Status.state}}' "$vol")" != mounted ] && break
  sleep 0.1
done
"$peer" freeze "$work/peer"
with_deadline 120 docker run --rm -v "$vol:/c" "$image" cat /c/app.conf >"$work/run.out" 2>&1 &
run=$!
asked
with_deadline 30 docker plugin disable -f "$tm" >/dev/null || fail "docker plugin disable -f failed"
rc=0
wait "$run" || rc=$?
"$peer" thaw "$work/peer"
((rc != 0)) || fail "the container started on a frozen server"
grep -q "the plugin is stopping" "$work/run.out" || fail "the Mount in flight did not end with the stop: $(cat "$work/run.out")"
pass "docker plugin disable -f ends a Mount that hangs on a frozen server, with its error"
