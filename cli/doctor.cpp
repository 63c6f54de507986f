#include "cli/doctor.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>

#include "base/table.h"
#include "cli/doctor_internal.h"
#include "probes/registry.h"

namespace storewatch::cli {

using nlohmann::json;
namespace fs = std::filesystem;
using doctor_internal::plural;

namespace doctor_internal {
namespace {

std::string user_name(uid_t uid) {
  if (const passwd* pw = ::getpwuid(uid); pw != nullptr) return pw->pw_name;
  return std::to_string(uid);
}

std::string group_name(gid_t gid) {
  if (const group* gr = ::getgrgid(gid); gr != nullptr) return gr->gr_name;
  return std::to_string(gid);
}

}  // namespace

std::string owner_and_mode(const struct stat& st) {
  return fmt::format("{}:{} {:04o}", user_name(st.st_uid), group_name(st.st_gid),
                     st.st_mode & 07777);
}

std::string me() {
  return user_name(::geteuid());
}

std::string join_group_command() {
  return "sudo usermod -aG storewatch " + me();
}

std::vector<std::string> permission_fix() {
  return {join_group_command() + "   (then log out and in again)",
          "or run the command as root: sudo storewatch doctor"};
}

std::string when(const std::string& rfc3339) {
  auto t = parse_rfc3339(rfc3339);
  if (!t) return rfc3339.empty() ? std::string("?") : rfc3339;
  const std::string s = format_rfc3339(*t);
  return s.substr(0, 10) + " " + s.substr(11, 8) + "Z (" +
         format_ago(*t, SystemClock().wall_now()) + ")";
}

std::string plural(std::size_t n, std::string_view word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

}  // namespace doctor_internal

std::string_view to_string(CheckStatus s) {
  switch (s) {
    case CheckStatus::ok: return "ok";
    case CheckStatus::warn: return "warn";
    case CheckStatus::fail: return "fail";
    case CheckStatus::skip: return "skip";
  }
  return "?";
}

std::string human_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, kUnits[unit]);
}

json DoctorCheck::to_json() const {
  return json{{"check", name},      {"status", to_string(status)},
              {"summary", summary}, {"details", details},
              {"fix", fix},         {"data", data}};
}

int DoctorReport::exit_code() const {
  return std::any_of(checks.begin(), checks.end(),
                     [](const DoctorCheck& c) { return c.status == CheckStatus::fail; })
             ? 1
             : 0;
}

json DoctorReport::to_json() const {
  json list = json::array();
  json counts{{"ok", 0}, {"warn", 0}, {"fail", 0}, {"skip", 0}};
  for (const auto& c : checks) {
    list.push_back(c.to_json());
    counts[std::string(to_string(c.status))] =
        counts[std::string(to_string(c.status))].get<int>() + 1;
  }
  return json{{"ok", exit_code() == 0},
              {"config", config_file},
              {"checks", std::move(list)},
              {"counts", std::move(counts)}};
}

std::string DoctorReport::render(bool colour) const {
  std::string out = fmt::format("storewatch doctor, config {}\n\n", config_file);
  std::size_t width = 0;
  for (const auto& c : checks) width = std::max(width, c.name.size());
  int fails = 0;
  int warns = 0;
  for (const auto& c : checks) {
    Colour col = Colour::none;
    std::string word(to_string(c.status));
    switch (c.status) {
      case CheckStatus::ok: col = Colour::green; break;
      case CheckStatus::warn:
        col = Colour::yellow;
        ++warns;
        break;
      case CheckStatus::fail:
        col = Colour::red;
        word = "FAIL";
        ++fails;
        break;
      case CheckStatus::skip: col = Colour::dim; break;
    }
    const std::string indent(2 + 4 + 2 + width + 2, ' ');
    out += fmt::format("  {}  {:<{}}  {}\n", paint(fmt::format("{:<4}", word), col, colour), c.name,
                       width, c.summary);
    for (const auto& d : c.details) out += indent + d + "\n";
    for (std::size_t i = 0; i < c.fix.size(); ++i) {
      out += indent + (i == 0 ? paint("fix: ", Colour::bold, colour) : std::string("     ")) +
             c.fix[i] + "\n";
    }
  }
  out += "\n";
  if (fails == 0 && warns == 0) {
    out += "Everything storewatch needs looks fine.\n";
  } else {
    out += fmt::format("{}, {}: see the fixes above.\n",
                       plural(static_cast<std::size_t>(fails), "problem"),
                       plural(static_cast<std::size_t>(warns), "warning"));
  }
  return out;
}

// --- config ------------------------------------------------------------------

DoctorCheck check_config(const fs::path& file, const config::Loaded<config::Config>& loaded) {
  DoctorCheck c;
  c.name = "config";
  std::size_t errors = 0;
  std::size_t warnings = 0;
  for (const auto& d : loaded.diagnostics) {
    c.details.push_back(config::to_string(d));
    (d.kind == config::Diagnostic::Kind::error ? errors : warnings) += 1;
  }
  c.data = json{{"file", file.string()}, {"errors", errors}, {"warnings", warnings}};
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    c.status = CheckStatus::fail;
    c.summary = fmt::format("{} does not exist", file.string());
    c.fix = {
        "point --config (or $STOREWATCH_CONFIG) at the store's config, or install one: see "
        "config/examples/storewatch.toml",
        "storewatch config check   (then, to validate it)"};
    return c;
  }
  if (!loaded.ok()) {
    c.status = CheckStatus::fail;
    c.summary = fmt::format("{} has {}", file.string(), plural(errors, "error"));
    c.fix = {fmt::format("edit the lines named above, then: storewatch --config {} config check",
                         file.string()),
             "sudo systemctl reload storewatch   (applies it; a bad config is refused and the "
             "running one stays)"};
    return c;
  }
  const config::Config& cfg = *loaded.config;
  c.data["store"] = cfg.store.id;
  c.data["probes"] = cfg.probes.size();
  c.data["files"] = cfg.files.size();
  c.summary = fmt::format("{}: store {}, {}, {} read", file.string(), cfg.store.id,
                          plural(cfg.probes.size(), "probe"), plural(cfg.files.size(), "file"));
  if (warnings > 0) {
    c.status = CheckStatus::warn;
    c.summary += fmt::format("; {}", plural(warnings, "warning"));
    c.fix = {
        "create the files named above on this gateway (secrets, CA, commands), or fix their "
        "paths in the config"};
  }
  return c;
}

// --- all ---------------------------------------------------------------------

DoctorReport run_doctor(const DoctorOptions& options) {
  DoctorReport report;
  report.config_file = options.config.string();
  config::LoadOptions load;
  load.conf_dir = options.conf_dir;
  load.probe_types = probes::schemas();
  auto loaded = config::load(options.config, load);
  report.checks.push_back(check_config(options.config, loaded));
  if (!loaded.ok()) {
    for (const char* name : {"database", "daemon", "broker", "broker_auth", "clock", "disk"}) {
      DoctorCheck c;
      c.name = name;
      c.status = CheckStatus::skip;
      c.summary = "not checked: it needs a config that loads (paths, broker, probes)";
      report.checks.push_back(std::move(c));
    }
    return report;
  }
  const config::Config& cfg = *loaded.config;
  std::int64_t db_bytes = 0;
  report.checks.push_back(check_database(cfg, &db_bytes));
  std::optional<json> live;
  report.checks.push_back(check_daemon(cfg, options.timeout, &live));
  report.checks.push_back(check_broker(cfg, live ? &*live : nullptr, options.timeout));
  if (report.checks.back().data.value("reachable", true)) {
    report.checks.push_back(check_broker_auth(cfg, options.timeout));
  } else {
    DoctorCheck c;
    c.name = "broker_auth";
    c.status = CheckStatus::skip;
    c.summary = "not checked: the broker cannot be reached (see the broker check)";
    report.checks.push_back(std::move(c));
  }
  report.checks.push_back(check_clock(cfg));
  report.checks.push_back(check_disk(cfg, db_bytes));
  return report;
}

}  // namespace storewatch::cli
