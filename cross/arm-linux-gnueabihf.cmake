# Cross-compile for 32-bit ARM (armhf, hard float) store gateways. With Debian
# multiarch (dpkg --add-architecture armhf, …:armhf) or against a sysroot with
# -DCMAKE_SYSROOT=DIR (cross/build.sh does either).
# Tests run under qemu-user through CMAKE_CROSSCOMPILING_EMULATOR.
set(CMAKE_SYSTEM_PROCESSOR arm)
set(STOREWATCH_CROSS_TRIPLET arm-linux-gnueabihf)
set(STOREWATCH_CROSS_QEMU qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
# g++ notes every std::vector<…> of a 64-bit aligned element that it passes
# differently from GCC before 7.1 (-Wpsabi): everything here is built by one
# compiler, so the notes say nothing.
set(CMAKE_CXX_FLAGS_INIT -Wno-psabi)
