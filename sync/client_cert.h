#pragma once
/// \file
/// The store's TLS material on disk: checking that a set of files can be
/// used before a connection relies on them (SIGHUP), and reading the client
/// certificate's expiry for the warning weeks before it runs out.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"

namespace storewatch::sync {

/// What the agent knows of one certificate file.
struct CertInfo {
  std::filesystem::path file;
  std::string subject;  ///< one line, e.g. "CN=store-0042"
  WallTime not_after{};
};

/// Reads the first certificate of a PEM file (the leaf of a chain).
Result<CertInfo> read_cert(const std::filesystem::path& file);

/// Whole days from `now` until `not_after`, rounded down: 0 on its last day,
/// negative once it has expired.
std::int64_t days_left(WallTime not_after, WallTime now);

/// Why a certificate expiring at `info.not_after` needs attention at `now`
/// with a warning window of `warn_days` (0 = never warn), or nullopt.
std::optional<std::string> expiry_problem(const CertInfo& info, int warn_days, WallTime now);

/// Checks that the [sync] TLS files and password file of `broker` can be
/// used as they are now on disk: the CA file parses, the certificate and key
/// load and belong together, the password file reads. Only the files that
/// are set are checked. The error names the file and the reason.
Status check_tls_files(const config::BrokerConfig& broker);

/// "sha256:…" of the contents of the TLS files and password file (what a
/// reload compares to tell whether anything changed).
std::string tls_files_digest(const config::BrokerConfig& broker);

}  // namespace storewatch::sync
