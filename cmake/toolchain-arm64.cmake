# Cross-compiling for arm64 (aarch64) on an amd64 Debian with its multiarch toolchain:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-arm64.cmake
# Needs crossbuild-essential-arm64 and the -dev packages of architecture arm64
# (tests/install-deps --arm64). Unit tests run under qemu-user (qemu-user-static).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_STRIP aarch64-linux-gnu-strip)
# Debian's multiarch: arm64 libraries and .pc files live beside the host's, under the triplet
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
# Tests run with the multiarch libc6:arm64 under / (ld.so and libc.so.6 from one package).
# Not -L /usr/aarch64-linux-gnu: that mixes the cross toolchain's ld.so (libc6-arm64-cross) with
# the multiarch libc.so.6 found through ld.so's search path, and when their versions differ
# (2.36-8 against 2.36-9+deb12u14 here) pthread_create spins forever in its stack cache.
find_program(QEMU_AARCH64 qemu-aarch64-static)
if(QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${QEMU_AARCH64} -L /)
endif()
set(PLUGIN_ARCH arm64)
