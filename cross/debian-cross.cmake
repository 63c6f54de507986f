# Shared by the toolchain files: the target's libraries come either from Debian
# multiarch (LIB:ARCH installed on this machine, in /usr/lib/TRIPLET) or from a
# sysroot (-DCMAKE_SYSROOT=DIR, a directory holding the target's packages
# unpacked; cross/build.sh --sysroot makes one). The including file sets
# STOREWATCH_CROSS_TRIPLET and STOREWATCH_CROSS_QEMU first.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${STOREWATCH_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${STOREWATCH_CROSS_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${STOREWATCH_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
if(CMAKE_SYSROOT)
  # Headers, libraries and CMake packages come from the sysroot only, so
  # nothing of this machine's architecture slips in; the compiler gets
  # --sysroot, so its libc and libstdc++ are the sysroot's too.
  set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
  set(ENV{PKG_CONFIG_SYSROOT_DIR} ${CMAKE_SYSROOT})
  # qemu-user looks up the loader and the libraries under -L first and
  # falls back to / (mosquitto's port files, /etc, /tmp ...).
  set(storewatch_qemu_root ${CMAKE_SYSROOT})
else()
  # Multiarch libraries live in /usr/lib/TRIPLET, which `-L /` finds; with
  # -L /usr/TRIPLET (the cross compiler's own libc) the MQTT tests hang.
  set(storewatch_qemu_root /)
endif()
set(CMAKE_CROSSCOMPILING_EMULATOR ${STOREWATCH_CROSS_QEMU};-L;${storewatch_qemu_root})
# The target's .pc files, under the sysroot or this machine's / (multiarch).
set(ENV{PKG_CONFIG_LIBDIR}
    ${CMAKE_SYSROOT}/usr/lib/${STOREWATCH_CROSS_TRIPLET}/pkgconfig:${CMAKE_SYSROOT}/usr/share/pkgconfig)
