#!/usr/bin/env bash
# teleroute against the real Docker engine and a Teleroute daemon peer (grpcio) running in a
# real "daemon" container and behaving as Telepresence's daemon does (server_linux.go): routes to
# the cluster, concurrency, teardown reaching the daemon, what becomes of containers' default
# routes, a CreateEndpoint the daemon fails, a Join the daemon refuses, live route refresh, a
# plugin restart, an IPv4-mapped host, bad options, and a daemon that dies.
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
daemon_peer_start "$tpd" "$work/peer"

# As Telepresence creates it (pkg/client/docker/teleroute/network.go, CreateNetwork): internal,
# a fixed IPAM subnet (here a free random /24; also what lets a test give a container --ip),
# the daemon label, options host and port.
net=$(e2e_name tr-net)
for _ in 1 2 3 4 5 6 7 8; do
  prefix=10.$((200 + RANDOM % 40)).$((RANDOM % 256)) # 10.200-239: clear of the peer's 10.244.0.0/16
  docker network create -d "$driver" --internal --subnet "$prefix.0/24" \
    --label "telepresence.io/teleroute/daemon=$tpd" -o host="$daemon_ip" -o port=4039 "$net" \
    >/dev/null 2>"$work/create.err" && break
  grep -q overlaps "$work/create.err" || fail "network create failed: $(cat "$work/create.err")"
done
docker network inspect "$net" >/dev/null 2>&1 || fail "no free /24 for the network: $(cat "$work/create.err")"
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

# Default routes. The daemon's Join sends gw_ip_v4 = the network's IPAM gateway ($prefix.1),
# which nothing on a teleroute network holds. What the engine did with it when teleroute passed it
# on as the Join reply's Gateway (dockerd 20.10.24, 2026-12-02):
# - a container created on the default bridge, connected to this --internal network and then
#   started (Telepresence's docker-run since telepresence#3905), or connected while running, or
#   connected to the bridge after this network: its default route stayed "via 172.17.0.1 dev eth0"
#   (libnetwork orders internal networks last when it picks the gateway endpoint), and it reached
#   the host's address outside both subnets;
# - a container on this network alone got "default via $prefix.1 dev tpd-0": everything outside
#   the cluster routes failed with "No route to host" (after ARP gave up) instead of failing at once;
# - on a NON-internal teleroute network whose name sorts before "bridge", the daemon's own
#   container (and every client) got "default via <teleroute gateway>": the daemon lost its
#   default route, and with it the way to the cluster.
# So teleroute gives Docker no Gateway and sets DisableGatewayService (no docker_gwbridge): every
# container keeps the default route of its other networks. This checks the first two cases again
# with that, and the third on a non-internal network named to sort first.
host_ip=$(ip -4 route get 1.1.1.1 | sed -n 's/.* src \([0-9.]*\).*/\1/p')
[ -n "$host_ip" ] || fail "the host has no IPv4 default route: cannot check containers' outbound traffic"
bridge_gw=$(docker inspect -f '{{.NetworkSettings.Gateway}}' "$tpd") # the default bridge's gateway
mkdir -p "$work/www" && echo "outside-$$" >"$work/www/index.html"
host_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("'"$host_ip"'",0)); print(s.getsockname()[1])')
python3 -m http.server --bind "$host_ip" --directory "$work/www" "$host_port" >/dev/null 2>&1 &
on_exit kill "$!"
outside() { printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 nc "$1" "$2"; }
probe="ip route; $(declare -f http_get outside); outside $host_ip $host_port; http_get 10.96.0.10"
gwc=$(e2e_name tr-gw)
docker create --name "$gwc" "$image" sh -c "$probe" >/dev/null
on_exit docker rm -f "$gwc"
docker network connect "$net" "$gwc" || fail "connecting a created container failed"
out=$(with_deadline 60 docker start -a "$gwc" 2>&1) || true
[[ $out == *"default via $bridge_gw dev eth0"* ]] || fail "created on the bridge, connected, started: the default route moved: $out"
[[ $out == *"outside-$$"* ]] || fail "created on the bridge, connected, started: no outbound traffic: $out"
[[ $out == *"hello from the cluster"* ]] || fail "created on the bridge, connected, started: no cluster: $out"
out=$(docker exec "$tpd" ip route)
[[ $out == *"default via $bridge_gw dev eth0"* ]] || fail "the daemon's default route moved: $out"
out=$(with_deadline 60 docker run --rm --network "$net" "$image" sh -c "$probe" 2>&1) || true
[[ $out != *default* ]] || fail "a container on the teleroute network alone got a default route: $out"
[[ $out == *"Network is unreachable"* ]] || fail "outside the cluster, a teleroute-only container should fail at once: $out"
[[ $out == *"hello from the cluster"* ]] || fail "a teleroute-only container did not reach the cluster: $out"
pass "containers keep their bridge default route and outbound traffic; teleroute alone gives no default route"

tpd_a=$(e2e_name tr-daemon-a)
docker run -d --name "$tpd_a" "$image" sleep 3600 >/dev/null
on_exit docker rm -f "$tpd_a"
daemon_peer_start "$tpd_a" "$work/peer-a"
net_a=aaa-$(e2e_name tr-open)
gwbridge_before=$(docker network ls -q -f name=^docker_gwbridge$)
docker network create -d "$driver" -o host="$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$tpd_a")" "$net_a" >/dev/null ||
  fail "a non-internal network could not be created"
on_exit remove_network "$net_a"
if [ -z "$gwbridge_before" ]; then # a regression would make Docker create it: ours to remove then
  on_exit sh -c 'docker network inspect docker_gwbridge >/dev/null 2>&1 && docker network rm docker_gwbridge >/dev/null'
fi
docker network connect --driver-opt daemon=true "$net_a" "$tpd_a" || fail "the daemon could not join $net_a"
out=$(docker exec "$tpd_a" sh -c "$probe" 2>&1) || true
[[ $out == *"default via $bridge_gw dev eth0"* ]] || fail "on a non-internal network the daemon's default route moved: $out"
[[ $out == *"outside-$$"* ]] || fail "on a non-internal network the daemon lost its outbound traffic: $out"
[ "$(docker network ls -q -f name=^docker_gwbridge$)" = "$gwbridge_before" ] || fail "Docker created docker_gwbridge"
remove_network "$net_a"
"$peer" stop --state "$work/peer-a" >/dev/null || true
docker rm -f "$tpd_a" >/dev/null
pass "on a non-internal network named to sort first, the daemon keeps its default route; no docker_gwbridge"

# A CreateEndpoint that the daemon fails. The real daemon keeps such an id without links, and a
# Join of it crashes the whole daemon (server_linux.go: ep.vethHost.Attrs() on nil); the peer
# reproduces the crash, so a Join reaching it would show here. --ip gives an address whose veth
# pair the daemon has not cached (a cached pair would be reused, and nothing would fail).
calls=$work/peer/calls.jsonl
peer_pid=$(cat "$work/peer/pid")
"$peer" fail-next-veth --state "$work/peer" --reason "no buffer space available"
expect_fail_with "cannot create veth pair" with_deadline 60 docker run --rm --network "$net" --ip "$prefix.200" "$image" true
failed_id=$(grep '"veth": "failed"' "$calls" | tail -1 | sed 's/.*"id": "\([0-9a-f]*\)".*/\1/')
[ -n "$failed_id" ] || fail "the daemon logged no failed CreateEndpoint: $(tail -3 "$calls")"
kill -0 "$peer_pid" || fail "the daemon peer crashed: $(tail -3 "$calls")"
! grep '"call": "Join"' "$calls" | grep -q "$failed_id" || fail "the plugin joined endpoint $failed_id, whose CreateEndpoint failed"
out=$(with_deadline 60 docker run --rm --network "$net" --ip "$prefix.200" "$image" sh -c "$(declare -f http_get); http_get 10.96.0.10")
[[ $out == *"hello from the cluster"* ]] || fail "the next container on the same address failed: $out"
running=$(e2e_name tr-running)
docker run -d --name "$running" "$image" sleep 600 >/dev/null
on_exit docker rm -f "$running"
"$peer" fail-next-veth --state "$work/peer"
expect_fail_with "cannot create veth pair" with_deadline 60 docker network connect --ip "$prefix.201" "$net" "$running"
failed_id=$(grep '"veth": "failed"' "$calls" | tail -1 | sed 's/.*"id": "\([0-9a-f]*\)".*/\1/')
with_deadline 60 docker network connect --ip "$prefix.201" "$net" "$running" || fail "connecting again failed"
out=$(docker exec "$running" sh -c "$(declare -f http_get); http_get 10.96.0.10")
[[ $out == *"hello from the cluster"* ]] || fail "after connecting again the container did not reach the cluster: $out"
kill -0 "$peer_pid" || fail "the daemon peer crashed: $(tail -3 "$calls")"
! grep '"call": "Join"' "$calls" | grep -q "$failed_id" || fail "the plugin joined endpoint $failed_id, whose CreateEndpoint failed"
docker rm -f "$running" >/dev/null
pass "a CreateEndpoint the daemon fails fails docker run and network connect with its message; no Join of it; the next works"

# A Join the daemon refuses: it announces an IPv6 subnet, but has no IPv6 address on this
# IPv4-only network. The real daemon answers INTERNAL "IPv6 is not enabled for the teleroute
# network" (server_linux.go, join); the user must see that text as it is.
"$peer" set-routes --state "$work/peer" --ipv4 10.96.0.0/16,10.244.0.0/16 --ipv6 fd00:96::/64 >/dev/null
expect_fail_with "IPv6 is not enabled for the teleroute network" with_deadline 60 docker run --rm --network "$net" "$image" true
"$peer" set-routes --state "$work/peer" --ipv4 10.96.0.0/16,10.244.0.0/16 >/dev/null
pass "the daemon's INTERNAL \"IPv6 is not enabled for the teleroute network\" reaches the user as it is"

# live route refresh: the daemon announces a new subnet and withdraws one
client=$(e2e_name tr-client)
docker run -d --name "$client" --network "$net" "$image" sleep 600 >/dev/null
on_exit docker rm -f "$client"
"$peer" add-cluster-addr --state "$work/peer" 10.250.0.7/16 >/dev/null
"$peer" set-routes --state "$work/peer" --ipv4 10.96.0.0/16,10.250.0.0/16 >/dev/null
ok=
for _ in $(seq 40); do # the refresh runs every 2 s; allow several rounds on a busy machine
  routes=$(docker exec "$client" ip route)
  if [[ $routes == *"10.250.0.0/16 via $via"* && $routes != *10.244.0.0/16* ]]; then ok=1; break; fi
  sleep 0.5
done
[ -n "$ok" ] || fail "the client's routes were not refreshed: $routes"
out=$(with_deadline 30 docker exec "$client" sh -c "$(declare -f http_get); http_get 10.250.0.7")
[[ $out == *"hello from the cluster"* ]] || fail "the new subnet's service is unreachable: $out"
# The plugin binds no host path: it reaches the namespace through the SandboxKey under the host's
# root (/proc/1/root, where dockerd shares pid 1's mounts, as here) or by a scan of the host's
# processes (tests/e2e/teleroute_exec_root.sh makes that happen).
ep=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").EndpointID}}" "$client")
way=$(grep -o "endpoint ${ep:0:12}: its container's network namespace is reached through .*" "$log" | head -1) ||
  fail "the plugin did not say how it reached the client's namespace"
pass "a running client's routes follow the daemon: new subnet added, withdrawn one removed (${way#*is })"

# the network survives a plugin restart
with_deadline 30 docker plugin disable -f "$tr" >/dev/null
with_deadline 30 docker plugin enable "$tr" >/dev/null
out=$(with_deadline 60 docker run --rm --network "$net" "$image" sh -c "$(declare -f http_get); http_get 10.96.0.10")
[[ $out == *"hello from the cluster"* ]] || fail "after a plugin restart a new client failed: $out"
pass "after docker plugin disable -f / enable the network still takes new clients"

# An IPv4-mapped host, as Telepresence sends it for an IPv6-only daemon network
# (pkg/client/docker/teleroute/network.go: host = netip.AddrFrom16(host.As16()) when ipv6 && !ipv4),
# is the IPv4 address: dialled as such, it works on hosts booted without IPv6.
net_m=$(e2e_name tr-mapped)
docker network create -d "$driver" --internal -o host="::ffff:$daemon_ip" -o port=4039 "$net_m" >/dev/null ||
  fail "network create with host=::ffff:$daemon_ip failed"
on_exit remove_network "$net_m"
net_m_id=$(docker network inspect -f '{{.Id}}' "$net_m")
grep -q "network ${net_m_id:0:12} created: daemon $daemon_ip:4039" "$log" ||
  fail "the mapped host was not dialled as $daemon_ip: $(grep "${net_m_id:0:12}" "$log")"
remove_network "$net_m"
pass "host=::ffff:$daemon_ip is dialled as $daemon_ip:4039"

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
