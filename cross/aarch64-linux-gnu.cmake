# Cross-compile for 64-bit ARM store gateways. With Debian multiarch:
#   dpkg --add-architecture arm64 && apt-get install g++-aarch64-linux-gnu qemu-user pkgconf:arm64 …:arm64
# or against a sysroot with -DCMAKE_SYSROOT=DIR (cross/build.sh does either).
# Tests run under qemu-user through CMAKE_CROSSCOMPILING_EMULATOR.
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(STOREWATCH_CROSS_TRIPLET aarch64-linux-gnu)
set(STOREWATCH_CROSS_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
