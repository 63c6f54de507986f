#pragma once
/// \file
/// Inside cli/: what the files of `storewatch doctor` share (doctor.cpp, the
/// report and the config check; doctor_database.cpp; doctor_daemon.cpp, the
/// control socket; doctor_broker.cpp, the broker and its TLS and auth;
/// doctor_host.cpp, the clock and the disk): units, the fixes they have in
/// common, and how a check writes users, files and times.

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace storewatch::cli::doctor_internal {

inline constexpr std::uint64_t kMiB = 1024 * 1024;

inline constexpr const char* kStartDaemon = "sudo systemctl start storewatch";

/// "storewatch:storewatch 0640" of a file.
std::string owner_and_mode(const struct stat& st);

/// The user running doctor.
std::string me();

/// The fix for a file the current user cannot read or reach.
std::vector<std::string> permission_fix();

/// "sudo usermod -aG storewatch dana": how the user joins the group that
/// may read storewatch's data and use its control socket (every message
/// that says so gives this one command).
std::string join_group_command();

/// "2026-11-27 11:55:07Z (3m ago)" from RFC 3339 text, as the CLI's tables show times.
std::string when(const std::string& rfc3339);

/// "1 probe", "3 probes".
std::string plural(std::size_t n, std::string_view word);

}  // namespace storewatch::cli::doctor_internal
