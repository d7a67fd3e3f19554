#!/usr/bin/env bash
# teleroute against hostile Teleroute peers (tests/peers/teleroute-hostile) on the real engine
# (issue 13): a port that accepts and never speaks fails `network create` naming the address, and
# the plugin goes on answering; a daemon whose Join floods routes is refused with the count and the
# cap; routes that all overlap the network's pool are dropped with one log line of bounded length.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
hostile=$SOURCE_DIR/tests/peers/teleroute-hostile/run
work=$(mktemp -d /tmp/tr-hostile.XXXXXX)
on_exit rm -rf "$work"

tr=$(e2e_name teleroute-hostile)
plugin_install_local "$tr" "$BUILD_DIR/plugins/teleroute" DEBUG=true LOG_FILE=/var/log/teleroute.log
driver=$tr:latest
log=$(plugin_file "$tr" /var/log/teleroute.log)
on_exit sh -c "echo '--- plugin log (tail)'; tail -n 20 '$log' | cut -c1-400"

# hostile_start NAME ARGS...: a hostile peer on 127.0.0.1 (the plugin shares the host's network),
# stopped on exit; sets peer_port (not a $(...) function: on_exit must run in this shell)
hostile_start() {
  local name=$1
  shift
  setsid "$hostile" "$@" --port-file "$work/$name.port" </dev/null >"$work/$name.log" 2>&1 &
  on_exit kill "$!"
  for _ in $(seq 100); do
    if [ -s "$work/$name.port" ]; then
      peer_port=$(cat "$work/$name.port")
      return 0
    fi
    sleep 0.1
  done
  fail "the hostile peer $name did not start: $(tail -5 "$work/$name.log")"
}

# network_on NAME PREFIX PORT: an internal network on PREFIX.0/24 as Telepresence creates one,
# removed on exit; false when the subnet overlaps another network (it is then free to try another)
network_on() {
  local name=$1 prefix=$2 port=$3
  if docker network create -d "$driver" --internal --subnet "$prefix.0/24" -o host=127.0.0.1 -o port="$port" \
    "$name" >/dev/null 2>"$work/create.err"; then
    on_exit remove_network "$name"
    return 0
  fi
  grep -q overlaps "$work/create.err" || fail "network create failed: $(cat "$work/create.err")"
  return 1
}

random_prefix() {
  echo "10.$((200 + RANDOM % 40)).$((RANDOM % 256))"
}

# A port that accepts and never speaks (no HTTP/2 SETTINGS): `network create` fails within
# CONNECT_TIMEOUT (5 s) naming the address, and leaves no network. Before, it succeeded after 2 s
# and every later call on the network failed.
hostile_start silent silent
net=$(e2e_name tr-silent)
expect_fail_with "cannot reach the Telepresence daemon at 127.0.0.1:$peer_port: it accepted the connection but sent nothing an HTTP/2 server sends (no SETTINGS)" \
  with_deadline 60 docker network create -d "$driver" --internal -o host=127.0.0.1 -o port="$peer_port" "$net"
! docker network inspect "$net" >/dev/null 2>&1 || fail "a network on a silent port exists"
pass "a port that accepts and never speaks fails network create, naming the address"

# A daemon whose Join gives 60,000 routes: the Join is refused with the count and the cap, and
# the plugin answers the next calls as before.
hostile_start flood flood-routes --routes 60000
net=$(e2e_name tr-flood)
for _ in 1 2 3 4 5 6 7 8; do network_on "$net" "$(random_prefix)" "$peer_port" && break; done
docker network inspect "$net" >/dev/null 2>&1 || fail "no free /24 for $net: $(cat "$work/create.err")"
expect_fail_with "the daemon's Join reply has 60000 routes; teleroute takes at most 4096" \
  with_deadline 120 docker run --rm --network "$net" "$image" true
with_deadline 60 docker network rm "$net" >/dev/null || fail "the network of the flooding daemon could not be removed"
pass "a Join of 60000 routes is refused with the count and the cap (4096)"

# Routes that all overlap the network's own pool: dropped, and the log line names how many and the
# first three, not all of them.
net=$(e2e_name tr-overlap)
for try in 1 2 3 4 5 6 7 8; do
  prefix=$(random_prefix)
  hostile_start "overlap-$try" flood-routes --routes 200 --base "$prefix.0/24" --len 32
  network_on "$net" "$prefix" "$peer_port" && break
done
docker network inspect "$net" >/dev/null 2>&1 || fail "no free /24 for $net: $(cat "$work/create.err")"
with_deadline 120 docker run --rm --network "$net" "$image" true || fail "a container whose routes were all dropped did not run"
line=$(grep "dropped 200 route(s)" "$log" | tail -1) || fail "no log line about the dropped routes"
[[ $line == *"dropped 200 route(s): $prefix.0/32, $prefix.1/32, $prefix.2/32 and 197 more: they overlap the network's own address pool"* ]] ||
  fail "unexpected line: $line"
((${#line} < 400)) || fail "the line about dropped routes is ${#line} characters long"
pass "routes overlapping the pool are dropped with one short log line"
