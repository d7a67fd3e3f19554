#!/usr/bin/env bash
# teleroute on an engine that has no /var/run/docker of its own (telepresence#3816: a custom
# --exec-root, VM engines): a second dockerd, started here in a temporary directory with its own
# --exec-root, --data-root, --pidfile, socket and containerd, and in a mount namespace of its own,
# so that its containers' namespace files (<exec-root>/netns/...) exist nowhere the plugin or the
# host's other processes could open them. teleroute must enable there, route a container to the
# cluster, refresh its routes (by finding its namespace among the host's processes), and, for a
# container whose namespace it may not enter, say so once while the rest works.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
peer=$SOURCE_DIR/tests/peers/teleroute-daemon/run

# Short: plugin sockets live at <exec-root>/plugins/<64 hex>/teleroute.sock (108 bytes at most).
d2=$(mktemp -d /tmp/d2.XXXXXX)
on_exit "$SOURCE_DIR/tests/env/second-dockerd" remove "$d2"
on_exit sh -c "echo '--- second dockerd log (tail)'; tail -n 20 '$d2/dockerd.log' 2>/dev/null"
d2_host=$("$SOURCE_DIR/tests/env/second-dockerd" start "$d2") || fail "the second dockerd did not start"
[ "$(readlink "/proc/$(cat "$d2/docker.pid")/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] ||
  fail "the second dockerd shares our mount namespace"
# From here on every docker command, cleanups included, talks to the second engine.
export DOCKER_HOST=$d2_host
[ "$(docker info -f '{{.DockerRootDir}}')" = "$d2/data" ] || fail "DOCKER_HOST does not reach the second dockerd"
pass "a second dockerd runs with --exec-root $d2/x, --data-root $d2/data, in its own mount namespace"

tr=$(e2e_name teleroute)
plugin_install_local "$tr" "$BUILD_DIR/plugins/teleroute" DEBUG=true LOG_FILE=/var/log/teleroute.log \
  ROUTE_REFRESH_INTERVAL=2s
[ "$(docker plugin inspect -f '{{len .Config.Mounts}}' "$tr")" = 0 ] || fail "teleroute binds host paths"
log=$d2/data/plugins/$(docker plugin inspect -f '{{.Id}}' "$tr")/rootfs/var/log/teleroute.log
on_exit sh -c "echo '--- plugin log (tail)'; tail -n 30 '$log'"
pass "teleroute enables on the second engine; it binds no host path"

# The daemon container needs an address the plugin (host network) can reach: a bridge network of
# the second engine, on a /24 that no host route uses.
d2_bridge=tr2-$(printf '%04x%04x' $RANDOM $RANDOM)
drop_bridge() { if ip link show "$1" >/dev/null 2>&1; then ip link del "$1"; fi; }
on_exit drop_bridge "$d2_bridge"
for _ in $(seq 20); do
  sub=10.$((150 + RANDOM % 50)).$((RANDOM % 256))
  ip -4 route | grep -q "^$sub\." || break
done
d2net=$(e2e_name d2-bridge)
docker network create --subnet "$sub.0/24" -o com.docker.network.bridge.name="$d2_bridge" "$d2net" >/dev/null ||
  fail "cannot make a bridge network on the second engine"
on_exit remove_network "$d2net"
tpd=$(e2e_name d2-daemon)
docker run -d --name "$tpd" --network "$d2net" "$image" sleep 3600 >/dev/null
on_exit docker rm -f "$tpd"
daemon_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$d2net\").IPAddress}}" "$tpd")
daemon_peer_start "$tpd" "$d2/peer"

net=$(e2e_name d2-tr)
# 10.200-239: clear of the daemon peer's cluster subnets (10.96.0.0/16, 10.244.0.0/16), which its
# namespace routes: a network inside one of them cannot give the daemon its address
docker network create -d "$tr:latest" --internal --subnet "10.$((200 + RANDOM % 40)).$((RANDOM % 256)).0/24" \
  -o host="$daemon_ip" "$net" >/dev/null || fail "teleroute network create failed on the second engine"
on_exit remove_network "$net"
docker network connect --driver-opt daemon=true "$net" "$tpd" || fail "the daemon could not join"
client=$(e2e_name d2-client)
docker run -d --name "$client" --network "$net" "$image" sleep 600 >/dev/null
on_exit docker rm -f "$client"
out=$(with_deadline 30 docker exec "$client" sh -c "$(declare -f http_get); http_get 10.96.0.10")
[[ $out == *"hello from the cluster"* ]] || fail "the client did not reach the cluster service: $out"
pass "a container of the second engine reaches the cluster service through teleroute"

# A container whose only process has a capability the plugin lacks: the kernel lets no process
# without it open its /proc/<pid>/ns/net, so its namespace cannot be found.
locked=$(e2e_name d2-locked)
docker run -d --name "$locked" --cap-add SYS_PTRACE --network "$net" "$image" sleep 600 >/dev/null
on_exit docker rm -f "$locked"
client_ep=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").EndpointID}}" "$client")
locked_ep=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").EndpointID}}" "$locked")

# route refresh: the daemon announces a new subnet
"$peer" add-cluster-addr --state "$d2/peer" 10.250.0.7/16 >/dev/null
"$peer" set-routes --state "$d2/peer" --ipv4 10.96.0.0/16,10.244.0.0/16,10.250.0.0/16 >/dev/null
wait_route() { # wait_route CIDR: the client's routes take it within a minute (rounds every 2 s)
  local routes
  for _ in $(seq 120); do
    routes=$(docker exec "$client" ip route)
    [[ $routes == *"$1 via"* ]] && return 0
    sleep 0.5
  done
  fail "the client's routes were not refreshed with $1: $routes"
}
wait_route 10.250.0.0/16
out=$(with_deadline 30 docker exec "$client" sh -c "$(declare -f http_get); http_get 10.250.0.7")
[[ $out == *"hello from the cluster"* ]] || fail "the new subnet's service is unreachable: $out"
grep -q "endpoint ${client_ep:0:12}: its container's network namespace is reached through a scan" "$log" ||
  fail "the plugin did not find the client's namespace by a scan: $(grep "${client_ep:0:12}" "$log" | tail -3)"
pass "route refresh finds the container's namespace among the host's processes and adds the new subnet"

# Two more rounds' worth of changes: the locked container's problem is logged once, clearly.
"$peer" set-routes --state "$d2/peer" --ipv4 10.96.0.0/16,10.250.0.0/16 >/dev/null
for _ in $(seq 120); do
  [[ $(docker exec "$client" ip route) != *10.244.0.0/16* ]] && break
  sleep 0.5
done
[[ $(docker exec "$client" ip route) != *10.244.0.0/16* ]] || fail "the withdrawn subnet stayed in the client"
warned=$(grep -c "route refresh of endpoint ${locked_ep:0:12}: cannot find the container's network namespace" "$log" || true)
((warned == 1)) || fail "expected one warning about the locked container's namespace, got $warned: $(grep "${locked_ep:0:12}" "$log" | tail -3)"
out=$(with_deadline 30 docker exec "$locked" sh -c "ip route; $(declare -f http_get); http_get 10.96.0.10")
[[ $out == *"hello from the cluster"* ]] || fail "the locked container lost the cluster: $out"
[[ $out == *"10.244.0.0/16 via"* ]] || fail "the locked container's Join-time routes changed: $out"
grep "route refresh of endpoint ${locked_ep:0:12}" "$log" | head -1 | sed 's/^/  plugin log: /'
pass "a namespace the plugin may not enter is logged once; that container keeps its Join-time routes and the cluster"

docker rm -f "$client" "$locked" >/dev/null
docker network disconnect "$net" "$tpd"
docker network rm "$net" >/dev/null || fail "the teleroute network could not be removed"
pass "containers and the network go; the second engine is stopped at exit"
