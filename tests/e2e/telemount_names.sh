#!/usr/bin/env bash
# telemount lets go of a volume that no container holds once its server has been silent for
# longer than DISCONNECTED_LINGER_TIME, so that Telepresence's next intercept can create the same
# name against a new port; and it never lets go of a volume in use or whose server answers.
#
# Facts from Telepresence's client and from moby that this test relies on:
# - volumes are named "<container>-<i>" (i from 0 in each intercept) with the options host,
#   container, port, dir (the mount's absolute path) and ro=true on read-only paths; the same
#   names come back with a new port in the next intercept (telepresence
#   pkg/client/docker/volume.go: CreateVolumes, VolumeDriverOpts);
# - Docker asks the driver's Get before it creates a volume and reuses a volume the driver still
#   knows without passing the new options; when the name is recorded for another driver (an older
#   plugin: Telepresence installs each tag as a plugin named by its full reference), it asks that
#   driver's Get and refuses with "driver '<old>' already has volume '<name>'" while it answers
#   (moby volume/service/store.go: create, checkConflict).
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
peer=$SOURCE_DIR/tests/peers/sftp-export
linger=2

work=$(mktemp -d /tmp/tm-names.XXXXXX)
on_exit rm -rf "$work"
secrets=$work/export/echo/var/run/secrets/kubernetes.io/serviceaccount
mkdir -p "$secrets"
echo "token-$$" >"$secrets/token"
chmod -R a+rwX "$work/export"
manifest() { file_manifest "$work/export"; }
before=$(manifest)

start_peer() { mkdir -p "$work/$1" && "$peer" start "$work/export" "$work/$1"; }
stop_peer() { "$peer" stop "$work/$1" >/dev/null; }

a=$(e2e_name telemount-a)
b=$(e2e_name telemount-b)
# Docker refuses a second plugin made of the very same layer: b gets a copy with one file more
cp -a "$BUILD_DIR/plugins/telemount" "$work/plugin-b"
echo "$b" >"$work/plugin-b/rootfs/etc/plugin-instance"
dirs=("$BUILD_DIR/plugins/telemount" "$work/plugin-b")
for p in "$a" "$b"; do
  plugin_install_local "$p" "${dirs[0]}" DEBUG=true DISCONNECTED_LINGER_TIME=${linger}s \
    HEALTH_CHECK_INTERVAL=1s HEALTH_CHECK_TIMEOUT=2s LOG_FILE=/var/log/telemount.log
  on_exit sh -c "echo '--- $p log (tail)'; tail -n 25 '$(plugin_file "$p" /var/log/telemount.log)'"
  dirs=("${dirs[@]:1}")
done

ctr=$(e2e_name echo) # the intercepted container's name: volumes are <ctr>-0, <ctr>-1, ...
vol=$ctr-0
on_exit docker volume rm -f "$vol"
create() { # create DRIVER PORT: the client's exact options for the pod's service-account token
  docker volume create -d "$1" -o host=127.0.0.1 -o container=echo -o port="$2" \
    -o dir=/var/run/secrets/kubernetes.io -o ro=true "$vol" >/dev/null
}
read_token() { with_deadline 60 docker run --rm -v "$vol:/var/run/secrets/kubernetes.io:ro" "$image" \
  cat /var/run/secrets/kubernetes.io/serviceaccount/token; }
port_of() { docker volume inspect -f '{{.Status.port}}' "$vol"; }

# --- a volume in use survives an outage longer than the linger time
port1=$(start_peer peer1)
on_exit "$peer" stop "$work/peer1"
create "$a" "$port1"
[ "$(read_token)" = "token-$$" ] || fail "the first intercept cannot read the token"
holder=$(e2e_name holder)
docker run -d --name "$holder" -v "$vol:/s:ro" "$image" sleep 600 >/dev/null
on_exit docker rm -f "$holder"
stop_peer peer1
sleep $((linger * 2))
[ "$(docker volume inspect -f '{{.Name}}' "$vol")" = "$vol" ] || fail "a volume in use was let go"
[ "$(port_of)" = "$port1" ] || fail "a volume in use changed its port"
pass "a volume a container holds is kept through an outage longer than DISCONNECTED_LINGER_TIME"

# --- the next intercept: the same name against a new port (the old server gone for good)
docker rm -f "$holder" >/dev/null
port2=$(start_peer peer2)
on_exit "$peer" stop "$work/peer2"
create "$a" "$port2"
[ "$(port_of)" = "$port2" ] || fail "the next intercept's create kept the old port $(port_of), not $port2"
[ "$(read_token)" = "token-$$" ] || fail "the next intercept cannot read through the new port"
pass "once nobody holds it and its server is silent for longer than the linger time, the name takes the new port"

# --- a volume whose server answers is kept: plugin restart, and a Get while nobody holds it
with_deadline 30 docker plugin disable -f "$a" >/dev/null
with_deadline 30 docker plugin enable "$a" >/dev/null
sleep $((linger + 1))
[ "$(port_of)" = "$port2" ] || fail "a volume whose server answers was let go after a plugin restart"
[ "$(read_token)" = "token-$$" ] || fail "cannot read after the plugin restart"
pass "a volume whose server answers is kept across docker plugin disable/enable"

# --- a name held by another (older) plugin: refused while its server answers, freed once it is gone
expect_fail_with "already has volume" create "$b" "$port2"
stop_peer peer2
port3=$(start_peer peer3)
on_exit "$peer" stop "$work/peer3"
create "$b" "$port3" # Docker asks plugin a's Get, which waits out the linger time and lets go
[ "$(docker volume inspect -f '{{.Driver}}' "$vol")" = "$b:latest" ] ||
  fail "the name was not taken over by the newer plugin: $(docker volume inspect "$vol")"
[ "$(port_of)" = "$port3" ] || fail "the newer plugin's volume has port $(port_of), not $port3"
[ "$(read_token)" = "token-$$" ] || fail "cannot read through the newer plugin"
pass "an older plugin lets go of the name once its server is gone; the newer plugin takes it"

docker volume rm "$vol" >/dev/null
[ "$(manifest)" = "$before" ] || fail "the export changed: $(diff <(echo "$before") <(manifest))"
pass "letting go touched nothing remote: the export is unchanged"
