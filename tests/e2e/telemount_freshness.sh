#!/usr/bin/env bash
# telemount's freshness bound: a change on the server (a file rewritten with the same size, a
# file grown, a file added, a file removed) is seen by a running container once CACHE_TIMEOUT
# (default 3s) has passed since the change, although the container had read everything just
# before, so that every cache (sshfs's attributes and listings, the kernel's entries, attributes
# and pages) held the old state.
#
# The assertion is about what a read returns, never about how long anything takes: every read
# that starts after change + bound must return the new state; a slow machine only starts the
# reads later. It fails with sshfs's own default cache of 20 s (dcache_timeout), which the plugin
# used before CACHE_TIMEOUT existed.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
peer=$SOURCE_DIR/tests/peers/sftp-export
bound=3 # CACHE_TIMEOUT's default, plugin-config/telemount.json and README

work=$(mktemp -d /tmp/tm-fresh.XXXXXX)
on_exit rm -rf "$work"
conf=$work/export/app/conf
mkdir -p "$conf"
printf 'version=1\n' >"$conf/same.conf"
printf 'short\n' >"$conf/grows.conf"
printf 'doomed\n' >"$conf/gone.conf"
chmod -R a+rwX "$work/export"

mkdir -p "$work/peer"
port=$("$peer" start "$work/export" "$work/peer")
on_exit "$peer" stop "$work/peer"

tm=$(e2e_name telemount)
plugin_install_local "$tm" "$BUILD_DIR/plugins/telemount" DEBUG=true LOG_FILE=/var/log/telemount.log
log=$(plugin_file "$tm" /var/log/telemount.log)
on_exit sh -c "echo '--- plugin log (tail)'; tail -n 20 '$log'"

vol=$(e2e_name tm-fresh)
docker volume create -d "$tm" -o container=app -o port="$port" -o host=127.0.0.1 "$vol" >/dev/null ||
  fail "creating $vol failed"
on_exit docker volume rm -f "$vol"
ctr=$(e2e_name tm-fresh-reader)
with_deadline 60 docker run -d --network none --name "$ctr" -v "$vol:/app" "$image" sleep 600 >/dev/null ||
  fail "the reader container did not start"
on_exit docker rm -f "$ctr"

# sshfs runs with caches that add up to the bound: dcache_timeout=1 (+1 s of sshfs's whole
# seconds) and 1 s in the kernel (tm_sshfs.c: push_cache_opts)
args=$(pgrep -a -f -- "-o directport=$port " | head -n 1)
[[ $args == *"-o dcache_timeout=1 -o entry_timeout=1.000 -o attr_timeout=1.000"* ]] ||
  fail "sshfs does not run with the default cache options: $args"
pass "sshfs keeps attributes and listings for the bound split between sshfs and the kernel"

# what the container sees, in one docker exec: the two files, the listing
look() {
  with_deadline 60 docker exec "$ctr" sh -c \
    'cat /app/conf/same.conf /app/conf/grows.conf; ls /app/conf | tr "\n" " "; cat /app/conf/gone.conf 2>&1 || true'
}
want_old=$(printf 'version=1\nshort\ngone.conf grows.conf same.conf doomed')
got=$(look)
[[ $got == "$want_old" ]] || fail "the container sees '$got' before the change, not '$want_old'"

# SFTP gives whole-second modification times: the change must land in a later second than the
# version it replaces, or the kernel could not tell the two apart by their attributes
sleep 1.1
for _ in 1 2 3 4 5; do # fill every cache: sshfs's, the kernel's entries, attributes and pages
  got=$(look)
  [[ $got == "$want_old" ]] || fail "the container sees '$got' before the change"
done

printf 'version=2\n' >"$work/new.conf"
cat "$work/new.conf" >"$conf/same.conf" # same size, rewritten in place
printf 'a longer second version\n' >>"$conf/grows.conf"
: >"$conf/added.conf"
rm -- "$conf/gone.conf"
changed=$EPOCHREALTIME

# Reads that start before the bound may see either state; sample a few for the log.
deadline=$(awk -v t="$changed" -v b="$bound" 'BEGIN {printf "%.6f", t + b + 0.05}')
while awk -v n="$EPOCHREALTIME" -v d="$deadline" 'BEGIN {exit !(n < d)}'; do
  printf 'before the bound (+%ss): %s\n' "$(awk -v n="$EPOCHREALTIME" -v t="$changed" 'BEGIN {printf "%.2f", n - t}')" \
    "$(look | tr '\n' '|')"
  sleep 0.5
done
want_new=$(printf 'version=2\nshort\na longer second version\nadded.conf grows.conf same.conf cat: can'"'"'t open '"'"'/app/conf/gone.conf'"'"': No such file or directory')
for i in 1 2 3; do
  got=$(look)
  [[ $got == "$want_new" ]] ||
    fail "read $i, started more than ${bound}s after the change, sees '$got', not '$want_new'"
done
pass "a container sees a rewritten, a grown, an added and a removed file within ${bound}s of the change"
