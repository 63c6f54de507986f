// The doctor's checks of the gateway itself: the clock and the disk.
#include "cli/doctor.h"

#include <sys/statvfs.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "cli/doctor_internal.h"
#include "probes/run_once.h"

namespace storewatch::cli {

using nlohmann::json;
namespace fs = std::filesystem;
using doctor_internal::kMiB;

// --- clock -------------------------------------------------------------------

DoctorCheck check_clock(const config::Config& cfg) {
  DoctorCheck c;
  c.name = "clock";
  std::vector<const config::ProbeConfig*> clocks;
  for (const auto& p : cfg.probes) {
    if (p.type == "system" && p.has("check") && p.str("check") == "clock") clocks.push_back(&p);
  }
  const bool synced = SystemClock().wall_synced();
  c.data = json{{"kernel_synchronised", synced}, {"probes", json::array()}};
  const std::vector<std::string> sync_fix = {
      "timedatectl status   (is NTP on and synchronised?)",
      "sudo timedatectl set-ntp true; systemctl status systemd-timesyncd"};
  if (clocks.empty()) {
    c.status = synced ? CheckStatus::skip : CheckStatus::warn;
    c.summary = fmt::format(
        "skew not checked: the config has no clock probe; the kernel says the clock is {}",
        synced ? "NTP-synchronised" : "NOT synchronised");
    c.details.push_back(
        "to measure it, add: [[probe]] name = \"clock\", type = \"system\", check = \"clock\", "
        "ntp_server = \"<the store's NTP server>\"");
    if (!synced) {
      c.details.push_back("incidents opened now are flagged clock_synced = false");
      c.fix = sync_fix;
    }
    return c;
  }
  const auto results = probes::run_many(clocks, cfg.agent.max_concurrent_checks);
  CheckStatus worst = CheckStatus::ok;
  auto rank = [](CheckStatus s) { return s == CheckStatus::fail ? 2 : s == CheckStatus::warn; };
  for (std::size_t i = 0; i < clocks.size(); ++i) {
    const auto& r = results[i];
    CheckStatus s = CheckStatus::ok;
    if (r.status == probes::ProbeStatus::warn || r.status == probes::ProbeStatus::unknown) {
      s = CheckStatus::warn;
    } else if (r.status == probes::ProbeStatus::fail) {
      s = CheckStatus::fail;
    }
    if (rank(s) > rank(worst)) worst = s;
    json entry{{"probe", clocks[i]->name},
               {"status", probes::to_string(r.status)},
               {"message", r.message}};
    if (auto it = r.metrics.find("offset_ms"); it != r.metrics.end()) {
      entry["offset_ms"] = it->second;
    }
    c.data["probes"].push_back(std::move(entry));
    c.details.push_back(
        fmt::format("{}: {} {}", clocks[i]->name, probes::to_string(r.status), r.message));
  }
  c.status = worst;
  if (clocks.size() == 1) {
    c.summary = results[0].message;
    c.details.clear();
  } else {
    c.summary = fmt::format("{} clock probes", clocks.size());
  }
  if (!synced) c.details.push_back("the kernel says the clock is NOT synchronised");
  if (worst != CheckStatus::ok) c.fix = sync_fix;
  return c;
}

// --- disk --------------------------------------------------------------------

CheckStatus disk_status(std::uint64_t free_bytes, std::uint64_t total_bytes,
                        std::uint64_t free_inodes, std::uint64_t total_inodes,
                        std::uint64_t headroom) {
  if (free_bytes < 64 * kMiB || (total_inodes > 0 && free_inodes < 1000)) {
    return CheckStatus::fail;
  }
  if (free_bytes * 10 < total_bytes || free_bytes < headroom) return CheckStatus::warn;
  return CheckStatus::ok;
}

DoctorCheck check_disk(const config::Config& cfg, std::int64_t db_bytes) {
  DoctorCheck c;
  c.name = "disk";
  // The state directory, or the nearest parent that exists (before the
  // daemon's first start).
  fs::path dir = cfg.agent.data_dir;
  std::error_code ec;
  while (!fs::exists(dir, ec) && dir.has_parent_path() && dir != dir.parent_path()) {
    dir = dir.parent_path();
  }
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) != 0) {
    c.status = CheckStatus::fail;
    c.summary =
        fmt::format("cannot read the free space of {}: {}", dir.string(), std::strerror(errno));
    return c;
  }
  const std::uint64_t unit = vfs.f_frsize != 0 ? vfs.f_frsize : vfs.f_bsize;
  const std::uint64_t free_bytes = static_cast<std::uint64_t>(vfs.f_bavail) * unit;
  const std::uint64_t total = static_cast<std::uint64_t>(vfs.f_blocks) * unit;
  const std::uint64_t cap =
      static_cast<std::uint64_t>(std::max<std::int64_t>(cfg.agent.max_db_bytes, 0));
  const std::uint64_t used = static_cast<std::uint64_t>(std::max<std::int64_t>(db_bytes, 0));
  const std::uint64_t headroom = cap > used ? cap - used : 0;
  c.status = disk_status(free_bytes, total, vfs.f_favail, vfs.f_files, headroom);
  const double percent =
      total > 0 ? 100.0 * static_cast<double>(free_bytes) / static_cast<double>(total) : 0;
  c.data = json{{"path", dir.string()},        {"free_bytes", free_bytes},
                {"total_bytes", total},        {"free_percent", std::round(percent * 10) / 10},
                {"free_inodes", vfs.f_favail}, {"db_may_grow_bytes", headroom}};
  c.summary = fmt::format("{}: {} free of {} ({:.0f} %)", dir.string(), human_bytes(free_bytes),
                          human_bytes(total), percent);
  if (c.status != CheckStatus::ok) {
    if (free_bytes < headroom) {
      c.details.push_back(fmt::format("the database may grow by {} more before its max_db_size cap",
                                      human_bytes(headroom)));
    }
    if (vfs.f_files > 0 && vfs.f_favail < 1000) {
      c.details.push_back(fmt::format("only {} inodes left", vfs.f_favail));
    }
    c.fix = {fmt::format("sudo du -xh --max-depth=2 {} | sort -h | tail   (what uses the space)",
                         dir.root_path().string()),
             "sudo journalctl --vacuum-size=100M   (old logs)",
             "sudo apt-get clean   (downloaded packages)"};
  }
  return c;
}

}  // namespace storewatch::cli
