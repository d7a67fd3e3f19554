#!/usr/bin/env bash
# Dockerfile.telemount builds offline against a locally made Debian base image (no registry);
# the image's filesystem, with the same config.json, becomes a plugin that mounts a volume.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?BUILD_DIR must name the build directory}" "${SOURCE_DIR:?}"
image=teleplug-test/busybox:latest
work=$(mktemp -d /tmp/dockerfile-e2e.XXXXXX)
on_exit rm -rf "$work"

base=teleplug-test/debian:bookworm
"$SOURCE_DIR/tests/env/debian-image" "$base"
tag=$(e2e_name teleplug-test/telemount-rootfs)
# The legacy builder reads ARG before FROM and needs no buildx plugin. The build stage gets a tag
# too, so that removing both tags also removes the intermediate layers.
on_exit docker image rm -f "$tag" "$tag-build"
for target in build ""; do
  DOCKER_BUILDKIT=0 with_deadline 1200 docker build -q -f "$SOURCE_DIR/Dockerfile.telemount" \
    --build-arg BASE="$base" ${target:+--target "$target"} -t "$tag${target:+-$target}" "$SOURCE_DIR" \
    >"$work/build.log" 2>&1 || fail "docker build failed: $(tail -30 "$work/build.log")"
done
pass "Dockerfile.telemount builds against a local base image"

id=$(docker create "$tag")
on_exit docker rm -f "$id"
mkdir -p "$work/plugin/rootfs"
docker export "$id" | tar -x -C "$work/plugin/rootfs"
cp "$BUILD_DIR/plugin-config/telemount.json" "$work/plugin/config.json"
for f in usr/bin/telemount usr/bin/sshfs usr/bin/fusermount3; do
  [ -x "$work/plugin/rootfs/$f" ] || fail "the image lacks /$f"
done
size=$(du -sh "$work/plugin/rootfs" | cut -f1)
tm=$(e2e_name telemount-docker)
plugin_install_local "$tm" "$work/plugin"

mkdir -p "$work/export/echo-easy/config" "$work/sftp"
echo "from-dockerfile-$$" >"$work/export/echo-easy/config/app.conf"
port=$("$SOURCE_DIR/tests/peers/sftp-export" start "$work/export" "$work/sftp")
on_exit "$SOURCE_DIR/tests/peers/sftp-export" stop "$work/sftp"
vol=$(e2e_name tm-docker)
docker volume create -d "$tm" -o container=echo-easy -o port="$port" -o host=127.0.0.1 "$vol" >/dev/null ||
  fail "volume create failed with the Dockerfile-built plugin"
on_exit docker volume rm -f "$vol"
got=$(with_deadline 60 docker run --rm -v "$vol:/app" "$image" cat /app/config/app.conf)
[ "$got" = "from-dockerfile-$$" ] || fail "read through the Dockerfile-built plugin gave '$got'"
pass "the image's filesystem ($size) with the same config.json is a working plugin"
