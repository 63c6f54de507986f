#include "cli/cli.h"

#include <unistd.h>
#include <CLI/CLI.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>

#include "agent/control_ops.h"
#include "agent/control_server.h"
#include "agent/daemon.h"
#include "agent/notices.h"
#include "agent/polkit_rule.h"
#include "agent/report.h"
#include "agent/status.h"
#include "agent/store.h"
#include "base/log.h"
#include "base/table.h"
#include "cli/doctor.h"
#include "config/config.h"
#include "hq/hq_store.h"
#include "hq/report.h"
#include "hq/run.h"
#include "probes/perfdata.h"
#include "probes/registry.h"
#include "probes/run_once.h"

namespace storewatch::cli {

using nlohmann::json;

namespace {

constexpr int kOk = 0;
constexpr int kFailure = 1;
constexpr int kUsage = 2;

constexpr const char* kDefaultConfig = "/etc/storewatch/storewatch.toml";
constexpr const char* kDefaultHqConfig = "/etc/storewatch/hq.toml";

struct Globals {
  std::string config;
  std::string conf_dir;
  bool config_given() const { return !config.empty(); }

  std::filesystem::path agent_config() const {
    if (config_given()) return config;
    const char* env = std::getenv("STOREWATCH_CONFIG");
    return env != nullptr && *env != '\0' ? env : kDefaultConfig;
  }
  std::filesystem::path hq_config() const {
    if (config_given()) return config;
    const char* env = std::getenv("STOREWATCH_HQ_CONFIG");
    return env != nullptr && *env != '\0' ? env : kDefaultHqConfig;
  }
};

void print_diagnostics(const std::vector<config::Diagnostic>& diagnostics) {
  for (const auto& d : diagnostics) std::cerr << config::to_string(d) << "\n";
}

/// Loads the agent's config, printing every diagnostic; nullopt on errors.
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

/// "2026-11-26 22:18:03Z (3m ago)" from an RFC 3339 JSON value, "-" for null.
std::string when(const json& t) {
  if (!t.is_string()) return "-";
  auto parsed = parse_rfc3339(t.get<std::string>());
  if (!parsed) return t.get<std::string>();
  std::string s = format_rfc3339(*parsed);
  // Drop the milliseconds and the T for a table a human reads.
  std::string shown = s.substr(0, 10) + " " + s.substr(11, 8) + "Z";
  return shown + " (" + format_ago(*parsed, now()) + ")";
}

std::string text_of(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

void print_json(const json& j) {
  std::cout << j.dump(2) << "\n";
}

/// Prints a failure the way every command does and returns its exit code.
int fail(const Error& e) {
  std::cerr << "storewatch: " << e.message << "\n";
  return kFailure;
}

/// The agent's database, read-only: reads work with the daemon down.
Result<agent::Store> open_agent_store(const config::Config& cfg) {
  return agent::Store::open(cfg.agent.data_dir / "storewatch.db", agent::Store::Mode::read_only);
}

// --- status --------------------------------------------------------------

/// The daemon's live `status` document, or nullopt when no daemon answers.
std::optional<json> live_status(const config::Config& cfg) {
  auto live = agent::control_request(cfg.agent.control_socket,
                                     json{{"v", agent::kControlVersion}, {"op", "status"}},
                                     std::chrono::seconds(3));
  if (live && live->value("ok", false) && live->contains("status")) return (*live)["status"];
  return std::nullopt;
}

int cmd_status(const Globals& g, bool as_json) {
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  json status;
  if (auto live = live_status(*cfg)) {
    status = std::move(*live);
  } else {
    auto store = open_agent_store(*cfg);
    if (!store) return fail(store.error());
    auto s = agent::status_from_store(*cfg, *store);
    if (!s) return fail(s.error());
    status = std::move(*s);
  }
  if (as_json) {
    print_json(status);
    return kOk;
  }
  const bool colour = use_colour(stdout);
  const json& agent = status["agent"];
  const json& sync = status["sync"];
  std::cout << paint("store " + status.value("store", ""), Colour::bold, colour) << "  ";
  if (agent.value("running", false)) {
    std::cout << "daemon " << paint("running", Colour::green, colour) << " (pid "
              << agent.value("pid", 0) << ", since " << when(agent["started_at"]) << ")\n";
  } else {
    std::cout << "daemon " << paint("not running", Colour::red, colour)
              << " (showing the state last saved in the database)\n";
  }
  if (agent.contains("config") && agent["config"].is_object()) {
    const json& c = agent["config"];
    std::string hash = c.value("hash", std::string("?"));
    if (hash.size() > 19) hash = hash.substr(0, 19) + "…";  // sha256: and 12 hex digits
    std::cout << "config: " << hash << " loaded " << when(c["loaded_at"]);
    const int reloads = c.value("reloads", 0), refused = c.value("refused", 0);
    if (reloads > 0 || refused > 0) {
      std::cout << "; reloads: " << reloads << " accepted, " << refused << " refused";
    }
    std::cout << "\n";
    if (const std::string error = c.value("last_reload_error", std::string()); !error.empty()) {
      std::cout << "  " << paint("last reload refused", Colour::red, colour) << " ("
                << when(c["last_reload_at"]) << "): " << error
                << "\n  the config in force is still the one loaded above; `storewatch config "
                   "check` lists every error in the file\n";
    }
  }
  std::cout << "sync: "
            << (sync.value("connected", false) ? paint("connected", Colour::green, colour)
                                               : paint("offline", Colour::yellow, colour))
            << " to " << sync.value("broker", std::string("?")) << ", " << sync.value("queued", 0)
            << " events queued, HQ acked seq " << sync.value("hq_acked_seq", 0);
  if (!sync.value("last_error", std::string()).empty()) {
    std::cout << " (last error: " << sync["last_error"].get<std::string>() << ")";
  }
  std::cout << "\n";
  if (agent.contains("store_writer") && agent["store_writer"].is_object()) {
    // Changes the daemon holds in memory and has not written yet: the sync
    // queue above counts only what is in the database.
    const json& w = agent["store_writer"];
    const auto backlog = w.value("backlog", std::size_t{0});
    const std::string error = w.value("last_error", std::string());
    if (backlog > 0 && !error.empty()) {
      std::cout << "store: "
                << paint(fmt::format("{} changes wait in memory, not yet written", backlog),
                         Colour::red, colour)
                << " (" << w.value("incident_changes", 0) << " of them incident changes; "
                << (w.value("disk_full", false) ? "the disk is full" : "the database refuses them")
                << "): " << error
                << "\n  they are lost if the daemon stops before they are "
                   "written; `storewatch doctor` says what to do\n";
    }
    if (w.value("reserve_released", false) && error.empty()) {
      std::cout << "store: " << paint("the disk is full", Colour::red, colour)
                << "; changes are written into storewatch's reserve (storewatch.reserve, "
                   "released) until it runs out: free space on the disk\n";
    }
    if (const auto letters = w.value("dead_letters", 0); letters > 0) {
      std::cout << "store: "
                << paint(fmt::format("{} changes refused by the database since the daemon started",
                                     letters),
                         Colour::red, colour)
                << ", kept in the dead_letters table (`storewatch doctor` lists them)\n";
    }
  }
  std::cout << "\n";
  Table t({"PROBE", "TYPE", "STATE", "LAST CHECK", "LATENCY", "MESSAGE"});
  for (const auto& p : status["probes"]) {
    std::string state = p.value("state", "unknown");
    std::string latency =
        p["latency_ms"].is_number() ? fmt::format("{:.1f} ms", p["latency_ms"].get<double>()) : "-";
    t.add({p.value("name", ""), p.value("type", ""), state, when(p["last_check"]), latency,
           p.value("message", "")},
          {Colour::none, Colour::none, colour_of(state)});
  }
  std::cout << t.render(colour);
  return kOk;
}

// --- sync status ---------------------------------------------------------

int cmd_sync_status(const Globals& g, bool as_json) {
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  json sync;
  if (auto live = live_status(*cfg)) {
    sync = std::move((*live)["sync"]);
  } else {
    auto store = open_agent_store(*cfg);
    if (!store) return fail(store.error());
    auto s = agent::sync_json_from_store(*cfg, *store, now());
    if (!s) return fail(s.error());
    sync = std::move(*s);
  }
  if (as_json) {
    print_json(sync);
    return kOk;
  }
  const bool colour = use_colour(stdout);
  auto number = [](const json& v) { return v.is_number() ? v.dump() : std::string("-"); };
  const bool running = sync.value("daemon_running", false);
  std::cout << "broker   " << sync.value("broker", std::string("?")) << "\n";
  if (!running) {
    std::cout << "daemon   " << paint("not running", Colour::red, colour)
              << " (what the database knows)\n";
  } else if (sync.value("connected", false)) {
    std::cout << "state    " << paint("connected", Colour::green, colour) << " since "
              << when(sync["since"]) << ", session " << number(sync["session"]) << "\n";
  } else {
    std::cout << "state    " << paint("offline", Colour::yellow, colour) << " since "
              << when(sync["since"]) << ", " << number(sync["reconnect_attempts"])
              << " reconnect attempts\n";
  }
  std::cout << "queued   " << number(sync["queued"]) << " events";
  if (sync["oldest_queued_age_s"].is_number()) {
    std::cout << ", oldest from " << when(sync["oldest_queued_at"]);
  }
  std::cout << "\nHQ acked seq " << number(sync["hq_acked_seq"]);
  if (running) std::cout << ", last ack " << when(sync["last_ack"]);
  std::cout << "\n";
  if (running) {
    std::cout << "last PUBACK " << when(sync["last_puback"]) << ", " << number(sync["connects"])
              << " connects since start\n";
  }
  const std::string error = sync.value("last_error", std::string());
  if (!error.empty()) {
    std::cout << "last error " << when(sync["last_error_at"]) << ": " << error << "\n";
  }
  if (const json& cert = sync["client_cert"]; cert.is_object()) {
    std::cout << "client cert " << cert.value("file", std::string());
    if (cert["not_after"].is_string()) {
      std::cout << " (" << cert.value("subject", std::string()) << "), valid until "
                << cert["not_after"].get<std::string>() << ", " << number(cert["days_left"])
                << " days left\n";
    } else {
      std::cout << ": " << paint(cert.value("error", std::string()), Colour::red, colour) << "\n";
    }
    if (cert["warning"].is_string()) {
      std::cout << "warning  " << paint(cert["warning"].get<std::string>(), Colour::yellow, colour)
                << "\n";
    }
  }
  return kOk;
}

// --- probe run -----------------------------------------------------------

bool answered(probes::ProbeStatus s) {
  return s == probes::ProbeStatus::ok || s == probes::ProbeStatus::warn;
}

std::string latency_text(const probes::ProbeResult& r) {
  return fmt::format("{:.1f} ms", static_cast<double>(r.latency.count()) / 1000.0);
}

void print_one_result(const config::ProbeConfig& p, const probes::ProbeResult& r, bool colour) {
  const std::string status(probes::to_string(r.status));
  std::cout << paint(p.name, Colour::bold, colour) << " (" << p.type
            << "): " << paint(status, colour_of(status), colour) << " in " << latency_text(r)
            << "\n"
            << "  " << r.message << "\n";
  if (!r.metrics.empty()) {
    Table t({"METRIC", "VALUE"});
    for (const auto& [label, value] : r.metrics) t.add({label, fmt::format("{:g}", value)});
    std::cout << "\n" << t.render(colour);
  }
}

int cmd_probe_run(const Globals& g, const std::vector<std::string>& names, bool all, bool as_json) {
  if (all == !names.empty()) {
    std::cerr << "storewatch: probe run: give probe names or --all (not both)\n";
    return kUsage;
  }
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  std::vector<const config::ProbeConfig*> chosen;
  if (all) {
    for (const auto& p : cfg->probes) chosen.push_back(&p);
  }
  for (const auto& name : names) {
    const config::ProbeConfig* p = cfg->find_probe(name);
    if (p == nullptr) {
      std::string known;
      for (const auto& q : cfg->probes) known += (known.empty() ? "" : ", ") + q.name;
      std::cerr << "storewatch: no probe \"" << name << "\" in " << g.agent_config().string()
                << (known.empty() ? " (it has no probes)" : " (probes: " + known + ")") << "\n";
      return kUsage;
    }
    chosen.push_back(p);
  }
  if (chosen.empty()) {
    std::cerr << "storewatch: " << g.agent_config().string() << " has no probes\n";
    return kUsage;
  }
  // Many probes take a while: say how far along we are, on a terminal only.
  const bool progress = chosen.size() > 1 && !as_json && isatty(fileno(stderr)) != 0;
  std::size_t done = 0;
  const auto results = probes::run_many(
      chosen, cfg->agent.max_concurrent_checks, [&](std::size_t, const probes::ProbeResult&) {
        ++done;
        if (progress)
          std::cerr << fmt::format("\rchecked {}/{}", done, chosen.size()) << std::flush;
      });
  if (progress) std::cerr << "\r\033[K" << std::flush;

  std::size_t failing = 0;
  for (const auto& r : results) failing += answered(r.status) ? 0 : 1;
  const int rc = failing == 0 ? kOk : kFailure;
  if (as_json) {
    // One probe by name: the object of DESIGN §7; several or --all: an array of them.
    if (!all && chosen.size() == 1) {
      print_json(agent::probe_result_json(*chosen[0], results[0]));
    } else {
      json list = json::array();
      for (std::size_t i = 0; i < chosen.size(); ++i) {
        list.push_back(agent::probe_result_json(*chosen[i], results[i]));
      }
      print_json(list);
    }
    return rc;
  }
  const bool colour = use_colour(stdout);
  if (chosen.size() == 1) {
    print_one_result(*chosen[0], results[0], colour);
    return rc;
  }
  Table t({"PROBE", "TYPE", "STATUS", "LATENCY", "MESSAGE"});
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    const std::string status(probes::to_string(results[i].status));
    t.add({chosen[i]->name, chosen[i]->type, status, latency_text(results[i]), results[i].message},
          {Colour::none, Colour::none, colour_of(status)});
  }
  std::cout << t.render(colour)
            << fmt::format("\n{} probe{} checked, {} not answering\n", chosen.size(),
                           chosen.size() == 1 ? "" : "s", failing);
  return rc;
}

std::string_view kind_name(config::KeyKind k) {
  switch (k) {
    case config::KeyKind::string: return "string";
    case config::KeyKind::host: return "host";
    case config::KeyKind::integer: return "integer";
    case config::KeyKind::boolean: return "boolean";
    case config::KeyKind::duration: return "duration";
    case config::KeyKind::port: return "port";
    case config::KeyKind::string_array: return "array of strings";
    case config::KeyKind::string_table: return "table of strings";
    case config::KeyKind::file: return "file";
    case config::KeyKind::number: return "number";
    case config::KeyKind::choice: return "choice";
    case config::KeyKind::command: return "command (array of strings)";
    case config::KeyKind::size: return "size";
  }
  return "?";
}

/// `probe types`: every probe type and its keys, from the same tables the
/// config loader validates against.
int cmd_probe_types(bool as_json) {
  json list = json::array();
  for (const config::ProbeTypeSchema& schema : probes::schemas()) {
    json keys = json::array();
    for (const config::KeySpec& k : schema.keys) {
      json key{{"name", k.name},
               {"kind", kind_name(k.kind)},
               {"required", k.required},
               {"default", k.default_value.empty() ? json(nullptr) : json(k.default_value)},
               {"description", k.description}};
      if (!k.choices.empty()) key["choices"] = k.choices;
      keys.push_back(std::move(key));
    }
    list.push_back(json{{"type", schema.type}, {"keys", std::move(keys)}});
  }
  if (as_json) {
    print_json(list);
    return kOk;
  }
  const bool colour = use_colour(stdout);
  std::cout << "Every [[probe]] also takes name, type, interval, timeout, fail_after, "
               "recover_after, severity, depends_on and labels.\n";
  for (const auto& t : list) {
    std::cout << "\n" << paint(t["type"].get<std::string>(), Colour::bold, colour) << "\n";
    Table table({"KEY", "KIND", "DEFAULT", "DESCRIPTION"});
    for (const auto& k : t["keys"]) {
      std::string kind = k["kind"].get<std::string>();
      if (k.contains("choices")) kind = k["choices"].get<std::string>();
      std::string def = k["required"].get<bool>() ? "(required)" : text_of(k["default"]);
      table.add({k["name"].get<std::string>(), kind, def, k["description"].get<std::string>()});
    }
    std::cout << table.render(colour);
  }
  return kOk;
}

// --- incidents -----------------------------------------------------------

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

int cmd_incidents(const Globals& g, bool all, const std::string& since, bool as_json) {
  std::optional<WallTime> since_time;
  if (!since.empty()) {
    auto d = parse_duration(since);
    if (!d) {
      std::cerr << "storewatch: --since " << since
                << " is not a duration (use a number and ms|s|m|h|d, e.g. 24h)\n";
      return kUsage;
    }
    since_time = now() - *d;
  }
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  auto store = open_agent_store(*cfg);
  if (!store) return fail(store.error());
  auto rows = store->incidents(!all, since_time);
  if (!rows) return fail(rows.error());
  json list = json::array();
  for (const auto& i : *rows) list.push_back(i.to_json());
  if (as_json) {
    print_json(list);
    return kOk;
  }
  if (list.empty()) {
    std::cout << (all ? "No incidents recorded.\n" : "No open incidents.\n");
    return kOk;
  }
  Table t(incident_headers(false));
  for (const auto& i : list) add_incident_row(t, i, false);
  std::cout << t.render(use_colour(stdout));
  return kOk;
}

/// One line of what an event says: its note, reason, remediation outcome or
/// the probe's message.
std::string event_detail(const json& e) {
  const json body = e.value("body", json::object());
  std::string out;
  auto add = [&out](const std::string& text) {
    if (text.empty()) return;
    out += (out.empty() ? "" : "; ") + text;
  };
  if (body.contains("remediation")) {
    add(fmt::format("{} attempt {}/{}", body.value("remediation", ""), body.value("attempt", 0),
                    body.value("max_attempts", 0)));
    if (body.contains("exit_code") && body["exit_code"].is_number_integer()) {
      add(fmt::format("exit {}", body["exit_code"].get<std::int64_t>()));
    }
  }
  add(body.value("detail", ""));
  add(body.value("reason", ""));
  add(body.value("note", ""));
  if (body.contains("retry_in")) add("retry in " + body.value("retry_in", ""));
  if (out.empty()) add(body.value("message", ""));
  if (body.contains("clock_synced")) add("clock not synchronised");
  return out;
}

int cmd_incident_show(const Globals& g, const std::string& uid, bool as_json) {
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  auto store = open_agent_store(*cfg);
  if (!store) return fail(store.error());
  auto inc = store->incident(uid);
  if (!inc) return fail(inc.error());
  if (!*inc) {
    std::cerr << "storewatch: no incident " << uid << " (see `storewatch incidents --all`)\n";
    return kFailure;
  }
  auto events = store->events_of((*inc)->uid);
  if (!events) return fail(events.error());
  json j = (*inc)->to_json();
  json timeline = json::array();
  for (const auto& e : *events) {
    json body = json::parse(e.body, nullptr, false);
    json item{{"seq", e.seq}, {"type", e.type}, {"at", e.at}, {"actor", e.actor}};
    if (body.is_object()) {
      if (body.contains("message")) item["message"] = body["message"];
      body.erase("incident_state");
      item["body"] = std::move(body);  // the event's own fields
    }
    timeline.push_back(std::move(item));
  }
  if (as_json) {
    j["events"] = std::move(timeline);
    print_json(j);
    return kOk;
  }
  const bool colour = use_colour(stdout);
  std::cout << paint("incident " + j["uid"].get<std::string>(), Colour::bold, colour) << "\n"
            << "  probe     " << j["probe"].get<std::string>() << "\n"
            << "  state     " << paint(j["state"].get<std::string>(), colour_of(j["state"]), colour)
            << "\n"
            << "  severity  " << j["severity"].get<std::string>() << " ("
            << j["priority"].get<std::string>() << ")\n"
            << "  summary   " << j["summary"].get<std::string>() << "\n"
            << "  fault     " << when(j["t_fault"]) << "\n"
            << "  detected  " << when(j["t_detect"]) << "\n";
  if (!j["t_restored"].is_null()) std::cout << "  restored  " << when(j["t_restored"]) << "\n";
  std::cout << "\ntimeline\n";
  Table t({"SEQ", "AT", "EVENT", "BY", "DETAIL"});
  for (const auto& e : timeline) {
    t.add({std::to_string(e["seq"].get<std::int64_t>()), when(e["at"]), e["type"], e["actor"],
           event_detail(e)});
  }
  std::cout << t.render(colour);
  // What the remediations printed, under the table: it is several lines.
  for (const auto& e : timeline) {
    const json body = e.value("body", json::object());
    const std::string output = body.value("output", std::string());
    if (output.empty()) continue;
    std::cout << "\noutput of " << body.value("remediation", std::string("the remediation"))
              << " (seq " << e["seq"].get<std::int64_t>() << ", " << e["type"].get<std::string>()
              << (body.value("output_truncated", false) ? ", first 4 KB" : "") << "):\n";
    std::size_t start = 0;
    while (start < output.size()) {
      std::size_t end = output.find('\n', start);
      if (end == std::string::npos) end = output.size();
      std::cout << "  | " << probes::printable(output.substr(start, end - start)) << "\n";
      start = end + 1;
    }
  }
  return kOk;
}

// --- report --------------------------------------------------------------

/// Always reads the database read-only, whether the daemon runs or not:
/// every figure comes from committed incidents and events.
int cmd_report(const Globals& g, const std::string& since, bool as_json) {
  auto window = parse_duration(since);
  if (!window || window->count() <= 0) {
    std::cerr << "storewatch: --since " << since
              << " is not a duration (use a number and ms|s|m|h|d, e.g. 7d)\n";
    return kUsage;
  }
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  auto store = open_agent_store(*cfg);
  if (!store) return fail(store.error());
  auto report = agent::build_report(*store, now(), *window);
  if (!report) return fail(report.error());
  if (as_json) {
    print_json(report->to_json());
    return kOk;
  }
  std::cout << report->render(use_colour(stdout));
  return kOk;
}

// --- config check -------------------------------------------------------

int cmd_config_check(const Globals& g) {
  config::LoadOptions options;
  if (!g.conf_dir.empty()) options.conf_dir = g.conf_dir;
  options.probe_types = probes::schemas();
  auto loaded = config::load(g.agent_config(), options);
  print_diagnostics(loaded.diagnostics);
  if (!loaded.ok()) {
    std::size_t errors = 0;
    for (const auto& d : loaded.diagnostics) errors += d.kind == config::Diagnostic::Kind::error;
    std::cerr << fmt::format("{}: {} error{}\n", g.agent_config().string(), errors,
                             errors == 1 ? "" : "s");
    return kUsage;
  }
  const auto& c = *loaded.config;
  auto count = [](std::size_t n, const char* what) {
    return fmt::format("{} {}{}", n, what, n == 1 ? "" : "s");
  };
  std::string extra;
  if (!c.remediations.empty()) extra += ", " + count(c.remediations.size(), "remediation");
  if (!c.silences.empty()) extra += ", " + count(c.silences.size(), "silence");
  std::cout << fmt::format("{}: ok — store {}, {}{}, {} read\n", g.agent_config().string(),
                           c.store.id, count(c.probes.size(), "probe"), extra,
                           count(c.files.size(), "file"));
  return kOk;
}

// --- doctor ----------------------------------------------------------------

int cmd_doctor(const Globals& g, const std::string& timeout, bool as_json) {
  auto t = parse_duration(timeout);
  if (!t || t->count() <= 0) {
    std::cerr << "storewatch: --timeout " << timeout
              << " is not a duration (use a number and ms|s|m, e.g. 3s)\n";
    return kUsage;
  }
  DoctorOptions options;
  options.config = g.agent_config();
  if (!g.conf_dir.empty()) options.conf_dir = g.conf_dir;
  options.timeout = *t;
  const DoctorReport report = run_doctor(options);
  if (as_json) {
    print_json(report.to_json());
  } else {
    std::cout << report.render(use_colour(stdout));
  }
  return report.exit_code();
}

// --- hq --------------------------------------------------------------------

int cmd_hq_run(const Globals& g) {
  auto cfg = load_hq_config(g);
  if (!cfg) return kUsage;
  return hq::run(*cfg);
}

/// Runs `f` on HQ's database, opened read-only; a bad config is a usage
/// error (2), a database that cannot be read a failure (1).
template <class F>
int with_hq_store(const Globals& g, F&& f) {
  auto cfg = load_hq_config(g);
  if (!cfg) return kUsage;
  auto store = hq::HqStore::open(cfg->database, db::Database::Mode::read_only);
  if (!store) return fail(store.error());
  return f(*store);
}

int cmd_hq_stores(const Globals& g, bool as_json) {
  return with_hq_store(g, [&](hq::HqStore& store) {
    auto list = store.stores_json();
    if (!list) return fail(list.error());
    if (as_json) {
      print_json(*list);
      return kOk;
    }
    const bool colour = use_colour(stdout);
    Table t({"STORE", "ONLINE", "ACKED SEQ", "OPEN", "LAST SEEN", "MISSING FROM"});
    for (const auto& s : *list) {
      bool online = s.value("online", false);
      const json& gap = s["gap_from"];
      t.add({s.value("store", ""), online ? "online" : "offline",
             std::to_string(s.value("acked_seq", 0)), std::to_string(s.value("open_incidents", 0)),
             when(s["last_seen"]), gap.is_number() ? std::to_string(gap.get<std::int64_t>()) : "-"},
            {Colour::none, online ? Colour::green : Colour::red, Colour::none, Colour::none,
             Colour::none, gap.is_number() ? Colour::yellow : Colour::none});
    }
    std::cout << (t.empty() ? "No stores have reported yet.\n" : t.render(colour));
    return kOk;
  });
}

int cmd_hq_incidents(const Globals& g, const std::string& store_id, bool open_only, bool as_json) {
  return with_hq_store(g, [&](hq::HqStore& store) {
    auto list =
        store.incidents_json(store_id.empty() ? std::nullopt : std::optional(store_id), open_only);
    if (!list) return fail(list.error());
    if (as_json) {
      print_json(*list);
      return kOk;
    }
    if (list->empty()) {
      std::cout << (open_only ? "No open incidents at HQ.\n" : "No incidents at HQ.\n");
      return kOk;
    }
    Table t(incident_headers(true));
    for (const auto& i : *list) add_incident_row(t, i, true);
    std::cout << t.render(use_colour(stdout));
    return kOk;
  });
}

int cmd_hq_report(const Globals& g, const std::string& store_id, const std::string& since,
                  bool as_json) {
  auto window = parse_duration(since);
  if (!window || window->count() <= 0) {
    std::cerr << "storewatch: --since " << since
              << " is not a duration (use a number and ms|s|m|h|d, e.g. 7d)\n";
    return kUsage;
  }
  return with_hq_store(g, [&](hq::HqStore& store) {
    auto report = hq::build_fleet_report(store, now(), *window,
                                         store_id.empty() ? std::nullopt : std::optional(store_id));
    if (!report) return fail(report.error());
    if (as_json) {
      print_json(report->to_json());
      return kOk;
    }
    std::cout << report->render(use_colour(stdout));
    return kOk;
  });
}

}  // namespace

// --- changes through the daemon ------------------------------------------

/// Sends a change to the daemon (the one writer) and returns its answer, or
/// prints why it could not and returns nullopt.
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

int cmd_incident_action(const Globals& g, const std::string& action, const std::string& uid,
                        const std::string& by, const std::string& note, bool as_json) {
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  json req{{"op", "incident"}, {"action", action}, {"incident", uid}, {"note", note}};
  if (!by.empty()) req["by"] = by;
  auto answer = ask_daemon(*cfg, std::move(req));
  if (!answer) return kFailure;
  const json& inc = (*answer)["incident"];
  if (as_json) {
    print_json(inc);
    return kOk;
  }
  static const std::map<std::string, std::string> kDone = {
      {"ack", "acknowledged"}, {"resolve", "resolved"}, {"close", "closed"}, {"note", "noted"}};
  std::cout << kDone.at(action) << " " << inc.value("uid", "") << " (" << inc.value("probe", "")
            << ", now " << inc.value("state", "") << "): " << inc.value("summary", "") << "\n";
  return kOk;
}

int cmd_silence_add(const Globals& g, const std::string& match, const std::string& length,
                    const std::string& reason, const std::string& by, bool as_json) {
  auto d = parse_duration(length);
  if (!d || *d <= Millis(0)) {
    std::cerr << "storewatch: --for " << length
              << " is not a duration; use a number and a unit (30m, 2h, 1d)\n";
    return kUsage;
  }
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  json req{{"op", "silence_add"}, {"match", match}, {"for_ms", d->count()}, {"reason", reason}};
  if (!by.empty()) req["by"] = by;
  auto answer = ask_daemon(*cfg, std::move(req));
  if (!answer) return kFailure;
  const json& s = (*answer)["silence"];
  if (as_json) {
    print_json(s);
    return kOk;
  }
  std::cout << "silence " << s.value("uid", "") << ": " << s.value("match", "") << " until "
            << when(s["ends_at"]) << "\n";
  return kOk;
}

int cmd_silence_remove(const Globals& g, const std::string& id, const std::string& by) {
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  json req{{"op", "silence_remove"}, {"silence", id}};
  if (!by.empty()) req["by"] = by;
  auto answer = ask_daemon(*cfg, std::move(req));
  if (!answer) return kFailure;
  std::cout << "removed silence " << (*answer)["silence"].value("uid", "") << "\n";
  return kOk;
}

int cmd_silence_list(const Globals& g, bool as_json) {
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  json list;
  auto live = agent::control_request(cfg->agent.control_socket,
                                     json{{"v", agent::kControlVersion}, {"op", "silence_list"}},
                                     std::chrono::seconds(3));
  if (live && live->value("ok", false)) {
    list = json{{"silences", (*live)["silences"]}, {"scheduled", (*live)["scheduled"]}};
  } else {
    auto store = open_agent_store(*cfg);
    json rows = json::array();
    if (store) {
      auto active = store->silences(now());
      if (!active) return fail(active.error());
      for (const auto& r : *active) rows.push_back(r.to_json());
    }
    list = json{{"silences", std::move(rows)},
                {"scheduled", agent::scheduled_silences_json(*cfg, now())}};
  }
  if (as_json) {
    print_json(list);
    return kOk;
  }
  const bool colour = use_colour(stdout);
  Table t({"ID", "MATCH", "UNTIL", "BY", "REASON"});
  for (const auto& s : list["silences"]) {
    t.add({s.value("uid", "").substr(0, 13), s.value("match", ""), when(s["ends_at"]),
           s.value("created_by", ""), s.value("reason", "")});
  }
  std::cout << (list["silences"].empty() ? std::string("no ad-hoc silences in force\n")
                                         : t.render(colour));
  if (!list["scheduled"].empty()) {
    Table sched({"SCHEDULE", "MATCH", "IN FORCE", "NEXT CHANGE", "REASON"});
    for (const auto& s : list["scheduled"]) {
      sched.add({s.value("schedule", ""), s.value("match", ""),
                 s.value("active", false) ? "yes" : "no", when(s["next_change"]),
                 s.value("reason", "")});
    }
    std::cout << "\nfrom the config:\n" << sched.render(colour);
  }
  return kOk;
}

int run_cli(int argc, char** argv) {
  CLI::App app{
      "storewatch — watches a store's lanes, payment terminals, printers and network; opens "
      "incidents locally (even offline), heals what is safe to heal, and syncs every incident "
      "event to HQ over MQTT.",
      "storewatch"};
  app.set_version_flag("--version", std::string("storewatch ") + STOREWATCH_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 failure, 2 usage or config error.\n"
      "Run `storewatch COMMAND --help` for the options of a command.");

  Globals g;
  app.add_option("-c,--config", g.config,
                 "Config file (default $STOREWATCH_CONFIG or /etc/storewatch/storewatch.toml; for "
                 "`hq` commands $STOREWATCH_HQ_CONFIG or /etc/storewatch/hq.toml)");
  app.add_option("--conf-dir", g.conf_dir,
                 "Drop-in directory read after the config file (default: conf.d next to it)");

  int rc = kOk;
  auto sub = [&](CLI::App& parent, const char* name, const char* help) {
    CLI::App* s = parent.add_subcommand(name, help);
    s->fallthrough();
    return s;
  };

  auto* run = sub(app, "run", "Run the daemon: probe, open and resolve incidents, sync to HQ");
  run->callback([&] {
    auto cfg = load_agent_config(g);
    if (!cfg) {
      rc = kUsage;
      return;
    }
    log::set_level(cfg->agent.log_level);
    rc = agent::run_daemon(std::move(*cfg), [&g] {
      config::LoadOptions options;
      if (!g.conf_dir.empty()) options.conf_dir = g.conf_dir;
      options.probe_types = probes::schemas();
      return config::load(g.agent_config(), options);
    });
  });

  bool json_out = false;
  auto* status = sub(app, "status",
                     "Probes with their state, last result and latency; sync and daemon health. "
                     "Asks the daemon, or reads the database when it is down.");
  status->add_flag("--json", json_out, "Print JSON (DESIGN §7 shape) instead of a table");
  status->callback([&] { rc = cmd_status(g, json_out); });

  auto* sync_cmd = sub(app, "sync", "The link to HQ");
  sync_cmd->require_subcommand(1);
  auto* sync_status =
      sub(*sync_cmd, "status",
          "Connected or not and since when, broker, last PUBACK, HQ's acked seq, queued events "
          "and the age of the oldest, reconnect attempts, last error. Asks the daemon, or reads "
          "the database when it is down.");
  sync_status->add_flag("--json", json_out, "Print JSON (docs/SYNC.md shape) instead of text");
  sync_status->callback([&] { rc = cmd_sync_status(g, json_out); });

  bool all = false;
  std::string since;
  auto* incidents = sub(app, "incidents", "List open incidents (all with --all), newest first");
  incidents->add_flag("--all", all, "Include resolved and closed incidents");
  incidents->add_option("--since", since, "Only incidents detected within this long (e.g. 24h)");
  incidents->add_flag("--json", json_out, "Print a JSON array instead of a table");
  incidents->callback([&] { rc = cmd_incidents(g, all, since, json_out); });

  auto* incident = sub(app, "incident", "Look at one incident");
  incident->require_subcommand(1);
  std::string uid;
  auto* show = sub(*incident, "show", "Show an incident and its timeline of events");
  show->add_option("UID", uid, "Incident uid (or a unique start of it)")->required();
  show->add_flag("--json", json_out, "Print JSON with an \"events\" array");
  show->callback([&] { rc = cmd_incident_show(g, uid, json_out); });

  // Human actions: recorded as events with the actor, through the daemon.
  std::string by;
  std::string note;
  struct ActionHelp {
    const char* name;
    const char* help;
  };
  static constexpr ActionHelp kActions[] = {
      {"ack", "Acknowledge an unresolved incident: you are on it (stops further self-healing)"},
      {"resolve", "Resolve an incident: it is fixed. A probe that still fails reopens it"},
      {"close", "Close an incident for good"},
      {"note", "Add a note to an incident's timeline (needs --note)"},
  };
  for (const auto& a : kActions) {
    auto* cmd = sub(app, a.name, a.help);
    cmd->add_option("UID", uid, "Incident uid (or a unique start of it)")->required();
    cmd->add_option("--by", by, "Who you are (default: your login name); recorded as cli:NAME");
    cmd->add_option("--note", note, "A note recorded with the action");
    cmd->add_flag("--json", json_out, "Print the incident after the change as JSON");
    const std::string action = a.name;
    cmd->callback([&, action] { rc = cmd_incident_action(g, action, uid, by, note, json_out); });
  }

  auto* silence =
      sub(app, "silence", "Silence probes for a while (maintenance): add, list, remove");
  silence->require_subcommand(1);
  std::string match;
  std::string length;
  std::string reason;
  auto* silence_add =
      sub(*silence, "add",
          "Silence matching probes from now on: their failures are recorded in_maintenance and "
          "notify nobody; what still fails when the silence ends becomes a normal incident");
  silence_add
      ->add_option("--match", match, "A glob on probe names (\"lane-*\") or a label (\"kind=pos\")")
      ->required();
  silence_add->add_option("--for", length, "How long (30m, 2h, 1d)")->required();
  silence_add->add_option("--reason", reason, "Why (shown to everyone)")->required();
  silence_add->add_option("--by", by, "Who you are (default: your login name)");
  silence_add->add_flag("--json", json_out, "Print the silence as JSON");
  silence_add->callback([&] { rc = cmd_silence_add(g, match, length, reason, by, json_out); });
  auto* silence_list = sub(*silence, "list", "Silences in force, and the config's schedules");
  silence_list->add_flag("--json", json_out, "Print JSON");
  silence_list->callback([&] { rc = cmd_silence_list(g, json_out); });
  std::string silence_id;
  auto* silence_remove = sub(*silence, "remove", "End an ad-hoc silence now");
  silence_remove->add_option("ID", silence_id, "Silence id (or a unique start of it)")->required();
  silence_remove->add_option("--by", by, "Who you are (default: your login name)");
  silence_remove->callback([&] { rc = cmd_silence_remove(g, silence_id, by); });

  std::string report_since = "7d";
  auto* report = sub(app, "report",
                     "MTTD, MTTA (human acks), MTTR with mean, median and p90; auto-heal rate and "
                     "time to self-heal; the probes with most incidents and most downtime. Reads "
                     "the database; see docs/METRICS.md for the definitions.");
  report->add_option("--since", report_since,
                     "Incidents detected within this long before now (default 7d)");
  report->add_flag("--json", json_out, "Print JSON (docs/METRICS.md shape) instead of tables");
  report->callback([&] { rc = cmd_report(g, report_since, json_out); });

  auto* probe_cmd = sub(app, "probe", "Run probes now; list the probe types and their keys");
  probe_cmd->require_subcommand(1);
  std::vector<std::string> probe_names;
  bool probe_all = false;
  auto* probe_run =
      sub(*probe_cmd, "run",
          "Run probes from the config now and print their results (status, latency, message, "
          "metrics), all at once on one loop. Needs no daemon. Exit 0 when every probe is ok or "
          "warn, 1 when any is fail or unknown, 2 for a config error or an unknown probe.");
  probe_run->add_option("NAME", probe_names, "Probe names in the config");
  probe_run->add_flag("--all", probe_all, "Run every probe in the config");
  probe_run->add_flag("--json", json_out,
                      "Print JSON: one probe by name gives the DESIGN §7 object, several or "
                      "--all an array of them");
  probe_run->callback([&] { rc = cmd_probe_run(g, probe_names, probe_all, json_out); });

  auto* probe_types = sub(*probe_cmd, "types",
                          "List every probe type with its config keys, kinds, defaults and what "
                          "each key is for");
  probe_types->add_flag("--json", json_out, "Print a JSON array instead of tables");
  probe_types->callback([&] { rc = cmd_probe_types(json_out); });

  auto* notify_cmd = sub(app, "notify", "The [[notify]] channels (Slack, Teams, email, webhook)");
  notify_cmd->require_subcommand(1);
  std::string channel;
  auto* notify_test_cmd =
      sub(*notify_cmd, "test",
          "Send a test notice through one channel now and print what happened (needs no "
          "daemon; exit 0 sent, 1 failed, 2 unknown channel)");
  notify_test_cmd->add_option("NAME", channel, "The [[notify]] name")->required();
  notify_test_cmd->add_flag("--json", json_out, "Print JSON instead of text");
  notify_test_cmd->callback([&] {
    auto cfg = load_agent_config(g);
    rc = cfg ? agent::notify_test(*cfg, channel, json_out) : kUsage;
  });

  auto* config_cmd = sub(app, "config", "Work with the config file");
  config_cmd->require_subcommand(1);
  auto* check = sub(*config_cmd, "check",
                    "Validate the config: exit 0, or print every error as file:line:col and exit "
                    "2. Missing secret or CA files are warnings. Creates nothing.");
  check->callback([&] { rc = cmd_config_check(g); });
  std::string polkit_out;
  auto* polkit = sub(*config_cmd, "polkit",
                     "Print the polkit rule that lets user storewatch restart exactly the units "
                     "of the config's systemd-restart remediations (exit 2 on config errors)");
  polkit->add_option("-o,--output", polkit_out,
                     "Write it to FILE at once instead, e.g. "
                     "/etc/polkit-1/rules.d/50-storewatch.rules; left as it was on errors");
  polkit->callback([&] {
    auto cfg = load_agent_config(g);
    if (!cfg) {
      rc = kUsage;
      return;
    }
    const std::string rule = agent::polkit_rule(agent::restart_units(*cfg));
    if (polkit_out.empty()) {
      std::cout << rule;
    } else if (auto w = agent::write_polkit_rule(polkit_out, rule); !w) {
      rc = fail(w.error());
      return;
    }
    rc = kOk;
  });

  std::string doctor_timeout = "3s";
  auto* doctor = sub(
      app, "doctor",
      "Check everything storewatch needs on this gateway and say what to do about each problem: "
      "the config (every error as file:line:col), the database (quick_check, size, WAL, schema "
      "version, readable by you), the daemon behind the control socket, the broker (the "
      "daemon's link, or a direct TCP/TLS connect when it is down), the clock's skew (with the "
      "config's system clock probes) and the free disk space of the state directory. Needs no "
      "daemon and changes nothing. Exit 0 when no check fails (warnings included), 1 when one "
      "does, 2 for a usage error. docs/DOCTOR.md has the checks and the JSON shape.");
  doctor->add_option("--timeout", doctor_timeout,
                     "How long each network step may take: the daemon's answer, the broker's "
                     "connect and TLS handshake (default 3s)");
  doctor->add_flag("--json", json_out, "Print JSON (docs/DOCTOR.md shape) instead of text");
  doctor->callback([&] { rc = cmd_doctor(g, doctor_timeout, json_out); });

  auto* hq_cmd = sub(app, "hq", "Headquarters side: ingest store events, fleet views");
  hq_cmd->require_subcommand(1);
  auto* hq_run = sub(*hq_cmd, "run", "Run HQ ingest: store every store's events once, ack them");
  hq_run->callback([&] { rc = cmd_hq_run(g); });
  auto* hq_stores =
      sub(*hq_cmd, "stores", "Every store HQ knows: online, acked seq, open incidents");
  hq_stores->add_flag("--json", json_out, "Print a JSON array instead of a table");
  hq_stores->callback([&] { rc = cmd_hq_stores(g, json_out); });
  std::string hq_store;
  bool open_only = false;
  auto* hq_incidents =
      sub(*hq_cmd, "incidents", "Every incident HQ knows (resolved and closed too)");
  hq_incidents->add_option("--store", hq_store, "Only this store's incidents");
  hq_incidents->add_flag("--open", open_only, "Only incidents not resolved or closed");
  hq_incidents->add_flag("--json", json_out, "Print a JSON array instead of a table");
  hq_incidents->callback([&] { rc = cmd_hq_incidents(g, hq_store, open_only, json_out); });
  std::string hq_since = "7d";
  auto* hq_report =
      sub(*hq_cmd, "report",
          "MTTD, MTTA, MTTR and auto-heal rate per store and fleet-wide, from the "
          "incidents the stores sent (docs/METRICS.md definitions, docs/HQ.md shape)");
  hq_report->add_option("--store", hq_store, "Only this store");
  hq_report->add_option("--since", hq_since,
                        "Incidents detected within this long before now (default 7d)");
  hq_report->add_flag("--json", json_out, "Print JSON instead of tables");
  hq_report->callback([&] { rc = cmd_hq_report(g, hq_store, hq_since, json_out); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kOk : kUsage;
  }
  return rc;
}

}  // namespace storewatch::cli
