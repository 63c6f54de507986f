// status and sync status: the daemon's view, or the database's when it is down.
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <iostream>
#include <memory>

#include "agent/status.h"
#include "cli/commands.h"

namespace storewatch::cli {

using nlohmann::json;

namespace {

/// Prints a daemon that did not answer: why, and what to do.
void print_daemon_trouble(const DaemonView& daemon, bool colour) {
  if (daemon.state == agent::DaemonState::running && daemon.error.empty()) return;
  // The fix says why for the other states; a refusal is the daemon's own word.
  if (daemon.state == agent::DaemonState::running) std::cout << "  " << daemon.error << "\n";
  for (const auto& step : daemon.fix())
    std::cout << "  " << paint(step, Colour::dim, colour) << "\n";
}

/// "first check at 12:00:58Z" (the date too when not today, UTC), or
/// "checking now" while its check runs.
std::string first_check_text(const json& next_check) {
  if (!next_check.is_string()) return "checking now";
  auto t = parse_rfc3339(next_check.get<std::string>());
  if (!t) return "first check at " + next_check.get<std::string>();
  const std::string s = format_rfc3339(*t);
  const bool today = s.substr(0, 10) == format_rfc3339(now()).substr(0, 10);
  return "first check at " + (today ? "" : s.substr(0, 10) + " ") + s.substr(11, 8) + "Z";
}

int cmd_status(const Globals& g, bool as_json) {
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  const DaemonView daemon = ask_daemon_status(*cfg);
  json status;
  if (daemon.status) {
    status = *daemon.status;
  } else {
    // Show what the database knows: the last state the daemon saved.
    auto store = open_agent_store(*cfg);
    if (!store) {
      // Nothing on stdout for --json: when it prints, it has the DESIGN §7
      // shape (store, probes, sync); the exit code says the daemon's state.
      if (!as_json) {
        std::cout << "daemon " << daemon.describe() << "\n";
        print_daemon_trouble(daemon, use_colour(stdout));
      }
      std::cerr << "storewatch: " << store.error().message << "\n";
      return daemon.state == agent::DaemonState::running ? kFailure : daemon.exit_code();
    }
    auto s = agent::status_from_store(*cfg, *store);
    if (!s) return fail(s.error());
    status = std::move(*s);
  }
  status["daemon"] = daemon.to_json();
  const int rc = daemon.status ? kOk : daemon.exit_code();
  if (as_json) {
    print_json(status);
    return rc;
  }
  const bool colour = use_colour(stdout);
  const json& agent = status["agent"];
  const json& sync = status["sync"];
  std::cout << paint("store " + status.value("store", ""), Colour::bold, colour) << "  ";
  if (daemon.status) {
    std::cout << "daemon " << paint("running", Colour::green, colour) << " (pid "
              << agent.value("pid", 0) << ", since " << when(agent["started_at"]) << ")\n";
  } else {
    const bool denied = daemon.state == agent::DaemonState::permission_denied;
    std::cout << "daemon "
              << paint(daemon.describe(), denied ? Colour::yellow : Colour::red, colour)
              << "\n  showing the state last saved in the database\n";
    print_daemon_trouble(daemon, colour);
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
  std::cout << "sync: ";
  if (daemon.status) {
    std::cout << (sync.value("connected", false) ? paint("connected", Colour::green, colour)
                                                 : paint("offline", Colour::yellow, colour));
  } else if (daemon.state == agent::DaemonState::not_running) {
    std::cout << paint("offline", Colour::yellow, colour) << " (the daemon is not running)";
  } else {
    std::cout << paint("unknown", Colour::yellow, colour) << " (the daemon did not answer)";
  }
  std::cout << " to " << sync.value("broker", std::string("?")) << ", " << sync.value("queued", 0)
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
  // On a narrow terminal: the message is cut, LAST CHECK says only how long
  // ago, then TYPE and LATENCY go.
  t.truncatable(5, 20).droppable(1, 1).droppable(4, 2);
  for (const auto& p : status["probes"]) {
    std::string state = p.value("state", "unknown");
    std::string latency =
        p["latency_ms"].is_number() ? fmt::format("{:.1f} ms", p["latency_ms"].get<double>()) : "-";
    std::string message = p.value("message", "");
    if (p.value("pending", false)) {
      // Not checked since the daemon started or its state was reset: the
      // message is an earlier check's, so say when the next one comes.
      state = "pending (" + first_check_text(p["next_check"]) + ")";
      message.clear();
    }
    t.add(
        {p.value("name", ""), p.value("type", ""), state, when(p["last_check"]), latency, message},
        {Colour::none, Colour::none, colour_of(state)}, {"", "", "", ago(p["last_check"])});
  }
  std::cout << t.render(colour, terminal_width(stdout));
  return rc;
}

int cmd_sync_status(const Globals& g, bool as_json) {
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  const DaemonView daemon = ask_daemon_status(*cfg);
  json sync;
  if (daemon.status) {
    sync = (*daemon.status)["sync"];
  } else {
    auto store = open_agent_store(*cfg);
    if (!store) {
      if (!as_json) {
        std::cout << "daemon   " << daemon.describe() << "\n";
        print_daemon_trouble(daemon, use_colour(stdout));
      }
      return fail(store.error());
    }
    auto s = agent::sync_json_from_store(*cfg, *store, now());
    if (!s) return fail(s.error());
    sync = std::move(*s);
  }
  sync["daemon"] = daemon.to_json();
  if (as_json) {
    print_json(sync);
    return kOk;
  }
  const bool colour = use_colour(stdout);
  auto number = [](const json& v) { return v.is_number() ? v.dump() : std::string("-"); };
  const bool running = daemon.status.has_value() && sync.value("daemon_running", false);
  std::cout << "broker   " << sync.value("broker", std::string("?")) << "\n";
  if (!running) {
    std::cout << "daemon   "
              << paint(daemon.describe(),
                       daemon.state == agent::DaemonState::permission_denied ? Colour::yellow
                                                                             : Colour::red,
                       colour)
              << " (what the database knows)\n";
    print_daemon_trouble(daemon, colour);
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

}  // namespace

void add_status_commands(CLI::App& app, const Globals& g, int& rc) {
  auto json_out = std::make_shared<bool>(false);
  auto* status = sub(app, "status",
                     "Probes with their state, last result and latency; sync and daemon health. "
                     "Asks the daemon, or reads the database when it does not answer and says "
                     "why. Exit 0: the daemon runs; 3: it is not running or not answering; "
                     "4: you may not ask it (permission denied); 2: the config does not load.");
  status->add_flag("--json", *json_out, "Print JSON (DESIGN §7 shape) instead of a table");
  status->callback([&g, &rc, json_out] { rc = cmd_status(g, *json_out); });

  auto* sync_cmd = sub(app, "sync", "The link to HQ");
  sync_cmd->require_subcommand(1);
  auto* sync_status =
      sub(*sync_cmd, "status",
          "Connected or not and since when, broker, last PUBACK, HQ's acked seq, queued events "
          "and the age of the oldest, reconnect attempts, last error. Asks the daemon, or reads "
          "the database when it does not answer and says why.");
  sync_status->add_flag("--json", *json_out, "Print JSON (docs/SYNC.md shape) instead of text");
  sync_status->callback([&g, &rc, json_out] { rc = cmd_sync_status(g, *json_out); });
}

}  // namespace storewatch::cli
