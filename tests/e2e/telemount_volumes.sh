#!/usr/bin/env bash
# telemount against the real Docker engine and a real SFTP export (sftp-server on TCP):
# reads, writes, read-only volumes, one sshfs per export, every bad option, a killed and a
# frozen server, a plugin restart, and 20 containers mounting at once.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
peer=$SOURCE_DIR/tests/peers/sftp-export

work=$(mktemp -d /tmp/tm-e2e.XXXXXX)
on_exit rm -rf "$work"
mkdir -p "$work/export/echo-easy/var/run/secrets/kubernetes.io/serviceaccount" "$work/export/echo-easy/config"
echo "token-$$" >"$work/export/echo-easy/var/run/secrets/kubernetes.io/serviceaccount/token"
echo "greeting=hello" >"$work/export/echo-easy/config/app.conf"
chmod -R a+rwX "$work/export"

start_peer() { # start_peer STATE [PORT]
  mkdir -p "$1"
  if (($# > 1)); then "$peer" start "$work/export" "$1" --port "$2"; else "$peer" start "$work/export" "$1"; fi
}
port=$(start_peer "$work/peer1")
on_exit "$peer" stop "$work/peer1"
port2=$(start_peer "$work/peer2")
on_exit "$peer" stop "$work/peer2"

tm=$(e2e_name telemount)
plugin_install_local "$tm" "$BUILD_DIR/plugins/telemount" DEBUG=true LOG_FILE=/var/log/telemount.log \
  HEALTH_CHECK_INTERVAL=2s HEALTH_CHECK_TIMEOUT=2s
log=$(plugin_file "$tm" /var/log/telemount.log)
on_exit sh -c "echo '--- plugin log (tail)'; tail -n 40 '$log'"

volumes=()
new_volume() { # new_volume NAME OPT... : creates it and registers its removal
  local name=$1
  shift
  local args=()
  for o in "$@"; do args+=(-o "$o"); done
  docker volume create -d "$tm" "${args[@]}" "$name" >/dev/null || fail "creating $name ($*) failed"
  volumes+=("$name")
  on_exit docker volume rm -f "$name"
}
sshfs_count() { pgrep -c -f -- "-o directport=$1 " || true; }

# --- read, write, read-only
v1=$(e2e_name tm-secrets)
new_volume "$v1" container=echo-easy port="$port" host=127.0.0.1 dir=var/run/secrets/kubernetes.io
got=$(with_deadline 60 docker run --rm -v "$v1:/secrets" "$image" cat /secrets/serviceaccount/token)
[ "$got" = "token-$$" ] || fail "read through the volume gave '$got'"
pass "a container reads the pod's file through the volume"

v2=$(e2e_name tm-rw)
new_volume "$v2" container=echo-easy port="$port" host=127.0.0.1
with_deadline 60 docker run --rm -v "$v2:/app" "$image" sh -c 'echo written-by-container >/app/config/new.txt'
[ "$(cat "$work/export/echo-easy/config/new.txt")" = written-by-container ] || fail "the write did not reach the export"
pass "a write through a writable volume reaches the export"

[ "$(sshfs_count "$port")" = 1 ] || fail "two volumes of one export should share one sshfs: $(pgrep -a sshfs)"
pass "two volumes of one export share one sshfs"

# the kernel's readahead of the mount is raised to READ_AHEAD_KB (default 1024) from its 128 KiB
mnt=/var/lib/docker/plugins/$(docker plugin inspect -f '{{.Id}}' "$tm")/propagated-mount/127.0.0.1/$port
dev=$(awk -v p="$mnt" '$5 == p { d = $3 } END { print d }' /proc/self/mountinfo)
[ -n "$dev" ] || fail "no mount at $mnt"
[ "$(cat "/sys/class/bdi/$dev/read_ahead_kb")" = 1024 ] ||
  fail "the mount's readahead is $(cat "/sys/class/bdi/$dev/read_ahead_kb") KiB, not 1024"
pass "the mount reads ahead 1024 KiB"

v3=$(e2e_name tm-ro)
new_volume "$v3" container=echo-easy port="$port2" host=127.0.0.1 ro=true
if with_deadline 60 docker run --rm -v "$v3:/app" "$image" sh -c 'echo x >/app/config/ro.txt' 2>/dev/null; then
  fail "a write to a read-only volume succeeded"
fi
[ ! -e "$work/export/echo-easy/config/ro.txt" ] || fail "a read-only volume changed the export"
got=$(with_deadline 60 docker run --rm -v "$v3:/app" "$image" cat /app/config/app.conf)
[ "$got" = greeting=hello ] || fail "read-only volume read gave '$got'"
pass "a read-only volume refuses writes"

# Telepresence makes one volume per mount path, all on one host:port, with ro=true only on the
# read-only ones (telepresence pkg/client/docker/volume.go: CreateVolumes, VolumeDriverOpts).
v3w=$(e2e_name tm-rw-beside-ro)
new_volume "$v3w" container=echo-easy port="$port2" host=127.0.0.1 dir=config
with_deadline 60 docker run --rm -v "$v3w:/c" "$image" sh -c 'echo beside-ro >/c/beside.txt'
[ "$(cat "$work/export/echo-easy/config/beside.txt")" = beside-ro ] || fail "the writable volume beside a read-only one did not write"
if with_deadline 60 docker run --rm -v "$v3:/app" "$image" sh -c 'echo x >/app/config/ro2.txt' 2>/dev/null; then
  fail "the read-only volume became writable beside a writable one"
fi
[ ! -e "$work/export/echo-easy/config/ro2.txt" ] || fail "the read-only volume changed the export"
ro_mnt=/var/lib/docker/plugins/$(docker plugin inspect -f '{{.Id}}' "$tm")/propagated-mount/127.0.0.1/$port2-ro
ro_opts=$(awk -v p="$ro_mnt" '$5 == p { print $6 }' /proc/self/mountinfo)
[[ ,$ro_opts, == *,ro,* ]] || fail "the read-only export is not a read-only mount: '$ro_opts' at $ro_mnt"
[ "$(sshfs_count "$port2")" = 2 ] || fail "a read-only and a writable export of one port should be two sshfs: $(pgrep -a sshfs)"
docker volume rm "$v3w" >/dev/null
pass "read-only and writable volumes of one host:port coexist; the read-only one is a read-only mount"

# IPv6: Debian's sshfs cannot use directport with IPv6, so the plugin dials and uses slave mode
port6=$(mkdir -p "$work/peer6" && "$peer" start "$work/export" "$work/peer6" --bind ::1)
on_exit "$peer" stop "$work/peer6"
v6=$(e2e_name tm-ipv6)
new_volume "$v6" container=echo-easy port="$port6" host=::1 dir=config
got=$(with_deadline 60 docker run --rm -v "$v6:/c" "$image" cat /c/app.conf)
[ "$got" = greeting=hello ] || fail "read through an IPv6 volume gave '$got'"
# sshfs 3.7.3 dials IPv4 only with directport, so it dials the plugin's loopback relay
pgrep -f -- "-o directport=[0-9]+ 127.0.0.1:/tel_app_exports /mnt/volumes/__1/$port6\$" >/dev/null ||
  fail "the IPv6 mount does not go through the plugin's relay: $(pgrep -a sshfs)"
docker volume rm "$v6" >/dev/null
pass "an IPv6 host is mounted through the plugin's relay"

# For an IPv6-only daemon network Telepresence sends the daemon's IPv4 address IPv4-mapped
# (telepresence pkg/client/docker/teleroute/network.go: netip.AddrFrom16); it is the IPv4 address,
# reached with directport, so hosts booted without IPv6 work too.
vm=$(e2e_name tm-mapped)
new_volume "$vm" container=echo-easy port="$port" host=::ffff:127.0.0.1 dir=config
got=$(with_deadline 60 docker run --rm -v "$vm:/c" "$image" cat /c/app.conf)
[ "$got" = greeting=hello ] || fail "read through an IPv4-mapped host gave '$got'"
[ "$(docker volume inspect -f '{{.Status.host}}' "$vm")" = 127.0.0.1 ] || fail "the IPv4-mapped host was not taken as 127.0.0.1"
pgrep -f -- "-o directport=$port 127.0.0.1:/tel_app_exports" >/dev/null || fail "the IPv4-mapped host is not mounted over IPv4"
docker volume rm "$vm" >/dev/null
pass "an IPv4-mapped host (::ffff:127.0.0.1) is its IPv4 address"

# Docker skips Create when Get knows the name, so ask the plugin directly
sock=$(plugin_socket "$tm" telemount.sock)
reply=$(curl -sS --max-time 30 --unix-socket "$sock" -X POST http://plugin/VolumeDriver.Create \
  -d "{\"Name\":\"$v1\",\"Opts\":{\"container\":\"echo-easy\",\"port\":\"$port\",\"host\":\"127.0.0.1\"}}")
[[ $reply == *"already exists with other options"* ]] || fail "a create with other options answered: $reply"
reply=$(curl -sS --max-time 30 --unix-socket "$sock" -X POST http://plugin/VolumeDriver.Create \
  -d "{\"Name\":\"$v1\",\"Opts\":{\"container\":\"echo-easy\",\"port\":\"$port\",\"host\":\"127.0.0.1\",\"dir\":\"var/run/secrets/kubernetes.io\"}}")
[ "$reply" = "{}" ] || fail "a repeated create with the same options answered: $reply"
pass "create is idempotent with the same options and refused with others"

info=$(docker volume inspect "$v1")
for want in '"host": "127.0.0.1"' "\"port\": $port" '"remoteDir": "/tel_app_exports/echo-easy/var/run/secrets/kubernetes.io"' '"state": "mounted"'; do
  [[ $info == *"$want"* ]] || fail "docker volume inspect lacks $want: $info"
done
pass "docker volume inspect shows host, port, remoteDir and state"

# --- bad options: refused with the option named, and nothing is left behind
before=$(docker volume ls -q | sort)
bad() { # bad MESSAGE OPT...
  local msg=$1
  shift
  local args=()
  for o in "$@"; do args+=(-o "$o"); done
  expect_fail_with "$msg" docker volume create -d "$tm" "${args[@]}" "$(e2e_name tm-bad)" >/dev/null
}
bad 'option "container" is required' port="$port"
bad 'option "port" is required' container=echo-easy
bad 'option "port": "70000" is not a port number' container=echo-easy port=70000
bad 'option "ro": "maybe" is not a boolean' container=echo-easy port="$port" ro=maybe
bad 'unknown option "ssh_command"' container=echo-easy port="$port" ssh_command=sh
bad 'option "container"' container=../.. port="$port"
bad 'option "dir"' container=echo-easy dir=../../.. port="$port"
bad 'option "host"' container=echo-easy port="$port" host=-oProxyCommand=sh
bad '/tel_app_exports/no-such-container does not exist' container=no-such-container port="$port" host=127.0.0.1
free_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bad "cannot connect to 127.0.0.1:$free_port: Connection refused" container=echo-easy port="$free_port" host=127.0.0.1
expect_fail_with 'volume name' docker volume create -d "$tm" -o container=echo-easy -o port="$port" ".bad-name" >/dev/null
after=$(docker volume ls -q | sort)
[ "$before" = "$after" ] || fail "a refused create left a volume behind: $(comm -13 <(echo "$before") <(echo "$after"))"
pass "every bad option is refused with its name, leaving no volume"

# --- removing the last volume of an export stops its sshfs
docker volume rm "$v1" "$v2" >/dev/null
[ "$(sshfs_count "$port")" = 0 ] || fail "sshfs of port $port still runs after its last volume went: $(pgrep -a sshfs)"
[ "$(cat "$work/export/echo-easy/var/run/secrets/kubernetes.io/serviceaccount/token")" = "token-$$" ] ||
  fail "removing volumes changed the export"
pass "removing the last volume stops its sshfs and leaves the export intact"

# --- a server that dies, and one that freezes: readers get an error, never hang
v4=$(e2e_name tm-outage)
new_volume "$v4" container=echo-easy port="$port" host=127.0.0.1
reader=$(e2e_name tm-reader)
docker run -d --name "$reader" -v "$v4:/app" "$image" sleep 600 >/dev/null
on_exit docker rm -f "$reader"
docker exec "$reader" cat /app/config/app.conf >/dev/null || fail "the long-running container cannot read"
"$peer" stop "$work/peer1" >/dev/null
rc=0
with_deadline 60 docker exec "$reader" cat /app/config/app.conf >/dev/null 2>&1 || rc=$?
((rc != 0 && rc != 124 && rc != 137)) || fail "a read after the server died gave exit $rc (0 = stale success, 124 = hang)"
start_peer "$work/peer1" "$port" >/dev/null
got=$(with_deadline 60 docker run --rm -v "$v4:/app" "$image" cat /app/config/app.conf)
[ "$got" = greeting=hello ] || fail "after the server came back a new container read '$got'"
pass "a killed server gives readers an error; a new container reads again once it is back"

docker rm -f "$reader" >/dev/null
docker run -d --name "$reader" -v "$v4:/app" "$image" sleep 600 >/dev/null
docker exec "$reader" cat /app/config/app.conf >/dev/null || fail "cannot read before the freeze"
# a file the mount has never seen, so no cache can answer for the frozen server
echo fresh >"$work/export/echo-easy/config/fresh.txt"
"$peer" freeze "$work/peer1"
rc=0
with_deadline 60 docker exec "$reader" cat /app/config/fresh.txt >/dev/null 2>&1 || rc=$?
state=$(docker volume inspect -f '{{.Status.state}}' "$v4")
"$peer" thaw "$work/peer1"
((rc != 0 && rc != 124 && rc != 137)) || fail "a read from a frozen server gave exit $rc (124 = it hung)"
[ "$state" = reconnecting ] || fail "the frozen server was not noticed: state $state"
got=$(with_deadline 60 docker run --rm -v "$v4:/app" "$image" cat /app/config/app.conf)
[ "$got" = greeting=hello ] || fail "after the thaw a new container read '$got'"
docker rm -f "$reader" >/dev/null
pass "a frozen server is detected: readers get an error, and the volume works again after"

# --- the volumes outlive a plugin restart
with_deadline 30 docker plugin disable -f "$tm" >/dev/null
with_deadline 30 docker plugin enable "$tm" >/dev/null
docker volume ls -q | grep -qx "$v4" || fail "$v4 is gone after the plugin restarted"
got=$(with_deadline 60 docker run --rm -v "$v4:/app" "$image" cat /app/config/app.conf)
[ "$got" = greeting=hello ] || fail "after a plugin restart a new container read '$got'"
pass "volumes survive docker plugin disable -f / enable"

# --- 20 containers mounting 20 volumes at once
many=()
for i in $(seq 1 20); do
  v=$(e2e_name "tm-many$i")
  new_volume "$v" container=echo-easy port="$port" host=127.0.0.1 dir=config
  many+=("$v")
done
pids=()
for i in "${!many[@]}"; do
  with_deadline 180 docker run --rm -v "${many[$i]}:/c" "$image" cat /c/app.conf >"$work/out.$i" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { failed=$((failed + 1)); echo "container $i: $(cat "$work/out.$i")" >&2; }
done
((failed == 0)) || fail "$failed of 20 concurrent containers failed"
grep -L greeting=hello "$work"/out.* | grep -q . && fail "some containers read the wrong content"
[ "$(sshfs_count "$port")" = 1 ] || fail "20 volumes of one export should share one sshfs"
pass "20 containers mount 20 volumes concurrently"

# --- who may use the files of a container that runs as another user: by default the SFTP server
# decides (it runs as the traffic-agent); with DEFAULT_PERMISSIONS=true the kernel checks each
# file's mode and owner (the pod's numeric ids) against the container's user
echo secret >"$work/export/echo-easy/config/root-only.conf"
chmod 600 "$work/export/echo-easy/config/root-only.conf"
vp=$(e2e_name tm-perm)
new_volume "$vp" container=echo-easy port="$port" host=127.0.0.1 dir=config
got=$(with_deadline 60 docker run --rm --user 1000:1000 -v "$vp:/c" "$image" cat /c/root-only.conf)
[ "$got" = secret ] || fail "by default a non-root container should read what the server gives: '$got'"
with_deadline 30 docker plugin disable -f "$tm" >/dev/null
docker plugin set "$tm" DEFAULT_PERMISSIONS=true
with_deadline 30 docker plugin enable "$tm" >/dev/null
if with_deadline 60 docker run --rm --user 1000:1000 -v "$vp:/c" "$image" cat /c/root-only.conf >/dev/null 2>&1; then
  fail "with DEFAULT_PERMISSIONS=true a container running as uid 1000 read a root-only (0600) file"
fi
got=$(with_deadline 60 docker run --rm --user 1000:1000 -v "$vp:/c" "$image" cat /c/app.conf)
[ "$got" = greeting=hello ] || fail "with DEFAULT_PERMISSIONS=true a readable file read '$got'"
pass "DEFAULT_PERMISSIONS: off, the SFTP server decides; on, the kernel checks modes against the container's user"
