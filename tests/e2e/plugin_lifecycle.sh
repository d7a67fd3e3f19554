#!/usr/bin/env bash
# Both plugin directories are accepted by `docker plugin create`, enable, register their drivers
# with Docker, answer on their sockets, and disable and remove cleanly.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}"

tm=$(e2e_name tm-e2e)
tr=$(e2e_name tr-e2e)
plugin_install_local "$tm" "$BUILD_DIR/plugins/telemount" DEBUG=true LOG_FILE=/var/log/telemount.log
plugin_install_local "$tr" "$BUILD_DIR/plugins/teleroute"

for p in "$tm" "$tr"; do
  [ "$(docker plugin inspect -f '{{.Enabled}}' "$p")" = true ] || fail "$p is not enabled"
done
pass "both plugins created and enabled"

tm_sock=$(plugin_socket "$tm" telemount.sock)
tr_sock=$(plugin_socket "$tr" teleroute.sock)
reply=$(curl -sS --max-time 10 --unix-socket "$tm_sock" -X POST http://plugin/Plugin.Activate)
[[ $reply == *'"VolumeDriver"'* ]] || fail "telemount Activate answered: $reply"
reply=$(curl -sS --max-time 10 --unix-socket "$tr_sock" -X POST http://plugin/NetworkDriver.GetCapabilities)
[[ $reply == *'"Scope":"local"'* ]] || fail "teleroute GetCapabilities answered: $reply"
reply=$(curl -sS --max-time 10 --unix-socket "$tm_sock" -X POST -d '[1]' http://plugin/VolumeDriver.List)
[[ $reply == *'"Err":'*'must be a JSON object'* ]] || fail "a bad body got: $reply"
pass "sockets answer"

# Docker registers a network driver when the plugin answers GetCapabilities at enable; volume
# drivers are consulted lazily, so the plugin's own debug log shows that `volume ls` reached it.
drivers=$(docker info --format '{{json .Plugins.Network}}')
[[ $drivers == *"\"$tr:latest\""* ]] || fail "$tr is not a registered network driver: $drivers"
out=$(docker volume ls 2>&1) || fail "docker volume ls failed: $out"
[[ $out != *"$tm"* ]] || fail "docker volume ls warned about the plugin: $out"
log=$(plugin_file "$tm" /var/log/telemount.log)
grep -q 'debug: POST /VolumeDriver.List -> 200' "$log" || fail "docker volume ls did not reach $tm: $(cat "$log")"
out=$(docker network ls 2>&1) || fail "docker network ls failed: $out"
pass "drivers registered; docker volume ls and network ls work"

for p in "$tm" "$tr"; do
  id=$(docker plugin inspect -f '{{.Id}}' "$p")
  with_deadline 30 docker plugin disable "$p" >/dev/null
  [ "$(docker plugin inspect -f '{{.Enabled}}' "$p")" = false ] || fail "$p is still enabled"
  [ ! -e "/run/docker/plugins/$id" ] || fail "the socket directory of $p outlived it"
  with_deadline 30 docker plugin rm "$p" >/dev/null
  ! docker plugin inspect "$p" >/dev/null 2>&1 || fail "$p still exists after rm"
done
pass "both plugins disabled and removed"
