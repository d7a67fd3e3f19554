# shellcheck shell=bash
# Helpers for end-to-end test scripts. Source it after `set -euo pipefail`:
#   source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
# It installs an EXIT trap (and INT/TERM/HUP traps that exit through it) which runs the
# commands registered with on_exit in reverse order. Do not set your own EXIT trap.
#
#   e2e_name PREFIX                 print a unique lowercase docker-safe name
#   on_exit CMD [ARG...]            register a cleanup command (run even on failure)
#   fail MSG...                     print "FAIL: MSG" to stderr and exit 1
#   pass MSG...                     print "ok: MSG"
#   expect_fail_with SUBSTR CMD...  CMD must fail and its output must contain SUBSTR
#   plugin_install_local NAME DIR [K=V...]  docker plugin create, set, enable; removed on exit
#   plugin_file NAME PATH           print the host path of PATH inside the plugin's rootfs
#   plugin_socket NAME SOCKNAME     print /run/docker/plugins/<plugin ID>/<SOCKNAME>
#   with_deadline SECONDS CMD...    run CMD (an external command, not a function) under timeout
#   file_manifest DIR               print a sorted sha256sum line for every file below DIR: two
#                                   equal manifests mean nothing below DIR changed
#   http_get ADDRESS                GET / on port 80 with nc (pass into containers with declare -f)
#   remove_network NET              disconnect what is attached and remove NET, if it exists
#   daemon_peer_start CTR STATE [OPTION...]  the Teleroute daemon peer in container CTR's network
#                                   namespace (port 4039, state STATE, log STATE.log); stopped on exit
# fail exits the current (sub)shell only: inside $(...) it cannot end the test.

_e2e_ncleanups=0

e2e_name() {
  (($# == 1)) || fail "usage: e2e_name PREFIX"
  local prefix=${1,,}
  prefix=${prefix//[^a-z0-9_.-]/-}
  printf '%s-%d-%04x%04x\n' "$prefix" "$$" "$RANDOM" "$RANDOM"
}

# Each command is kept in its own global array _e2e_cleanup_<n> (no string quoting, no eval).
on_exit() {
  (($# >= 1)) || fail "usage: on_exit CMD [ARG...]"
  declare -ga "_e2e_cleanup_$_e2e_ncleanups"
  local -n _e2e_new="_e2e_cleanup_$_e2e_ncleanups"
  _e2e_new=("$@")
  _e2e_ncleanups=$((_e2e_ncleanups + 1))
}

_e2e_run_cleanups() {
  local rc=$? i
  set +e
  for ((i = _e2e_ncleanups - 1; i >= 0; i--)); do
    local -n _e2e_cmd="_e2e_cleanup_$i"
    "${_e2e_cmd[@]}" || echo "cleanup failed (ignored): ${_e2e_cmd[*]}" >&2
    unset -n _e2e_cmd
  done
  _e2e_ncleanups=0
  exit "$rc"
}
trap _e2e_run_cleanups EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

pass() {
  printf 'ok: %s\n' "$*"
}

expect_fail_with() {
  (($# >= 2)) || fail "usage: expect_fail_with SUBSTRING CMD [ARG...]"
  local want=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  printf 'got (exit %d) from %s: %s\n' "$rc" "$*" "$out"
  ((rc != 0)) || fail "expected '$*' to fail with '$want', but it succeeded"
  [[ $out == *"$want"* ]] || fail "expected the output of '$*' to contain '$want'"
}

plugin_install_local() {
  (($# >= 2)) || fail "usage: plugin_install_local NAME DIR [SETTING=VALUE...]"
  local name=$1 dir=$2
  shift 2
  docker plugin create "$name" "$dir" >/dev/null || fail "docker plugin create $name $dir failed"
  on_exit _e2e_plugin_rm "$name"
  if (($# > 0)); then
    docker plugin set "$name" "$@" || fail "docker plugin set $name $* failed"
  fi
  docker plugin enable "$name" >/dev/null || fail "docker plugin enable $name failed"
}

# A test may remove its plugin itself; only what is left is removed at exit.
_e2e_plugin_rm() {
  if docker plugin inspect "$1" >/dev/null 2>&1; then
    docker plugin rm -f "$1" >/dev/null
  fi
}

plugin_file() {
  (($# == 2)) || fail "usage: plugin_file NAME PATH"
  local id
  id=$(docker plugin inspect -f '{{.Id}}' "$1") || fail "docker plugin inspect $1 failed"
  printf '/var/lib/docker/plugins/%s/rootfs%s\n' "$id" "$2"
}

plugin_socket() {
  (($# == 2)) || fail "usage: plugin_socket NAME SOCKNAME"
  local id
  id=$(docker plugin inspect -f '{{.Id}}' "$1") || fail "docker plugin inspect $1 failed"
  printf '/run/docker/plugins/%s/%s\n' "$id" "$2"
}

file_manifest() {
  (($# == 1)) || fail "usage: file_manifest DIR"
  (cd "$1" && find . -type f -exec sha256sum {} + | sort)
}

with_deadline() {
  (($# >= 2)) || fail "usage: with_deadline SECONDS CMD [ARG...]"
  local secs=$1 rc=0
  shift
  timeout --kill-after=5 "$secs" "$@" || rc=$?
  ((rc != 124 && rc != 137)) || echo "deadline of ${secs}s exceeded (timed out or killed): $*" >&2
  return "$rc"
}

# busybox wget crashes on this kernel; nc is enough for the peers' one-line HTTP answers
http_get() {
  printf 'GET / HTTP/1.0\r\n\r\n' | nc "$1" 80
}

# Retries while Docker is still finishing the endpoints of containers that were just removed.
remove_network() {
  (($# == 1)) || fail "usage: remove_network NET"
  local n=$1 c
  docker network inspect "$n" >/dev/null 2>&1 || return 0
  for c in $(docker network inspect -f '{{range $id, $e := .Containers}}{{$id}} {{end}}' "$n"); do
    docker network disconnect -f "$n" "$c" || true
  done
  for _ in 1 2 3 4 5; do
    docker network rm "$n" >/dev/null 2>&1 && return 0
    sleep 1
  done
  docker network rm "$n"
}

daemon_peer_start() {
  (($# >= 2)) || fail "usage: daemon_peer_start CONTAINER STATE_DIR [OPTION...]"
  local ctr=$1 state=$2 peer=$SOURCE_DIR/tests/peers/teleroute-daemon/run
  shift 2
  mkdir -p "$state"
  setsid "$peer" --netns-pid "$(docker inspect -f '{{.State.Pid}}' "$ctr")" --state "$state" --port 4039 "$@" \
    </dev/null >"$state.log" 2>&1 &
  on_exit "$peer" stop --state "$state"
  for _ in $(seq 100); do [ -e "$state/ready" ] && return 0; sleep 0.1; done
  fail "the daemon peer in $ctr did not start: $(tail -5 "$state.log")"
}
