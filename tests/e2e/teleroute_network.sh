#!/usr/bin/env bash
# teleroute against the real Docker engine and a Teleroute daemon peer (grpcio) running in a
# real "daemon" container: routes to the cluster, concurrency, teardown reaching the daemon,
# live route refresh, a plugin restart, bad options, and a daemon that dies.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
peer=$SOURCE_DIR/tests/peers/teleroute-daemon/run
work=$(mktemp -d /tmp/tr-e2e.XXXXXX)
on_exit rm -rf "$work"

tr=$(e2e_name teleroute)
plugin_install_local "$tr" "$BUILD_DIR/plugins/teleroute" DEBUG=true LOG_FILE=/var/log/teleroute.log \
  ROUTE_REFRESH_INTERVAL=2s
driver=$tr:latest
log=$(plugin_file "$tr" /var/log/teleroute.log)
on_exit sh -c "echo '--- plugin log (tail)'; tail -n 40 '$log'"

# the daemon container and the daemon in its network namespace
tpd=$(e2e_name tr-daemon)
docker run -d --name "$tpd" "$image" sleep 3600 >/dev/null
on_exit docker rm -f "$tpd"
daemon_ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$tpd")
daemon_peer_start "$tpd" "$work/peer" --ipv6-cluster fd00:96::/64 --ipv6-cluster-addr fd00:96::10/64

net=$(e2e_name tr-net)
docker network create -d "$driver" --internal -o host="$daemon_ip" -o port=4039 "$net" >/dev/null ||
  fail "network create failed"
on_exit remove_network "$net"
docker network connect --driver-opt daemon=true "$net" "$tpd" || fail "the daemon could not join"
via=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$tpd")
pass "network created against the daemon at $daemon_ip; the daemon joined first ($via)"

out=$(with_deadline 60 docker run --rm --network "$net" "$image" sh -c "ip route; $(declare -f http_get); http_get 10.96.0.10")
[[ $out == *"10.96.0.0/16 via $via"* ]] || fail "the client lacks the cluster route via the daemon: $out"
[[ $out == *"hello from the cluster"* ]] || fail "the client did not reach the cluster service: $out"
pass "a client gets the cluster routes via the daemon and reaches the cluster service"

# 20 clients at once
pids=()
for i in $(seq 1 20); do
  with_deadline 180 docker run --rm --network "$net" "$image" sh -c "$(declare -f http_get); http_get 10.244.0.5" \
    >"$work/out.$i" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed=$((failed + 1)); done
((failed == 0)) || fail "$failed of 20 concurrent clients failed: $(grep -L 'hello from the cluster' "$work"/out.* | head -3 | xargs cat)"
! grep -L 'hello from the cluster' "$work"/out.* | grep -q . || fail "some clients did not reach the service"
joins=$(grep -c '"call": "Join"' "$work/peer/calls.jsonl")
leaves=$(grep -c '"call": "Leave"' "$work/peer/calls.jsonl")
removes=$(grep -c '"call": "RemoveEndpoint"' "$work/peer/calls.jsonl")
((leaves == 21 && removes == 21)) || fail "expected 21 Leave and RemoveEndpoint calls at the daemon, got $leaves and $removes ($joins joins)"
pass "20 concurrent clients all reach the cluster; every Leave and RemoveEndpoint reached the daemon"

# live route refresh: the daemon announces a new subnet and withdraws one
client=$(e2e_name tr-client)
docker run -d --name "$client" --network "$net" "$image" sleep 600 >/dev/null
on_exit docker rm -f "$client"
"$peer" add-cluster-addr --state "$work/peer" 10.250.0.7/16 >/dev/null
"$peer" set-routes --state "$work/peer" --ipv4 10.96.0.0/16,10.250.0.0/16 --ipv6 fd00:96::/64 >/dev/null
ok=
for _ in $(seq 40); do # the refresh runs every 2 s; allow several rounds on a busy machine
  routes=$(docker exec "$client" ip route)
  if [[ $routes == *"10.250.0.0/16 via $via"* && $routes != *10.244.0.0/16* ]]; then ok=1; break; fi
  sleep 0.5
done
[ -n "$ok" ] || fail "the client's routes were not refreshed: $routes"
out=$(with_deadline 30 docker exec "$client" sh -c "$(declare -f http_get); http_get 10.250.0.7")
[[ $out == *"hello from the cluster"* ]] || fail "the new subnet's service is unreachable: $out"
pass "a running client's routes follow the daemon: new subnet added, withdrawn one removed"

# the network survives a plugin restart
with_deadline 30 docker plugin disable -f "$tr" >/dev/null
with_deadline 30 docker plugin enable "$tr" >/dev/null
out=$(with_deadline 60 docker run --rm --network "$net" "$image" sh -c "$(declare -f http_get); http_get 10.96.0.10")
[[ $out == *"hello from the cluster"* ]] || fail "after a plugin restart a new client failed: $out"
pass "after docker plugin disable -f / enable the network still takes new clients"

# dual stack: IPv6 data from Docker, per-family next hops from the daemon (a daemon serves one
# network, so this one gets its own daemon container)
tpd6=$(e2e_name tr-daemon6)
docker run -d --name "$tpd6" "$image" sleep 3600 >/dev/null
on_exit docker rm -f "$tpd6"
daemon_peer_start "$tpd6" "$work/peer6" --ipv6-cluster fd00:96::/64 --ipv6-cluster-addr fd00:96::10/64
net6=$(e2e_name tr-net6)
sub6="fd00:$(printf '%x' $((RANDOM % 65536))):$(printf '%x' $((RANDOM % 65536)))::/64"
docker network create -d "$driver" --internal --ipv6 --subnet "$sub6" \
  -o host="$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$tpd6")" "$net6" >/dev/null ||
  fail "dual-stack network create failed"
on_exit remove_network "$net6"
docker network connect --driver-opt daemon=true "$net6" "$tpd6" || fail "the daemon could not join the dual-stack network"
via6=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net6\").GlobalIPv6Address}}" "$tpd6")
[ -n "$via6" ] || fail "the daemon got no IPv6 address on $net6"
out=$(with_deadline 60 docker run --rm --network "$net6" "$image" sh -c \
  "ip -6 route; ip route; printf 'GET / HTTP/1.0\r\n\r\n' | nc fd00:96::10 80; printf 'GET / HTTP/1.0\r\n\r\n' | nc 10.96.0.10 80")
[[ $out == *"fd00:96::/64 via $via6"* ]] || fail "the client lacks the IPv6 cluster route via $via6: $out"
[[ $out == *"hello from the cluster (fd00:96::10)"* ]] || fail "the client did not reach the cluster service over IPv6: $out"
[[ $out == *"hello from the cluster (10.96.0.10)"* ]] || fail "the client did not reach the cluster service over IPv4: $out"
remove_network "$net6"
pass "a dual-stack network routes both families via the daemon's address of each family"

# bad options fail network create with the option named, and leave no network
bad() { # bad MESSAGE OPTION...
  local msg=$1 args=() name
  shift
  for o in "$@"; do args+=(-o "$o"); done
  name=$(e2e_name tr-bad)
  expect_fail_with "$msg" with_deadline 30 docker network create -d "$driver" --internal "${args[@]}" "$name" >/dev/null
  ! docker network inspect "$name" >/dev/null 2>&1 || fail "a refused network $name exists"
}
bad 'option "host" is required' port=4039
bad 'option "host": "daemon" is not an IPv4 or IPv6 address' host=daemon
bad 'option "port": "70000" is not a port number' host="$daemon_ip" port=70000
bad 'option "pid": "x" is not a process id' host="$daemon_ip" pid=x
bad 'unknown option "mtu"' host="$daemon_ip" mtu=1400
free_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bad "cannot reach the Telepresence daemon at 127.0.0.1:$free_port" host=127.0.0.1 port="$free_port"
pass "bad options and an unreachable daemon fail network create with clear messages"

# the daemon dies while a client runs: the client still stops, the network still goes
"$peer" stop --state "$work/peer" >/dev/null || true
with_deadline 60 docker stop -t 1 "$client" >/dev/null || fail "the client could not be stopped without the daemon"
docker rm -f "$client" >/dev/null
with_deadline 60 docker network disconnect -f "$net" "$tpd" || fail "the daemon could not leave the network"
with_deadline 60 docker network rm "$net" >/dev/null || fail "the network could not be removed without the daemon"
pass "with the daemon gone, clients stop and the network is removed"
