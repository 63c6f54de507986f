#pragma once
/// \file
/// `storewatch doctor`: checks what a store's gateway needs for storewatch to
/// work — the config, the database, the daemon behind the control socket, the
/// broker, the clock and the disk — and says for each problem what to do
/// about it, as commands a technician can type. Needs no daemon; asks it when
/// it runs. docs/DOCTOR.md has the checks, the exit codes and the JSON shape.
///
/// Defined in doctor.cpp (the report, the config check, run_doctor),
/// doctor_database.cpp, doctor_daemon.cpp (the control socket),
/// doctor_broker.cpp (reach, TLS, anonymous access) and doctor_host.cpp (the
/// clock and the disk); what they share is in doctor_internal.h.

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace storewatch::cli {

enum class CheckStatus { ok, warn, fail, skip };
std::string_view to_string(CheckStatus s);

/// One check's verdict.
struct DoctorCheck {
  std::string name;  ///< config|database|daemon|broker|broker_auth|clock|disk
  CheckStatus status = CheckStatus::ok;
  std::string summary;                             ///< one line: what was found
  std::vector<std::string> details;                ///< more lines: diagnostics, figures
  std::vector<std::string> fix;                    ///< what to do, commands first
  nlohmann::json data = nlohmann::json::object();  ///< the figures behind it

  nlohmann::json to_json() const;
};

struct DoctorReport {
  std::string config_file;
  std::vector<DoctorCheck> checks;

  /// 0 when no check failed (warnings and skips included), else 1.
  int exit_code() const;
  /// {"ok","config","checks":[…],"counts":{"ok","warn","fail","skip"}}.
  nlohmann::json to_json() const;
  /// The human report: one line per check, then its details and fixes.
  std::string render(bool colour) const;
};

struct DoctorOptions {
  std::filesystem::path config;
  std::optional<std::filesystem::path> conf_dir;
  /// For each network step (socket answer, broker connect, TLS handshake).
  std::chrono::milliseconds timeout = std::chrono::seconds(3);
};

/// Runs every check in order. Checks that need a config that loads are
/// skipped when it does not.
DoctorReport run_doctor(const DoctorOptions& options);

// The checks one by one (tests call them directly).

DoctorCheck check_config(const std::filesystem::path& file,
                         const config::Loaded<config::Config>& loaded);
/// `db_bytes` receives the database's size on disk (file, WAL and shm).
DoctorCheck check_database(const config::Config& cfg, std::int64_t* db_bytes = nullptr);
/// `live` receives the daemon's `status` document when it answers.
DoctorCheck check_daemon(const config::Config& cfg, std::chrono::milliseconds timeout,
                         std::optional<nlohmann::json>* live = nullptr);
/// From the daemon's sync status when `live` is set, else a direct TCP (and
/// TLS for ssl:// and wss://) reachability check of the broker.
DoctorCheck check_broker(const config::Config& cfg, const nlohmann::json* live,
                         std::chrono::milliseconds timeout);
/// Connects to the broker as an anonymous client — no username, password or
/// client certificate, a client id of its own — and warns when the broker
/// lets it in: then anyone who reaches the broker can publish as any store
/// and command every store (docs/SYNC.md, "Who may publish what"). Refused:
/// ok. Not reachable at all: skip (the broker check says why).
DoctorCheck check_broker_auth(const config::Config& cfg, std::chrono::milliseconds timeout);
/// With the config's `system` probes of check = "clock"; else "not checked"
/// and why, with the kernel's view of NTP synchronisation.
DoctorCheck check_clock(const config::Config& cfg);
DoctorCheck check_disk(const config::Config& cfg, std::int64_t db_bytes);

/// A broker URI taken apart (the config has validated it).
struct BrokerAddress {
  std::string scheme;  ///< tcp|ssl|ws|wss
  std::string host;    ///< without brackets
  int port = 0;        ///< the scheme's default when the URI has none
  bool tls = false;
};
std::optional<BrokerAddress> broker_address(std::string_view uri);

/// Free space verdict: fail under 64 MiB (or 1,000 inodes), warn under 10 %
/// or under what the database may still grow to (`headroom`).
CheckStatus disk_status(std::uint64_t free_bytes, std::uint64_t total_bytes,
                        std::uint64_t free_inodes, std::uint64_t total_inodes,
                        std::uint64_t headroom);

/// "1.2 MB", "512 KB", "3 B".
std::string human_bytes(std::uint64_t bytes);

}  // namespace storewatch::cli
