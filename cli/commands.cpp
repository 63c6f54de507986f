// What the command groups share (cli/commands.h).
#include "cli/commands.h"

#include <CLI/CLI.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>

#include "agent/control_server.h"
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

Result<agent::Store> open_agent_store(const config::Config& cfg) {
  return agent::Store::open(cfg.agent.data_dir / "storewatch.db", agent::Store::Mode::read_only);
}

Result<Millis> parse_since(const std::string& text, bool positive, const char* example) {
  auto d = parse_duration(text);
  if (!d || (positive && d->count() <= 0)) {
    return Error{fmt::format("--since {} is not a duration (use a number and ms|s|m|h|d, e.g. {})",
                             text, example)};
  }
  return *d;
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

std::optional<json> ask_daemon(const config::Config& cfg, json request) {
  request["v"] = agent::kControlVersion;
  const std::string socket = cfg.agent.control_socket.string();
  int connect_errno = 0;
  auto answer = agent::control_request(cfg.agent.control_socket, request, std::chrono::seconds(10),
                                       &connect_errno);
  if (!answer) {
    if (connect_errno == ENOENT || connect_errno == ECONNREFUSED) {
      std::cerr << "storewatch: the daemon is not running (nothing listens at " << socket
                << "), and changes go through it. Start it with `sudo systemctl start "
                   "storewatch` and try again; `storewatch doctor` says what else is wrong. "
                   "Nothing was changed.\n";
    } else if (connect_errno == EACCES || connect_errno == EPERM) {
      std::cerr << "storewatch: you may not use the control socket " << socket
                << " (permission denied). It is for root and group storewatch: use sudo, or "
                   "`sudo usermod -aG storewatch $USER` and log in again. Nothing was changed.\n";
    } else {
      std::cerr << "storewatch: no answer from the daemon (" << answer.error().message
                << "), so the change may not have been made. Check the daemon with `systemctl "
                   "status storewatch` and `storewatch doctor`.\n";
    }
    return std::nullopt;
  }
  if (!answer->value("ok", false)) {
    std::cerr << "storewatch: " << answer->value("error", std::string("the daemon refused"))
              << "\n";
    return std::nullopt;
  }
  return std::move(*answer);
}

void add_incident_row(Table& t, const json& i, bool with_store) {
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
  if (i.value("reopen_count", 0) > 0)
    flags.push_back(fmt::format("reopened {}x", i.value("reopen_count", 0)));
  if (!flags.empty()) state += fmt::format(" ({})", fmt::join(flags, ", "));
  cells.insert(cells.end(),
               {i.value("uid", ""), i.value("probe", ""), state, i.value("severity", ""),
                i.value("priority", ""), when(i["t_detect"]), i.value("summary", "")});
  colours.insert(colours.end(),
                 {Colour::none, Colour::none, colour_of(i.value("state", "")),
                  i.value("severity", "") == "critical" ? Colour::red : Colour::none});
  t.add(std::move(cells), std::move(colours));
}

std::vector<std::string> incident_headers(bool with_store) {
  std::vector<std::string> h;
  if (with_store) h.push_back("STORE");
  h.insert(h.end(), {"UID", "PROBE", "STATE", "SEVERITY", "PRIO", "DETECTED", "SUMMARY"});
  return h;
}

}  // namespace storewatch::cli
