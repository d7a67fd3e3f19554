#!/usr/bin/env bash
# The footprint goals of issue 14, for the plugin directories of both architectures: each rootfs
# holds at most 6 MB (10^6 bytes, apparent sizes), no GnuTLS or other library the plugins do not
# use (Debian's libmicrohttpd would bring 6.7 MB of it; cmake/static-deps.cmake builds one without
# HTTPS), telemount's binary needs only glibc (its other libraries are linked in) and teleroute
# is one statically linked file. The plugins' memory is measured by bench/ (bench/RESULTS.md).
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
: "${BUILD_DIR:?}" "${ARM64_BUILD_DIR:?}"
max_bytes=6000000
export LC_ALL=C

needed() { readelf -dW -- "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' | sort | tr '\n' ' '; }

for dir in "$BUILD_DIR/plugins" "$ARM64_BUILD_DIR/plugins"; do
  arch=$(sed -n 's/^arch=//p' "$dir/release")
  [[ -n $arch ]] || fail "no arch in $dir/release"
  for p in telemount teleroute; do
    rootfs=$dir/$p/rootfs
    [[ -x $rootfs/usr/bin/$p ]] || fail "$rootfs/usr/bin/$p is missing"
    bytes=$(du -s --apparent-size -B1 -- "$rootfs" | cut -f1)
    ((bytes <= max_bytes)) || fail "$p ($arch): rootfs holds $bytes bytes, more than $max_bytes:
$(cd "$rootfs" && find . -type f -printf '%s %p\n' | sort -rn | head -12)"
    extra=$(cd "$rootfs" && find . -name 'libgnutls*' -o -name 'libp11-kit*' -o -name 'libunistring*' \
      -o -name 'libmicrohttpd*' -o -name 'libjansson*' -o -name 'libnl-*' -o -name 'libnghttp2*' \
      -o -name 'libprotobuf-c*')
    [[ -z $extra ]] || fail "$p ($arch): rootfs carries libraries that are linked in or unused: $extra"
    pass "$p ($arch): rootfs $bytes bytes (<= $max_bytes), no GnuTLS, no shared copy of a linked-in library"
  done
  # (on arm64 the dynamic loader is named too: it holds __stack_chk_guard, the stack protector's canary)
  got=$(needed "$dir/telemount/rootfs/usr/bin/telemount")
  [[ ${got/ld-linux-aarch64.so.1 /} == 'libc.so.6 ' ]] || fail "telemount ($arch) needs '$got', expected only libc.so.6"
  for f in sshfs fusermount3; do [[ -x $dir/telemount/rootfs/usr/bin/$f ]] || fail "telemount ($arch) lacks $f"; done
  tr_bin=$dir/teleroute/rootfs/usr/bin/teleroute
  interp=$(readelf -lW -- "$tr_bin" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')
  [[ -z $interp ]] || fail "teleroute ($arch) is not statically linked: its ELF interpreter is $interp"
  [[ -z $(needed "$tr_bin") ]] || fail "teleroute ($arch) needs shared libraries: $(needed "$tr_bin")"
  files=$(cd "$dir/teleroute/rootfs" && find usr -type f | sort | tr '\n' ' ')
  [[ $files == 'usr/bin/teleroute ' ]] || fail "teleroute ($arch) rootfs holds more programs than its own: $files"
  pass "telemount ($arch) needs only libc.so.6; teleroute ($arch) is one static binary"
done
