# Cross-compile for 64-bit ARM store gateways with Debian multiarch:
#   dpkg --add-architecture arm64 && apt-get install g++-aarch64-linux-gnu qemu-user pkgconf:arm64 …:arm64
# Tests run under qemu-user through CMAKE_CROSSCOMPILING_EMULATOR
# (`-L /`: with -L /usr/aarch64-linux-gnu the MQTT tests hang).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;/)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
