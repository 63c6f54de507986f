// What the command groups share (cli/commands.h).
#include "cli/commands.h"

#include <CLI/CLI.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

#include "agent/control_server.h"
#include "base/short_uid.h"
#include "cli/doctor_internal.h"
#include "probes/registry.h"

namespace storewatch::cli {

using nlohmann::json;

namespace {

constexpr const char* kDefaultConfig = "/etc/storewatch/storewatch.toml";
constexpr const char* kDefaultHqConfig = "/etc/storewatch/hq.toml";

}  // namespace

std::filesystem::path Globals::agent_config() const {
  if (config_given()) return config;
  const char* env = std::getenv("STOREWATCH_CONFIG");
  return env != nullptr && *env != '\0' ? env : kDefaultConfig;
}

std::filesystem::path Globals::hq_config() const {
  if (config_given()) return config;
  const char* env = std::getenv("STOREWATCH_HQ_CONFIG");
  return env != nullptr && *env != '\0' ? env : kDefaultHqConfig;
}

CLI::App* sub(CLI::App& parent, const char* name, const char* help) {
  CLI::App* s = parent.add_subcommand(name, help);
  s->fallthrough();
  return s;
}

void print_diagnostics(const std::vector<config::Diagnostic>& diagnostics) {
  for (const auto& d : diagnostics) std::cerr << config::to_string(d) << "\n";
}

std::optional<config::Config> load_agent_config(const Globals& g) {
  config::LoadOptions options;
  if (!g.conf_dir.empty()) options.conf_dir = g.conf_dir;
  options.probe_types = probes::schemas();
  auto loaded = config::load(g.agent_config(), options);
  print_diagnostics(loaded.diagnostics);
  if (!loaded.ok()) return std::nullopt;
  return std::move(*loaded.config);
}

std::optional<config::HqConfig> load_hq_config(const Globals& g) {
  auto loaded = config::load_hq(g.hq_config());
  print_diagnostics(loaded.diagnostics);
  if (!loaded.ok()) return std::nullopt;
  return std::move(*loaded.config);
}

WallTime now() {
  return SystemClock().wall_now();
}

std::string when(const json& t) {
  if (!t.is_string()) return "-";
  auto parsed = parse_rfc3339(t.get<std::string>());
  if (!parsed) return t.get<std::string>();
  std::string s = format_rfc3339(*parsed);
  // Drop the milliseconds and the T for a table a human reads.
  std::string shown = s.substr(0, 10) + " " + s.substr(11, 8) + "Z";
  return shown + " (" + format_ago(*parsed, now()) + ")";
}

void print_json(const json& j) {
  std::cout << j.dump(2) << "\n";
}

int fail(const Error& e) {
  std::cerr << "storewatch: " << e.message << "\n";
  return kFailure;
}

namespace {

/// The fix for a file or socket of the daemon's the user may not reach.
std::string access_fix() {
  return fmt::format(
      "storewatch's data is for root and group storewatch: `{}`, then log out and in again (or "
      "use sudo)",
      doctor_internal::join_group_command());
}

/// Why the caller may not read `file`: the first directory on the way it may
/// not enter, or the file itself, with owner and mode; nullopt when it may
/// (or when the file is not there: that is another error).
std::optional<std::string> access_denied(const std::filesystem::path& file) {
  if (::faccessat(AT_FDCWD, file.c_str(), R_OK, AT_EACCESS) == 0 || errno != EACCES) {
    return std::nullopt;
  }
  auto described = [](const std::filesystem::path& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return p.string();
    return fmt::format("{} ({})", p.string(), doctor_internal::owner_and_mode(st));
  };
  std::filesystem::path dir;
  for (const auto& part : file.parent_path()) {
    dir /= part;
    if (::faccessat(AT_FDCWD, dir.c_str(), X_OK, AT_EACCESS) != 0 && errno == EACCES) {
      return fmt::format("you ({}) may not enter {}", doctor_internal::me(), described(dir));
    }
  }
  return fmt::format("you ({}) may not read {}", doctor_internal::me(), described(file));
}

/// The pid in the data directory's lock file (agent/data_dir_lock.h) while
/// that process lives; 0 when unknown.
int pid_from_lock(const std::filesystem::path& data_dir) {
  std::ifstream in(data_dir / "storewatch.lock");
  int pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  struct stat st {};
  return ::stat(fmt::format("/proc/{}", pid).c_str(), &st) == 0 ? pid : 0;
}

}  // namespace

Result<agent::Store> open_agent_store(const config::Config& cfg) {
  const auto path = cfg.agent.data_dir / "storewatch.db";
  if (auto why = access_denied(path)) {
    return Error{fmt::format("permission denied: {}, so the database {} cannot be read; {}", *why,
                             path.string(), access_fix())};
  }
  return agent::Store::open(path, agent::Store::Mode::read_only);
}

nlohmann::json DaemonView::to_json() const {
  json j{{"state", agent::to_string(state)}, {"socket", socket}};
  if (pid > 0) j["pid"] = pid;
  if (!error.empty()) j["error"] = error;
  return j;
}

std::string DaemonView::describe() const {
  const std::string of_pid = pid > 0 ? fmt::format(" (pid {})", pid) : std::string();
  switch (state) {
    case agent::DaemonState::running: return "running" + of_pid;
    case agent::DaemonState::not_running: return "not running";
    case agent::DaemonState::not_answering: return "not answering" + of_pid;
    case agent::DaemonState::permission_denied:
      return fmt::format(
          "not asked: you ({}) may not use its control socket {} (permission "
          "denied)",
          doctor_internal::me(), socket);
  }
  return "not running";
}

std::vector<std::string> DaemonView::fix() const {
  switch (state) {
    case agent::DaemonState::running: return {};
    case agent::DaemonState::not_running:
      return {"sudo systemctl start storewatch",
              "journalctl -u storewatch -n 50 --no-pager   (why it stopped)"};
    case agent::DaemonState::not_answering:
      return {fmt::format("it took the connection but did not answer within {} ms: it is hung or "
                          "stopped (kill -CONT {} if someone stopped it)",
                          kStatusTimeout.count(), pid > 0 ? std::to_string(pid) : "PID"),
              "sudo systemctl restart storewatch",
              "journalctl -u storewatch -n 50 --no-pager   (what it did last)"};
    case agent::DaemonState::permission_denied:
      return {doctor_internal::join_group_command() + "   (then log out and in again)",
              "or use sudo"};
  }
  return {};
}

int DaemonView::exit_code() const {
  switch (state) {
    case agent::DaemonState::running: return kOk;
    case agent::DaemonState::not_running:
    case agent::DaemonState::not_answering: return kNotRunning;
    case agent::DaemonState::permission_denied: return kNoPermission;
  }
  return kNotRunning;
}

DaemonView ask_daemon_status(const config::Config& cfg, std::chrono::milliseconds timeout) {
  auto call = agent::call_daemon(cfg.agent.control_socket,
                                 json{{"v", agent::kControlVersion}, {"op", "status"}}, timeout);
  DaemonView view;
  view.state = call.state;
  view.pid = call.pid;
  view.socket = cfg.agent.control_socket.string();
  view.error = std::move(call.error);
  if (call.state == agent::DaemonState::running) {
    if (call.response.value("ok", false) && call.response.contains("status") &&
        call.response["status"].is_object()) {
      view.status = std::move(call.response["status"]);
      const json& agent = (*view.status)["agent"];
      if (agent.is_object() && agent["pid"].is_number_integer()) view.pid = agent["pid"];
    } else {
      view.error =
          "it refused: " + call.response.value("error", std::string("no status in its answer"));
    }
  }
  if (view.pid <= 0 && call.state != agent::DaemonState::not_running) {
    view.pid = pid_from_lock(cfg.agent.data_dir);
  }
  return view;
}

Result<Millis> parse_duration_option(const char* option, const std::string& text, bool positive,
                                     const char* example) {
  auto d = parse_duration(text);
  if (!d) {
    return Error{fmt::format("{} {} is not a duration: {}", option, text, duration_problem(text))};
  }
  if (positive && d->count() <= 0) {
    return Error{fmt::format("{} {} must be positive, e.g. {}", option, text, example)};
  }
  return *d;
}

Result<Millis> parse_since(const std::string& text, bool positive, const char* example) {
  return parse_duration_option("--since", text, positive, example);
}

int usage(const Error& e) {
  std::cerr << "storewatch: " << e.message << "\n";
  return kUsage;
}

std::optional<AgentReading> read_agent(const Globals& g, int& rc) {
  auto cfg = load_agent_config(g);
  if (!cfg) {
    rc = kUsage;
    return std::nullopt;
  }
  auto store = open_agent_store(*cfg);
  if (!store) {
    rc = fail(store.error());
    return std::nullopt;
  }
  return AgentReading{std::move(*cfg), std::move(*store)};
}

std::optional<json> ask_daemon(const config::Config& cfg, json request, json* refusal) {
  request["v"] = agent::kControlVersion;
  const std::string socket = cfg.agent.control_socket.string();
  auto call = agent::call_daemon(cfg.agent.control_socket, request, std::chrono::seconds(10));
  switch (call.state) {
    case agent::DaemonState::running: break;
    case agent::DaemonState::not_running:
      if (call.connect_errno == ENOENT || call.connect_errno == ECONNREFUSED) {
        std::cerr << "storewatch: the daemon is not running (nothing listens at " << socket
                  << "), and changes go through it. Start it with `sudo systemctl start "
                     "storewatch` and try again; `storewatch doctor` says what else is wrong. "
                     "Nothing was changed.\n";
      } else {
        std::cerr << "storewatch: cannot reach the daemon (" << call.error
                  << "), and changes go through it. `storewatch doctor` says what is wrong. "
                     "Nothing was changed.\n";
      }
      return std::nullopt;
    case agent::DaemonState::permission_denied:
      std::cerr << "storewatch: you (" << doctor_internal::me()
                << ") may not use the control socket " << socket
                << " (permission denied). It is for root and group storewatch: use sudo, or `"
                << doctor_internal::join_group_command()
                << "` and log in again. Nothing was changed.\n";
      return std::nullopt;
    case agent::DaemonState::not_answering: {
      const std::string pid = call.pid > 0 ? fmt::format(" (pid {})", call.pid) : "";
      std::cerr << "storewatch: the daemon" << pid << " is not answering (" << call.error
                << "), so the change may not have been made. Check the daemon with `systemctl "
                   "status storewatch` and `storewatch doctor`.\n";
      return std::nullopt;
    }
  }
  json answer = std::move(call.response);
  if (!answer.value("ok", false)) {
    if (refusal != nullptr) {
      *refusal = std::move(answer);
      return std::nullopt;
    }
    std::cerr << "storewatch: " << answer.value("error", std::string("the daemon refused")) << "\n";
    return std::nullopt;
  }
  return answer;
}

void add_sudo_user(json& request) {
  const char* sudo_user = std::getenv("SUDO_USER");
  if (sudo_user != nullptr && *sudo_user != '\0') request["sudo_user"] = sudo_user;
}

std::string ago(const json& t) {
  if (!t.is_string()) return "-";
  auto parsed = parse_rfc3339(t.get<std::string>());
  return parsed ? format_ago(*parsed, now()) : t.get<std::string>();
}

std::vector<std::string> shown_uids(const json& list, bool wide) {
  std::vector<std::string> uids;
  for (const auto& item : list) uids.push_back(item.value("uid", ""));
  return wide ? uids : unique_prefixes(uids);
}

Table incident_table(const json& list, bool with_store, bool wide) {
  std::vector<std::string> headers;
  if (with_store) headers.push_back("STORE");
  const std::size_t first = headers.size();  // the UID column
  headers.insert(headers.end(),
                 {"UID", "PROBE", "STATE", "SEVERITY", "PRIO", "DETECTED", "SUMMARY"});
  Table t(std::move(headers));
  // On a narrow terminal: the summary is cut first, DETECTED says only how
  // long ago, PRIO and then SEVERITY go, STATE's flags are cut.
  t.truncatable(first + 6, 24)
      .truncatable(first + 2, 12)
      .droppable(first + 4, 1)
      .droppable(first + 3, 2);
  const auto uids = shown_uids(list, wide);
  for (std::size_t k = 0; k < list.size(); ++k) {
    const json& i = list[k];
    std::vector<std::string> cells;
    std::vector<Colour> colours;
    if (with_store) {
      cells.push_back(i.value("store", ""));
      colours.push_back(Colour::none);
    }
    std::string state = i.value("state", "");
    std::vector<std::string> flags;
    if (i.value("flapping", false)) flags.push_back("flapping");
    if (i.value("in_maintenance", false)) flags.push_back("maintenance");
    if (i.contains("suppressed_by") && i["suppressed_by"].is_string()) {
      flags.push_back("suppressed by " + i["suppressed_by"].get<std::string>().substr(0, 13));
    }
    if (i.value("self_healed", false)) flags.push_back("self-healed");
    if (i.value("reopen_count", 0) > 0) {
      std::string last;  // when it last reopened, where the caller knows it
      if (auto t = i.contains("t_reopened") && i["t_reopened"].is_string()
                       ? parse_rfc3339(i["t_reopened"].get<std::string>())
                       : std::nullopt) {
        last = " " + format_ago(*t, now());
      }
      flags.push_back(fmt::format("reopened {}x{}", i.value("reopen_count", 0), last));
    }
    if (!flags.empty()) state += fmt::format(" ({})", fmt::join(flags, ", "));
    cells.insert(cells.end(),
                 {uids[k], i.value("probe", ""), state, i.value("severity", ""),
                  i.value("priority", ""), when(i["t_detect"]), i.value("summary", "")});
    colours.insert(colours.end(),
                   {Colour::none, Colour::none, colour_of(i.value("state", "")),
                    i.value("severity", "") == "critical" ? Colour::red : Colour::none});
    std::vector<std::string> compact(cells.size());
    compact[first + 5] = ago(i["t_detect"]);
    t.add(std::move(cells), std::move(colours), std::move(compact));
  }
  return t;
}

std::size_t table_width(bool wide) {
  return wide ? kUnlimited : terminal_width(stdout);
}

}  // namespace storewatch::cli
