// The doctor's daemon check: the control socket and the daemon's answer.
#include "cli/doctor.h"

#include <sys/stat.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "agent/control_server.h"
#include "cli/doctor_internal.h"

namespace storewatch::cli {

using nlohmann::json;
namespace fs = std::filesystem;
using doctor_internal::kStartDaemon;
using doctor_internal::me;
using doctor_internal::owner_and_mode;
using doctor_internal::permission_fix;
using doctor_internal::plural;
using doctor_internal::when;

namespace {

const char* const kDaemonLog = "journalctl -u storewatch -n 50 --no-pager   (why it stopped)";

}  // namespace

// --- daemon (control socket) -------------------------------------------------

DoctorCheck check_daemon(const config::Config& cfg, std::chrono::milliseconds timeout,
                         std::optional<json>* live) {
  DoctorCheck c;
  c.name = "daemon";
  const fs::path& path = cfg.agent.control_socket;
  c.data = json{{"socket", path.string()}, {"running", false}};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    c.status = CheckStatus::fail;
    if (errno == EACCES) {
      c.summary = fmt::format("you ({}) may not reach {}", me(), path.string());
      c.fix = permission_fix();
    } else {
      c.summary = fmt::format("not running: no control socket at {}", path.string());
      c.fix = {kStartDaemon, kDaemonLog};
    }
    return c;
  }
  c.data["owner"] = owner_and_mode(st);
  if (!S_ISSOCK(st.st_mode)) {
    c.status = CheckStatus::fail;
    c.summary = fmt::format("{} is not a socket", path.string());
    c.fix = {fmt::format("sudo rm {}   (the daemon makes it at start)", path.string()),
             "sudo systemctl restart storewatch"};
    return c;
  }
  // One call says both why the daemon did not answer (the connect's errno,
  // a hung daemon's silence) and, when it did, what it runs.
  auto call =
      agent::call_daemon(path, json{{"v", agent::kControlVersion}, {"op", "status"}}, timeout);
  c.data["state"] = agent::to_string(call.state);
  if (call.pid > 0) c.data["pid"] = call.pid;
  switch (call.state) {
    case agent::DaemonState::running: break;
    case agent::DaemonState::permission_denied:
      c.status = CheckStatus::fail;
      c.summary = fmt::format("you ({}) may not connect to {} ({})", me(), path.string(),
                              owner_and_mode(st));
      c.fix = permission_fix();
      return c;
    case agent::DaemonState::not_running:
      c.status = CheckStatus::fail;
      if (call.connect_errno == ECONNREFUSED) {
        c.summary =
            fmt::format("not running: {} is left over, nothing listens on it", path.string());
      } else {
        c.summary = fmt::format("cannot connect to {}: {}", path.string(),
                                std::strerror(call.connect_errno));
      }
      c.fix = {"sudo systemctl restart storewatch", kDaemonLog};
      return c;
    case agent::DaemonState::not_answering:
      c.status = CheckStatus::fail;
      c.summary = fmt::format("not answering{}: the daemon at {} does not answer within {} ms",
                              call.pid > 0 ? fmt::format(" (pid {})", call.pid) : "", path.string(),
                              timeout.count());
      c.fix = {"sudo systemctl restart storewatch", kDaemonLog};
      return c;
  }
  const json& answer = call.response;
  if (!answer.value("ok", false) || !answer.contains("status")) {
    c.status = CheckStatus::fail;
    c.summary = fmt::format("the daemon at {} refused: {}", path.string(),
                            answer.value("error", std::string("no status in its answer")));
    c.fix = {"sudo systemctl restart storewatch", kDaemonLog};
    return c;
  }
  json status = answer["status"];
  const json agent = status.value("agent", json::object());
  int failing = 0;
  for (const auto& p : status.value("probes", json::array())) {
    failing += p.value("state", "") == "hard_fail" ? 1 : 0;
  }
  const std::size_t probes = status.value("probes", json::array()).size();
  c.data["running"] = true;
  c.data["pid"] = agent.value("pid", 0);
  c.data["version"] = agent.value("version", "");
  c.data["started_at"] = agent.value("started_at", "");
  c.data["store"] = status.value("store", "");
  c.data["failing_probes"] = failing;
  c.summary = fmt::format("running, pid {}, version {}, up since {}; {}, {} failing",
                          agent.value("pid", 0), agent.value("version", "?"),
                          when(agent.value("started_at", "")), plural(probes, "probe"), failing);
  if (status.value("store", "") != cfg.store.id) {
    c.status = CheckStatus::warn;
    c.details.push_back(fmt::format(
        "the daemon runs store {}, this config says {}: it was started with another config",
        status.value("store", "?"), cfg.store.id));
    c.fix.push_back("sudo systemctl restart storewatch   (to run this config)");
  }
  if (agent.value("version", "") != STOREWATCH_VERSION) {
    c.status = CheckStatus::warn;
    c.details.push_back(fmt::format("the daemon runs version {}, this command is {}",
                                    agent.value("version", "?"), STOREWATCH_VERSION));
    c.fix.push_back("sudo systemctl restart storewatch   (runs the installed version)");
  }
  if (failing > 0) {
    c.details.push_back("storewatch status   (shows which probes fail and why)");
  }
  const json writer = agent.value("store_writer", json::object());
  c.data["store_backlog"] = writer.value("backlog", 0);
  if (const std::string error = writer.value("last_error", std::string());
      !error.empty() && writer.value("backlog", 0) > 0) {
    // The daemon runs but cannot write its database: what it learns waits
    // in memory, and goes if it stops.
    c.status = CheckStatus::fail;
    const bool full = writer.value("disk_full", false);
    c.summary += fmt::format("; it cannot write its database: {} wait in memory ({})",
                             plural(writer.value("backlog", std::size_t{0}), "change"),
                             full ? "the disk is full" : error);
    c.details.push_back(error);
    if (full) {
      c.fix.push_back(fmt::format(
          "free space on the disk holding {} (the disk check below says how much is left): the "
          "daemon writes what waits within a second of there being room",
          cfg.agent.data_dir.string()));
      c.fix.push_back("do not stop the daemon meanwhile: what waits in memory would be lost");
    } else {
      c.fix.push_back("sudo systemctl restart storewatch   (if it lasts; what waits is lost)");
      c.fix.push_back(kDaemonLog);
    }
  }
  if (live != nullptr) *live = std::move(status);
  return c;
}

}  // namespace storewatch::cli
