# The plugins link their libraries statically (bench/RESULTS.md, "Footprint", has the figures):
#
# - libmicrohttpd is built here from Debian's source package, without HTTPS. Debian's own build
#   links GnuTLS and its seven dependencies (6.7 MB of each rootfs, half of each plugin's idle
#   RSS), which a server of plain HTTP on a Unix socket never uses. tests/install-deps fetches the
#   source (rootfs-build/debian-source); the build itself needs no network.
# - jansson, libnl-3, libnl-route-3, nghttp2 and protobuf-c come from the static archives in
#   Debian's -dev packages (lib<name>.a), for the target architecture (multiarch for arm64).
#
# Targets: teleplug::microhttpd, and teleplug_static_package(<target> <pkg-config module>...).

include(ExternalProject)

set(DEBIAN_SRC_DIR /var/cache/teleplug/debian-src CACHE PATH
    "where tests/install-deps unpacks the Debian source packages that the build compiles")
set(MHD_SOURCE_DIR ${DEBIAN_SRC_DIR}/libmicrohttpd)
if(NOT EXISTS ${MHD_SOURCE_DIR}/configure OR NOT EXISTS ${MHD_SOURCE_DIR}/.debian-source)
  message(FATAL_ERROR "Debian's libmicrohttpd source is not in ${MHD_SOURCE_DIR}: run tests/install-deps "
                      "(or rootfs-build/debian-source ${DEBIAN_SRC_DIR} libmicrohttpd)")
endif()
file(READ ${MHD_SOURCE_DIR}/.debian-source mhd_debian_version)
string(STRIP "${mhd_debian_version}" mhd_debian_version)
message(STATUS "libmicrohttpd: static, without HTTPS, from ${mhd_debian_version} in ${MHD_SOURCE_DIR}")

# configure's --host: the triplet the C compiler builds for (cross builds included)
execute_process(COMMAND ${CMAKE_C_COMPILER} -dumpmachine OUTPUT_VARIABLE mhd_host
                OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
set(mhd_prefix ${CMAKE_BINARY_DIR}/libmicrohttpd)
set(mhd_archive ${mhd_prefix}/lib/libmicrohttpd.a)
# Debian's hardening flags; position-independent code so that any executable can link it. The
# source and build paths are mapped away so that the binaries do not depend on where they lie.
set(mhd_cflags "-O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2 -ffile-prefix-map=${MHD_SOURCE_DIR}=libmicrohttpd -ffile-prefix-map=${CMAKE_BINARY_DIR}=build")
# Debian's tarball carries the generated autotools files; never regenerate them (a skewed
# timestamp would otherwise run automake, which the build does not need and may not have).
find_program(MAKE_PROGRAM NAMES gmake make REQUIRED)
set(mhd_make ${MAKE_PROGRAM} ACLOCAL=: AUTOCONF=: AUTOMAKE=: AUTOHEADER=: MAKEINFO=:)
ExternalProject_Add(libmicrohttpd_build
  SOURCE_DIR ${MHD_SOURCE_DIR}
  BINARY_DIR ${mhd_prefix}/build
  INSTALL_DIR ${mhd_prefix}
  DOWNLOAD_COMMAND ""
  UPDATE_COMMAND ""
  CONFIGURE_COMMAND <SOURCE_DIR>/configure --host=${mhd_host} --prefix=<INSTALL_DIR> --libdir=<INSTALL_DIR>/lib
                    --disable-shared --enable-static --with-pic
                    --disable-https --without-gnutls --disable-postprocessor --disable-dauth --disable-bauth
                    --disable-httpupgrade --disable-curl --disable-doc --disable-examples --disable-nls
                    --enable-silent-rules
                    CC=${CMAKE_C_COMPILER} CFLAGS=${mhd_cflags}
  # runs only after configure, whose new flags the objects must have: rebuilt from clean
  BUILD_COMMAND ${mhd_make} -C src/microhttpd clean COMMAND ${mhd_make} -C src/microhttpd
  INSTALL_COMMAND ${mhd_make} -C src/microhttpd install-libLTLIBRARIES
  BUILD_BYPRODUCTS ${mhd_archive}
  LOG_CONFIGURE ON
  LOG_BUILD ON
  LOG_INSTALL ON
  LOG_OUTPUT_ON_FAILURE ON)
# a newer Debian source (fetched into the same place) is configured and built again
ExternalProject_Add_StepDependencies(libmicrohttpd_build configure ${MHD_SOURCE_DIR}/.debian-source)
add_library(teleplug::microhttpd STATIC IMPORTED GLOBAL)
set_target_properties(teleplug::microhttpd PROPERTIES
  IMPORTED_LOCATION ${mhd_archive}
  INTERFACE_INCLUDE_DIRECTORIES ${MHD_SOURCE_DIR}/src/include
  INTERFACE_LINK_LIBRARIES Threads::Threads)
add_dependencies(teleplug::microhttpd libmicrohttpd_build)

# teleplug_static_package(TARGET MODULE...): an INTERFACE target linking the static archives of
# pkg-config MODULEs (in pkg-config's --static order), their include directories and the system
# libraries they name (pthread, m, ...) as usual.
function(teleplug_static_package target)
  string(MAKE_C_IDENTIFIER ${target} var)
  pkg_check_modules(${var} REQUIRED ${ARGN})
  set(items)
  foreach(lib IN LISTS ${var}_STATIC_LIBRARIES)
    if(lib MATCHES "^(pthread|m|dl|rt)$")
      list(APPEND items ${lib})
      continue()
    endif()
    find_library(archive NAMES lib${lib}.a HINTS ${${var}_STATIC_LIBRARY_DIRS} NO_CACHE)
    if(NOT archive)
      message(FATAL_ERROR "no static archive lib${lib}.a for pkg-config module(s) ${ARGN} "
                          "(the -dev package of this architecture ships it; tests/install-deps)")
    endif()
    list(APPEND items ${archive})
    unset(archive)
  endforeach()
  add_library(${target} INTERFACE IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES
    INTERFACE_LINK_LIBRARIES "${items}"
    INTERFACE_INCLUDE_DIRECTORIES "${${var}_STATIC_INCLUDE_DIRS}")
endfunction()
