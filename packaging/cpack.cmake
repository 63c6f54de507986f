# The .deb (issue 7): `cpack -G DEB` in a build configured with
# -DCMAKE_INSTALL_PREFIX=/usr (cross/build.sh does both) makes
# storewatch_VERSION_DEBARCH.deb from the install rules' components runtime
# (the binary) and system (units, sysusers/tmpfiles snippets, polkit rule,
# /etc/storewatch/storewatch.toml, docs). Maintainer scripts and conffiles
# are in packaging/debian/.

# The Debian architecture of what was built, not of this machine.
if(CMAKE_LIBRARY_ARCHITECTURE MATCHES "^aarch64")
  set(STOREWATCH_DEB_ARCH arm64)
elseif(CMAKE_LIBRARY_ARCHITECTURE MATCHES "^arm-linux-gnueabihf")
  set(STOREWATCH_DEB_ARCH armhf)
elseif(CMAKE_LIBRARY_ARCHITECTURE MATCHES "^x86_64")
  set(STOREWATCH_DEB_ARCH amd64)
else()
  execute_process(COMMAND dpkg --print-architecture OUTPUT_VARIABLE STOREWATCH_DEB_ARCH
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME storewatch)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "storewatch maintainers <storewatch@example.com>")
set(CPACK_PACKAGE_VENDOR "storewatch")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "store monitoring agent for retail gateways")
set(CPACK_PACKAGE_DESCRIPTION
    "storewatch probes a retail store's POS lanes, payment terminals, receipt\n\
printers, network and gateway; opens incidents locally in SQLite and syncs\n\
every incident event to headquarters over MQTT. The package holds the agent\n\
(storewatch.service, enabled but not started on first install: edit\n\
/etc/storewatch/storewatch.toml first) and the HQ side (storewatch-hq.service,\n\
not enabled).")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_COMPONENTS_ALL runtime system)
set(CPACK_DEB_COMPONENT_INSTALL OFF)
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_FILE_NAME "storewatch_${PROJECT_VERSION}_${STOREWATCH_DEB_ARCH}.deb")
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "${STOREWATCH_DEB_ARCH}")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.com/storewatch")
# Depends: dpkg-shlibdeps on the binary (libpaho, libsqlite3, libcurl, libfmt,
# libsystemd, libstdc++, libc ...). Cross, it reads the shlibs/symbols files of
# the target architecture's libraries (installed as LIB:ARCH) and the
# triplet's objdump: DEB_HOST_ARCH tells it which (set in cpack_options.cmake).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
if(CMAKE_SYSROOT)
  # Built against a sysroot (cross/build.sh --sysroot): the libraries are
  # there, not installed, and the sysroot's DEBIAN/ holds their packages'
  # symbols and shlibs files, which dpkg-shlibdeps reads for a library it
  # finds below it.
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS
      "${CMAKE_SYSROOT}/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}"
      "${CMAKE_SYSROOT}/lib/${CMAKE_LIBRARY_ARCHITECTURE}")
endif()
# The maintainer scripts use systemd-sysusers, systemd-tmpfiles and
# deb-systemd-helper when they are there, and useradd/install otherwise, so
# nothing beyond the libraries is a hard dependency (init-system-helpers,
# deb-systemd-helper's package, is essential).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd, polkitd")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "monitoring-plugins-basic")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_CURRENT_LIST_DIR}/debian/conffiles"
    "${CMAKE_CURRENT_LIST_DIR}/debian/postinst"
    "${CMAKE_CURRENT_LIST_DIR}/debian/prerm"
    "${CMAKE_CURRENT_LIST_DIR}/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# The changelog and copyright Debian wants in /usr/share/doc/storewatch.
string(TIMESTAMP STOREWATCH_CHANGELOG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
configure_file("${CMAKE_CURRENT_LIST_DIR}/debian/changelog.in"
               "${PROJECT_BINARY_DIR}/packaging/changelog" @ONLY)
execute_process(COMMAND gzip -9nf "${PROJECT_BINARY_DIR}/packaging/changelog")
install(FILES "${PROJECT_BINARY_DIR}/packaging/changelog.gz"
              "${CMAKE_CURRENT_LIST_DIR}/debian/copyright"
        DESTINATION "${CMAKE_INSTALL_DOCDIR}" COMPONENT system)

# Checked when cpack runs (the units name the configured prefix's paths).
set(STOREWATCH_CPACK_PREFIX "${CMAKE_INSTALL_PREFIX}")
configure_file("${CMAKE_CURRENT_LIST_DIR}/cpack_options.cmake.in"
               "${PROJECT_BINARY_DIR}/cpack_options.cmake" @ONLY)
set(CPACK_PROJECT_CONFIG_FILE "${PROJECT_BINARY_DIR}/cpack_options.cmake")

include(CPack)
