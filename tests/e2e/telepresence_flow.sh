#!/usr/bin/env bash
# Telepresence's own client flow, replayed call for call against the real engine: both plugins
# installed from a registry by their full reference, the teleroute network made as the client
# makes it (and made again when it already exists), an intercept's volumes, an abnormal end, the
# next intercept with the same volume names on a new port, and the Compose file an intercept
# handler writes.
#
# What the client sends, read from telepresenceio/telepresence:
# - pkg/client/docker/plugin.go (ensurePlugin, latestPluginName): the plugin is named by its full
#   reference <registry>/<namespace>/<repository>:<arch>-<tag>, installed with
#   `docker plugin install --grant-all-permissions <ref>`, enabled (timeout 5 s) when disabled,
#   and the reference is the driver name;
# - pkg/client/docker/teleroute/network.go (CreateNetwork): NetworkCreate with Driver <ref>,
#   Scope local, Internal, EnableIPv4/EnableIPv6, Options {host, port}, Labels
#   {telepresence.io/teleroute/daemon: <daemon container id>}, IPAM Config [{Subnet}] (a free
#   RFC 1918 subnet that avoids the cluster's and every Docker network's); then NetworkConnect of
#   the daemon with DriverOpts {daemon: "true"};
# - pkg/client/cli/connect (createTelerouteNetwork): when the name "already exists" and carries
#   that label, RemoveNetwork (force-disconnect every container, remove), CreateNetwork again,
#   then ReconnectNetwork of what was disconnected (plain NetworkConnect; errors only logged);
# - pkg/client/docker/volume.go (CreateVolumes, VolumeDriverOpts): one volume per remote mount,
#   named <container>-<i> from 0, DriverOpts {host, container, port, dir (the absolute mount
#   path)} plus ro=true on read-only mounts; the intercepted container runs with
#   --network container:<daemon> and -v <volume>:<path>[:ro] (pkg/client/docker/run.go);
# - pkg/client/compose (createVolume): the Compose volume has name <container>-<i>, driver <ref>
#   and the same driver_opts.
# The client talks to the Docker API (moby/client, API 1.41 here, which sets CheckDuplicate on
# network create below API 1.44); so does this test, through the engine's socket.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
sftp=$SOURCE_DIR/tests/peers/sftp-export
work=$(mktemp -d /tmp/tp-flow.XXXXXX)
on_exit rm -rf "$work"
version=$(sed -n 's/^version=//p' "$BUILD_DIR/plugins/release")

# api METHOD PATH [JSON]: one Docker API call; prints the body, fails on a non-2xx status
api() {
  local out code args=(-sS --max-time 120 --unix-socket /var/run/docker.sock -X "$1" -H 'Content-Type: application/json')
  (($# < 3)) || args+=(-d "$3")
  out=$(curl "${args[@]}" -w '\n%{http_code}' "http://docker/v1.41$2") || return 1
  code=${out##*$'\n'}
  printf '%s\n' "${out%$'\n'*}"
  [[ $code == 2* ]]
}
json() { python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])))' "$1"; }

# --- the plugins, from a registry, by their full reference -------------------------------------
registry=$("$SOURCE_DIR/tests/env/registry" start "$work/registry")
on_exit "$SOURCE_DIR/tests/env/registry" stop "$work/registry"
dest=$registry/$(e2e_name tp)
with_deadline 300 "$SOURCE_DIR/rootfs-build/publish" "$dest" --arch amd64 --amd64-dir "$BUILD_DIR/plugins" >/dev/null ||
  fail "publishing to $dest failed"
tm=$dest/telemount:amd64-$version
tr=$dest/teleroute:amd64-$version
for ref in "$tm" "$tr"; do
  with_deadline 300 docker plugin install --grant-all-permissions "$ref" >/dev/null || fail "docker plugin install $ref failed"
  on_exit _e2e_plugin_rm "$ref"
  docker plugin disable "$ref" >/dev/null # as after a reboot: the client enables it again
  [[ $(docker plugin inspect -f '{{.Enabled}}' "$ref") == false ]] || fail "$ref did not disable"
  with_deadline 60 docker plugin enable --timeout 5 "$ref" >/dev/null || fail "enabling $ref failed"
done
pass "both plugins installed by their full reference and enabled as the client does"

# --- the daemon container, its Teleroute service, and the network --------------------------------
tpd=$(e2e_name tp-daemon)
docker run -d --name "$tpd" "$image" sleep 3600 >/dev/null
on_exit docker rm -f "$tpd"
daemon_peer_start "$tpd" "$work/daemon"
daemon_ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$tpd")
daemon_id=$(docker inspect -f '{{.Id}}' "$tpd")
daemon_pid=$(docker inspect -f '{{.State.Pid}}' "$tpd")

# the client's FindNonConflictingSubnet: the first 172.16-31.0.0/16 that no Docker network and no
# cluster subnet (the peer's 10.96.0.0/16, 10.244.0.0/16) overlaps
mapfile -t networks < <(docker network ls -q)
subnet=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "${networks[@]}" |
  python3 -c '
import ipaddress, sys
used = [ipaddress.ip_network(s, strict=False) for s in sys.stdin.read().split()]
used += [ipaddress.ip_network("10.96.0.0/16"), ipaddress.ip_network("10.244.0.0/16")]
for i in range(16, 32):
    n = ipaddress.ip_network(f"172.{i}.0.0/16")
    if not any(n.overlaps(u) for u in used if u.version == 4):
        print(n); break')
[[ -n $subnet ]] || fail "no free 172.16-31.0.0/16 subnet on this engine"
net=$(e2e_name tp-net)
on_exit remove_network "$net"
create_network() {
  api POST /networks/create "$(json "{\"Name\":\"$net\",\"CheckDuplicate\":true,\"Driver\":\"$tr\",\"Scope\":\"local\",
    \"Internal\":true,\"EnableIPv4\":true,\"EnableIPv6\":false,\"Options\":{\"host\":\"$daemon_ip\",\"port\":\"4039\"},
    \"Labels\":{\"telepresence.io/teleroute/daemon\":\"$daemon_id\"},\"IPAM\":{\"Config\":[{\"Subnet\":\"$subnet\"}]}}")"
}
connect_daemon() {
  api POST "/networks/$net/connect" "{\"Container\":\"$daemon_id\",\"EndpointConfig\":{\"DriverOpts\":{\"daemon\":\"true\"}}}" >/dev/null
}
create_network >/dev/null || fail "creating the network as the client does failed"
connect_daemon || fail "connecting the daemon with daemon=true failed"
reach_cluster() {
  out=$(with_deadline 120 docker run --rm --network "$net" "$image" sh -c "$(declare -f http_get); http_get 10.96.0.10" 2>&1) ||
    fail "a container on the network failed: $out"
  [[ $out == *"hello from the cluster"* ]] || fail "a container on the network did not reach the cluster: $out"
}
reach_cluster
pass "the network made as the client makes it routes a container to the cluster"

# the next `telepresence connect`: the name already exists
out=$(create_network 2>&1) && fail "a second network of the same name was created: $out"
[[ $out == *"$net already exists"* ]] || fail "a duplicate network create did not say 'already exists': $out"
[[ $(docker network inspect -f '{{index .Labels "telepresence.io/teleroute/daemon"}}' "$net") == "$daemon_id" ]] ||
  fail "the network lacks the daemon label"
disconnected=$(docker network inspect -f '{{range $id, $e := .Containers}}{{$id}} {{end}}' "$net")
for c in $disconnected; do
  api POST "/networks/$net/disconnect" "{\"Container\":\"$c\",\"Force\":true}" >/dev/null || fail "force-disconnect of $c failed"
done
api DELETE "/networks/$net" >/dev/null || fail "removing the network failed"
create_network >/dev/null || fail "recreating the network failed"
connect_daemon || fail "reconnecting the daemon with daemon=true failed"
for c in $disconnected; do # ReconnectNetwork: the daemon is connected already; the error is only logged
  api POST "/networks/$net/connect" "{\"Container\":\"$c\",\"EndpointConfig\":{}}" >/dev/null 2>&1 || true
done
reach_cluster
pass "the 'already exists' path (force-disconnect, remove, create, reconnect) leaves a working network"

# --- an intercept: the pod's mounts as volumes ---------------------------------------------------
ctr=$(e2e_name echo) # the intercepted container (TELEPRESENCE_CONTAINER)
export=$work/export
mkdir -p "$export/$ctr/var/run/secrets/kubernetes.io/serviceaccount" "$export/$ctr/tmp/data" "$export/$ctr/etc/podinfo"
echo "token-$$" >"$export/$ctr/var/run/secrets/kubernetes.io/serviceaccount/token"
echo 'app="echo"' >"$export/$ctr/etc/podinfo/labels"
chmod -R a+rwX "$export"
manifest() { (cd "$export/$ctr" && find . -path ./tmp -prune -o -type f -exec sha256sum {} + | sort); }
before=$(manifest)
# the traffic-agent's SFTP server, reached through the daemon container's address as the daemon
# forwards it: served inside the daemon container's network namespace
start_sftp() {
  mkdir -p "$work/$1"
  nsenter --net="/proc/$daemon_pid/ns/net" "$sftp" start "$export" "$work/$1" --bind 0.0.0.0
}
mounts=(/var/run/secrets/kubernetes.io /tmp/data /etc/podinfo) # paths of the pod's container
ro=(true false true)                                              # read-only mount policies
create_volumes() { # create_volumes PORT: CreateVolumes' calls
  local i opts
  for i in "${!mounts[@]}"; do
    opts="\"host\":\"$daemon_ip\",\"container\":\"$ctr\",\"port\":\"$1\",\"dir\":\"${mounts[$i]}\""
    [[ ${ro[$i]} == true ]] && opts+=',"ro":"true"'
    api POST /volumes/create "{\"Driver\":\"$tm\",\"DriverOpts\":{$opts},\"Name\":\"$ctr-$i\"}" >/dev/null ||
      fail "creating volume $ctr-$i on port $1 failed"
  done
}
for i in "${!mounts[@]}"; do on_exit docker volume rm -f "$ctr-$i"; done
run_intercepted() { # the container of `telepresence intercept --docker-run`
  local args=() i suffix
  for i in "${!mounts[@]}"; do
    suffix=""
    [[ ${ro[$i]} == true ]] && suffix=:ro
    args+=(-v "$ctr-$i:${mounts[$i]}$suffix")
  done
  docker run -d --name "$1" --network "container:$tpd" "${args[@]}" "$image" sleep 600 >/dev/null ||
    fail "the intercepted container did not start"
}
check_intercepted() { # check_intercepted CONTAINER MARK
  local got
  got=$(docker exec "$1" cat /var/run/secrets/kubernetes.io/serviceaccount/token) || fail "cannot read the token"
  [[ $got == "token-$$" ]] || fail "read '$got' for the token"
  [[ $(docker exec "$1" cat /etc/podinfo/labels) == 'app="echo"' ]] || fail "cannot read /etc/podinfo"
  docker exec "$1" sh -c "echo $2 >/tmp/data/$2.txt" || fail "cannot write to /tmp/data"
  [[ $(cat "$export/$ctr/tmp/data/$2.txt") == "$2" ]] || fail "the write did not reach the pod"
  ! docker exec "$1" sh -c 'echo x >/etc/podinfo/x' 2>/dev/null || fail "a read-only mount took a write"
}
port1=$(start_sftp sftp1)
on_exit "$sftp" stop "$work/sftp1"
create_volumes "$port1"
app1=$(e2e_name app)
on_exit docker rm -f "$app1"
run_intercepted "$app1"
check_intercepted "$app1" first
pass "the intercept's volumes (ro and rw on one port, absolute dirs) serve the container"

# an abnormal end: the container and the forward die; the volumes stay behind
docker rm -f "$app1" >/dev/null
"$sftp" stop "$work/sftp1" >/dev/null
# (listed, not inspected: an inspect is a Get, which lets go of them once the linger time is over)
docker volume ls -q | grep -qx "$ctr-0" || fail "the volumes should still exist after an abnormal end"

# the next intercept: the same names against a new port
port2=$(start_sftp sftp2)
on_exit "$sftp" stop "$work/sftp2"
[[ $port2 != "$port1" ]] || fail "the next intercept got the same port"
create_volumes "$port2"
for i in "${!mounts[@]}"; do
  [[ $(docker volume inspect -f '{{.Status.port}}' "$ctr-$i") == "$port2" ]] ||
    fail "$ctr-$i still points at port $(docker volume inspect -f '{{.Status.port}}' "$ctr-$i"), not $port2"
done
app2=$(e2e_name app)
on_exit docker rm -f "$app2"
run_intercepted "$app2"
check_intercepted "$app2" second
docker rm -f "$app2" >/dev/null
for i in "${!mounts[@]}"; do docker volume rm "$ctr-$i" >/dev/null || fail "RemoveVolumes: $ctr-$i"; done
pass "after an abnormal end the next intercept reuses the names on its new port and reads and writes as before"

# --- the Compose file of an intercept handler --------------------------------------------------
project=$(e2e_name tpc)
compose_file() { # compose_file PORT
  cat >"$work/compose.yml" <<EOF
version: "3.4"
services:
  app:
    image: $image
    network_mode: container:$tpd
    command: ["sh", "-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/token && echo \$\$0 >/tmp/data/compose-\$\$0.txt", "$1"]
    volumes:
      - secrets:/var/run/secrets/kubernetes.io:ro
      - data:/tmp/data
volumes:
  secrets:
    name: $ctr-0
    driver: $tm
    driver_opts:
      host: $daemon_ip
      container: $ctr
      port: "$1"
      dir: /var/run/secrets/kubernetes.io
      ro: "true"
  data:
    name: $ctr-1
    driver: $tm
    driver_opts:
      host: $daemon_ip
      container: $ctr
      port: "$1"
      dir: /tmp/data
EOF
}
compose() { with_deadline 300 docker-compose -p "$project" -f "$work/compose.yml" "$@"; }
on_exit sh -c "docker-compose -p '$project' -f '$work/compose.yml' down --volumes >/dev/null 2>&1 || true"
port3=$(start_sftp sftp3)
on_exit "$sftp" stop "$work/sftp3"
compose_file "$port3"
out=$(compose up --exit-code-from app 2>&1) || fail "docker-compose up failed: $out"
[[ $out == *"token-$$"* ]] || fail "the Compose service did not read the token: $out"
[[ $(cat "$export/$ctr/tmp/data/compose-$port3.txt") == "$port3" ]] || fail "the Compose service's write did not reach the pod"
compose down --volumes >/dev/null 2>&1 || fail "docker-compose down --volumes failed"
! docker volume inspect "$ctr-0" >/dev/null 2>&1 || fail "down --volumes left $ctr-0"
"$sftp" stop "$work/sftp3" >/dev/null
port4=$(start_sftp sftp4)
on_exit "$sftp" stop "$work/sftp4"
compose_file "$port4"
out=$(compose up --exit-code-from app 2>&1) || fail "the second docker-compose up failed: $out"
[[ $(cat "$export/$ctr/tmp/data/compose-$port4.txt") == "$port4" ]] || fail "the second Compose run's write did not reach the pod"
compose down --volumes >/dev/null 2>&1 || fail "the second docker-compose down --volumes failed"
pass "the intercept handler's Compose file: up, down --volumes, and up again on a new port"

[[ $(manifest) == "$before" ]] || fail "the pod's read-only files changed: $(diff <(echo "$before") <(manifest))"
pass "nothing but the intercepted container's own writes changed the pod's files"
