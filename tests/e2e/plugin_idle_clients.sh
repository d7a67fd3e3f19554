#!/usr/bin/env bash
# Issue 13, finding 3: 600 connections to a plugin's socket that send nothing (half of them stop
# in the middle of their headers) cost the plugin no thread, and Docker's calls are still
# answered while they stay open. Before, the plugin ran a thread per connection, took at most
# 512, and refused every later call: 600 such clients grew it to 515 threads.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}"
n_idle=600

tm=$(e2e_name tm-idle)
plugin_install_local "$tm" "$BUILD_DIR/plugins/telemount" DEBUG=true LOG_FILE=/var/log/telemount.log
sock=$(plugin_socket "$tm" telemount.sock)
id=$(docker plugin inspect -f '{{.Id}}' "$tm")
# the plugin's process, as the runtime Docker gives its plugins knows it
pid=$(runc --root /run/docker/runtime-runc/plugins.moby state "$id" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])') || fail "no process for $tm"
threads() { awk '/^Threads:/ {print $2}' "/proc/$pid/status"; }
before=$(threads)

# The idle clients: one process holding the connections until its stdin closes (at most 300 s).
dir=$(mktemp -d)
on_exit rm -rf "$dir"
mkfifo "$dir/ready" "$dir/hold"
cat >"$dir/clients.py" <<'PY'
import select, socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
held = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    deadline = time.monotonic() + 10
    while True:  # a full listen backlog refuses a connect with a timeout at once: wait for room
        try:
            s.connect(path)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if i % 2:
        s.sendall(b"POST /VolumeDriver.List HTTP/1.1\r\nHost:")
    held.append(s)
print(len(held), flush=True)
select.select([sys.stdin], [], [], 300)
PY
python3 "$dir/clients.py" "$sock" "$n_idle" >"$dir/ready" <"$dir/hold" &
clients=$!
stop_clients() { kill "$clients" 2>/dev/null || true; }
on_exit stop_clients
exec {hold}<>"$dir/hold" # read-write: opening it does not wait for the reader
read -r -t 60 opened <"$dir/ready" || fail "the idle clients did not connect"
[ "$opened" = "$n_idle" ] || fail "only $opened idle clients connected"
pass "$n_idle idle connections open to $tm"

log=$(plugin_file "$tm" /var/log/telemount.log)
lists=$(grep -c 'debug: POST /VolumeDriver.List -> 200' "$log" || true)
out=$(with_deadline 60 docker volume ls 2>&1) || fail "docker volume ls failed: $out"
[[ $out != *"$tm"* ]] || fail "docker volume ls warned about the plugin: $out"
now=$(grep -c 'debug: POST /VolumeDriver.List -> 200' "$log" || true)
((now > lists)) || fail "docker volume ls did not reach $tm: $(tail -5 "$log")"
reply=$(curl -sS --max-time 10 --unix-socket "$sock" -X POST -d '{}' http://plugin/VolumeDriver.Capabilities)
[[ $reply == *'"Scope":"local"'* ]] || fail "Capabilities answered: $reply"
pass "Docker's calls are answered while they stay open"

during=$(threads)
# a thread per connection would be hundreds; the plugin's own threads are a handful
((during < before + 16)) || fail "$tm runs $during threads with $n_idle idle connections, $before before"
pass "$tm runs $during threads with $n_idle idle connections open ($before before)"

exec {hold}>&-
wait "$clients" || true
with_deadline 30 docker plugin disable "$tm" >/dev/null
pass "$tm disabled"
