#!/usr/bin/env bash
# Distribution: rootfs-build/publish pushes both plugins for amd64 and arm64 to a real registry
# (Debian's docker-registry on loopback) with exactly the tags Telepresence looks for; then both
# are installed as Telepresence does (full reference, no alias, the reference as the driver) and
# as the README does (--alias); the arm64 plugins run under qemu-user with arm64 containers.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?}" "${ARM64_BUILD_DIR:?}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
image_arm64=teleplug-test/busybox:arm64
peer=$SOURCE_DIR/tests/peers/teleroute-daemon/run
work=$(mktemp -d /tmp/registry-e2e.XXXXXX)
on_exit rm -rf "$work"
version=$(sed -n 's/^version=//p' "$BUILD_DIR/plugins/release")
[[ -n $version ]] || fail "no version in $BUILD_DIR/plugins/release"

"$SOURCE_DIR/tests/env/test-image" --arch arm64 "$image_arm64" >/dev/null
registry=$("$SOURCE_DIR/tests/env/registry" start "$work/registry")
on_exit "$SOURCE_DIR/tests/env/registry" stop "$work/registry"
ns=$(e2e_name tp)
dest=$registry/$ns

# --- publish ----------------------------------------------------------------------------------
expect_fail_with "is not a registry" "$SOURCE_DIR/rootfs-build/publish" "$ns/x"
expect_fail_with "namespace part 'Bad'" "$SOURCE_DIR/rootfs-build/publish" "$registry/Bad"
expect_fail_with "--arch must be amd64, arm64 or all" "$SOURCE_DIR/rootfs-build/publish" "$dest" --arch x86
[[ $(curl -fsS "http://$registry/v2/_catalog") == '{"repositories":[]}' ]] || fail "a refused publish pushed something"
pass "publish refuses malformed destinations and pushes nothing"

out=$(with_deadline 600 "$SOURCE_DIR/rootfs-build/publish" "$dest" --arch all \
  --amd64-dir "$BUILD_DIR/plugins" --arm64-dir "$ARM64_BUILD_DIR/plugins" 2>&1) || fail "publish failed: $out"
echo "$out"
for p in telemount teleroute; do
  tags=$(curl -fsS "http://$registry/v2/$ns/$p/tags/list" | python3 -c 'import json,sys; print(" ".join(sorted(json.load(sys.stdin)["tags"])))')
  want="amd64 amd64-$version arm64 arm64-$version latest"
  [[ $tags == "$want" ]] || fail "$p has the tags '$tags', expected '$want'"
  [[ $out == *"pushed $dest/$p:arm64-$version"* ]] || fail "publish did not print what it pushed"
done
! docker plugin ls --format '{{.Name}}' | grep -qF "$dest/" ||
  fail "publish left local copies of the plugins"
pass "publish pushed telemount and teleroute with the tags amd64-$version, amd64, arm64-$version, arm64, latest"

# Telepresence sends ro=true only to a volume plugin whose reference carries a version of at least
# 0.1.6 after its last '-'; below that it drops ro=true with a warning and read-only mounts become
# writable (telepresence pkg/client/docker/volume.go: VolumeDriverOpts, parsePluginSemver; the tag
# is parsed strictly by github.com/blang/semver/v4, and a tag that does not parse keeps ro=true).
client_version() { # the version the client reads from a plugin reference, or "none"
  python3 - "$1" <<'PY'
import re, sys
ref = sys.argv[1]
i = ref.rfind("-")
m = re.fullmatch(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(\+[0-9A-Za-z.-]+)?", ref[i + 1:]) if i > 0 else None
print(".".join(m.groups()[:3]) if m else "none")
PY
}
for a in amd64 arm64; do
  ref=$dest/telemount:$a-$version
  got=$(client_version "$ref")
  [[ $got == "$version" ]] || fail "Telepresence reads the version '$got' from $ref, not $version"
  python3 -c 'import sys; v = tuple(map(int, sys.argv[1].split("."))); sys.exit(0 if v >= (0, 1, 6) else 1)' "$got" ||
    fail "Telepresence would drop ro=true for $ref: its version $got is below 0.1.6"
done
pass "Telepresence reads version $version (>= 0.1.6) from the published references and keeps ro=true"

# published sizes: the compressed layers of each manifest
size_of() {
  curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$registry/v2/$ns/$1/manifests/$2" | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))'
}
for a in amd64 arm64; do
  echo "published size, $a: telemount $(size_of telemount "$a-$version") bytes, teleroute $(size_of teleroute "$a-$version") bytes (compressed layers)"
done

# --- shared peers: an SFTP export with a pod's files, and a Teleroute daemon ------------------
mkdir -p "$work/export/pod/var/run/secrets/kubernetes.io/serviceaccount" "$work/sftp"
echo "token-$$" >"$work/export/pod/var/run/secrets/kubernetes.io/serviceaccount/token"
sftp_port=$("$SOURCE_DIR/tests/peers/sftp-export" start "$work/export" "$work/sftp")
on_exit "$SOURCE_DIR/tests/peers/sftp-export" stop "$work/sftp"

tpd=$(e2e_name tp-daemon)
docker run -d --name "$tpd" "$image" sleep 3600 >/dev/null
on_exit remove_container "$tpd"
daemon_peer_start "$tpd" "$work/daemon"
daemon_ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$tpd")

# remove_container NAME: NAME goes, if it is still there (cleanup)
remove_container() {
  docker rm -f "$1" >/dev/null 2>&1 || true
}

# plugin_install REF [--alias NAME] [SETTING=VALUE...]: docker plugin install as a user does; removed at exit
plugin_install() {
  local ref=$1 name=$1
  shift
  local args=(--grant-all-permissions)
  if [[ ${1:-} == --alias ]]; then
    args+=(--alias "$2")
    name=$2
    shift 2
  fi
  with_deadline 300 docker plugin install "${args[@]}" "$ref" "$@" >/dev/null || fail "docker plugin install $ref failed"
  on_exit _e2e_plugin_rm "$name"
  [[ $(docker plugin inspect -f '{{.Enabled}}' "$name") == true ]] || fail "$name is not enabled after install"
}

# remove_volume VOL: VOL goes, if it is still there (cleanup)
remove_volume() {
  docker volume inspect "$1" >/dev/null 2>&1 || return 0
  docker volume rm -f "$1" >/dev/null
}

# read_through_volume DRIVER IMAGE: a volume of the pod's secrets, read in a container; sets
# `machine` to what the container's uname -m said. (Not for $(...): its cleanups would be lost.)
read_through_volume() {
  local vol out
  vol=$(e2e_name vol)
  docker volume create -d "$1" -o host=127.0.0.1 -o port="$sftp_port" -o container=pod \
    -o dir=var/run/secrets/kubernetes.io "$vol" >/dev/null || fail "docker volume create -d $1 failed"
  on_exit remove_volume "$vol"
  out=$(with_deadline 120 docker run --rm -v "$vol:/var/run/secrets/kubernetes.io" "$2" \
    sh -c 'uname -m; cat /var/run/secrets/kubernetes.io/serviceaccount/token' 2>"$work/stderr") ||
    fail "reading through $1 failed: $out $(cat "$work/stderr")"
  [[ $out == *"token-$$"* ]] || fail "the container did not read the pod's token through $1: $out"
  docker volume rm "$vol" >/dev/null || fail "docker volume rm $vol failed"
  machine=$(head -1 <<<"$out")
}

# follows_routes NET IMAGE: a running client's routes take a subnet the daemon adds later
follows_routes() {
  local client routes
  client=$(e2e_name client)
  docker run -d --name "$client" --network "$1" "$2" sleep 600 >/dev/null
  on_exit remove_container "$client"
  "$peer" add-cluster-addr --state "$work/daemon" 10.250.0.7/16 >/dev/null
  "$peer" set-routes --state "$work/daemon" --ipv4 10.96.0.0/16,10.250.0.0/16 >/dev/null
  for _ in $(seq 120); do
    routes=$(docker exec "$client" ip route)
    [[ $routes == *"10.250.0.0/16 via"* ]] && break
    sleep 0.5
  done
  [[ $routes == *"10.250.0.0/16 via"* ]] || fail "the client's routes were not refreshed: $routes"
  docker rm -f "$client" >/dev/null
}

# reach_cluster DRIVER IMAGE [refresh]: a network of DRIVER with the daemon, a client reaching
# the service; with refresh, also a running client's routes following the daemon's. Sets
# `machine` to what the client's uname -m said.
reach_cluster() {
  local net out
  net=$(e2e_name net)
  docker network create -d "$1" --internal -o host="$daemon_ip" "$net" >/dev/null || fail "docker network create -d $1 failed"
  on_exit remove_network "$net"
  docker network connect --driver-opt daemon=true "$net" "$tpd" || fail "the daemon could not join $net"
  out=$(with_deadline 120 docker run --rm --network "$net" "$2" sh -c "uname -m; $(declare -f http_get); http_get 10.96.0.10" \
    2>"$work/stderr") || fail "the client on $1 failed: $out $(cat "$work/stderr")"
  [[ $out == *"hello from the cluster"* ]] || fail "the client on $1 did not reach the cluster service: $out"
  [[ ${3:-} != refresh ]] || follows_routes "$net" "$2"
  docker network disconnect "$net" "$tpd" || fail "the daemon could not leave $net"
  docker network rm "$net" >/dev/null || fail "docker network rm $net failed"
  machine=$(head -1 <<<"$out")
}

# --- as Telepresence does: the full reference is the plugin's name and the driver -------------
for p in telemount teleroute; do plugin_install "$dest/$p:amd64-$version"; done
read_through_volume "$dest/telemount:amd64-$version" "$image"
pass "telemount installed from $dest/telemount:amd64-$version reads the pod's files ($machine)"
reach_cluster "$dest/teleroute:amd64-$version" "$image"
pass "teleroute installed from $dest/teleroute:amd64-$version reaches the cluster ($machine)"
for p in telemount teleroute; do docker plugin rm -f "$dest/$p:amd64-$version" >/dev/null; done

# --- as the README does: an alias ------------------------------------------------------------
tm=$(e2e_name telemount)
tr=$(e2e_name teleroute)
plugin_install "$dest/telemount" --alias "$tm"
plugin_install "$dest/teleroute:amd64" --alias "$tr"
read_through_volume "$tm" "$image"
reach_cluster "$tr:latest" "$image"
pass "docker plugin install --alias: $dest/telemount (latest) and $dest/teleroute:amd64 work by their aliases"
docker plugin rm -f "$tm" "$tr" >/dev/null

# --- arm64, under qemu-user emulation ---------------------------------------------------------
plugin_install "$dest/telemount:arm64-$version"
read_through_volume "$dest/telemount:arm64-$version" "$image_arm64"
[[ $machine == aarch64 ]] || fail "the arm64 container reported the machine '$machine'"
pass "the arm64 telemount reads the pod's files into an arm64 container, under emulation"
plugin_install "$dest/teleroute:arm64-$version" ROUTE_REFRESH_INTERVAL=1s
reach_cluster "$dest/teleroute:arm64-$version" "$image_arm64" refresh
[[ $machine == aarch64 ]] || fail "the arm64 client reported the machine '$machine'"
pass "the arm64 teleroute routes arm64 containers to the cluster and refreshes their routes, under emulation"

# --- upgrading in place, the README's way, with a volume and a network in use -----------------
# The next version: the same build with a marker file, published under version $version-next.
next=$version-next
mkdir -p "$work/next"
cp -a "$BUILD_DIR/plugins/telemount" "$BUILD_DIR/plugins/teleroute" "$work/next/"
printf 'version=%s\narch=amd64\n' "$next" >"$work/next/release"
for p in telemount teleroute; do echo "$next" >"$work/next/$p/rootfs/.upgrade-test"; done
with_deadline 300 "$SOURCE_DIR/rootfs-build/publish" "$dest" --arch amd64 --amd64-dir "$work/next" >/dev/null ||
  fail "publishing $next failed"

tm=$(e2e_name telemount)
tr=$(e2e_name teleroute)
plugin_install "$dest/telemount:amd64-$version" --alias "$tm"
plugin_install "$dest/teleroute:amd64-$version" --alias "$tr"
vol=$(e2e_name vol)
docker volume create -d "$tm" -o host=127.0.0.1 -o port="$sftp_port" -o container=pod \
  -o dir=var/run/secrets/kubernetes.io "$vol" >/dev/null
on_exit remove_volume "$vol"
net=$(e2e_name net)
docker network create -d "$tr:latest" --internal -o host="$daemon_ip" "$net" >/dev/null
on_exit remove_network "$net"
docker network connect --driver-opt daemon=true "$net" "$tpd"
app=$(e2e_name app)
docker run -d --name "$app" -v "$vol:/secrets" "$image" sh -c 'cat /secrets/serviceaccount/token; sleep 600' >/dev/null
on_exit remove_container "$app"
for _ in $(seq 100); do [[ $(docker logs "$app" 2>&1) == *"token-$$"* ]] && break; sleep 0.2; done
[[ $(docker logs "$app" 2>&1) == *"token-$$"* ]] || fail "the app did not read its volume: $(docker logs "$app" 2>&1)"

# upgrade NAME REPOSITORY: what the README says, after the plugin's users are stopped
upgrade() {
  local id
  id=$(docker plugin inspect -f '{{.Id}}' "$1")
  with_deadline 60 docker plugin disable -f "$1" >/dev/null || fail "docker plugin disable -f $1 failed"
  with_deadline 300 docker plugin upgrade --grant-all-permissions --skip-remote-check "$1" "$dest/$2:amd64-$next" \
    >/dev/null </dev/null || fail "docker plugin upgrade $1 failed"
  with_deadline 60 docker plugin enable "$1" >/dev/null || fail "docker plugin enable $1 failed"
  [[ $(docker plugin inspect -f '{{.PluginReference}}' "$1") == "$dest/$2:amd64-$next" ]] ||
    fail "$1 was not upgraded: $(docker plugin inspect -f '{{.PluginReference}}' "$1")"
  [[ $(cat "$(plugin_file "$1" /.upgrade-test)") == "$next" ]] || fail "$1 does not run the new rootfs"
  [[ $(docker plugin inspect -f '{{.Id}}' "$1") == "$id" ]] || fail "the upgrade changed the ID of $1"
}

# telemount: stop the containers that use its volumes; the volumes stay
expect_fail_with "must be disabled before upgrading" \
  docker plugin upgrade --grant-all-permissions --skip-remote-check "$tm" "$dest/telemount:amd64-$next"
docker stop -t 1 "$app" >/dev/null
upgrade "$tm" telemount
docker volume inspect -f '{{.Driver}} {{.Status.remoteDir}}' "$vol" | grep -q "^$tm:latest " ||
  fail "the volume is not known after the upgrade: $(docker volume inspect "$vol" 2>&1)"
docker start "$app" >/dev/null || fail "the app did not start again after the upgrade"
for _ in $(seq 100); do (($(docker logs "$app" 2>&1 | grep -c "token-$$") >= 2)) && break; sleep 0.2; done
(($(docker logs "$app" 2>&1 | grep -c "token-$$") == 2)) ||
  fail "after the upgrade the app did not read its volume again: $(docker logs "$app" 2>&1)"
pass "telemount upgraded in place ($version -> $next): same plugin, the volume kept, its container runs again"

# teleroute: its networks go before the upgrade and are made again after it
expect_fail_with "is in use" docker plugin disable "$tr"
remove_network "$net"
upgrade "$tr" teleroute
reach_cluster "$tr:latest" "$image"
pass "teleroute upgraded in place ($version -> $next) after its network was removed; a new network reaches the cluster"
