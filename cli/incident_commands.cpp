// incidents, incident show, and the human actions on an incident: ack,
// resolve, close, note.
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>

#include "agent/control_ops.h"
#include "cli/commands.h"
#include "probes/perfdata.h"
#include "probes/run_once.h"

namespace storewatch::cli {

using nlohmann::json;

namespace {

int cmd_incidents(const Globals& g, bool all, const std::string& since, bool as_json, bool wide) {
  std::optional<WallTime> since_time;
  if (!since.empty()) {
    auto d = parse_since(since, false, "24h");
    if (!d) return usage(d.error());
    since_time = now() - *d;
  }
  int rc = kOk;
  auto read = read_agent(g, rc);
  if (!read) return rc;
  auto rows = read->store.incidents(!all, since_time);
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
  for (auto& i : list) {
    // When a reopened one last reopened: its newest `reopened` event.
    if (i.value("reopen_count", 0) > 0) {
      if (auto events = read->store.events_of(i.value("uid", "")); events) {
        for (const auto& e : *events) {
          if (e.type == "reopened") i["t_reopened"] = e.at;
        }
      }
    }
  }
  std::cout << incident_table(list, false, wide).render(use_colour(stdout), table_width(wide));
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

/// "2nd", "3rd", "11th".
std::string ordinal(int n) {
  const int tens = n % 100, ones = n % 10;
  const char* suffix = "th";
  if (tens < 11 || tens > 13) {
    if (ones == 1) suffix = "st";
    if (ones == 2) suffix = "nd";
    if (ones == 3) suffix = "rd";
  }
  return std::to_string(n) + suffix;
}

int cmd_incident_show(const Globals& g, const std::string& uid, bool as_json, bool wide) {
  int rc = kOk;
  auto read = read_agent(g, rc);
  if (!read) return rc;
  auto inc = read->store.incident(uid);
  if (!inc) return fail(inc.error());
  if (!*inc) {
    std::cerr << "storewatch: no incident " << uid << " (see `storewatch incidents --all`)\n";
    return kFailure;
  }
  auto events = read->store.events_of((*inc)->uid);
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
  // When it last reopened: its newest `reopened` event.
  json reopened_at = nullptr;
  for (const auto& e : timeline) {
    if (e["type"] == "reopened") reopened_at = e["at"];
  }
  j["t_reopened"] = reopened_at;
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
  if (const int n = j.value("reopen_count", 0); n > 0) {
    std::cout << "  reopened  " << when(reopened_at)
              << (n > 1 ? ", " + ordinal(n) + " time" : std::string()) << "\n";
  }
  if (!j["t_restored"].is_null()) std::cout << "  restored  " << when(j["t_restored"]) << "\n";
  std::cout << "\ntimeline\n";
  // On a narrow terminal DETAIL is cut and AT loses its "(3h ago)".
  Table t({"SEQ", "AT", "EVENT", "BY", "DETAIL"});
  t.truncatable(4, 20);
  for (const auto& e : timeline) {
    const std::string at = when(e["at"]);
    t.add({std::to_string(e["seq"].get<std::int64_t>()), at, e["type"],
           agent::actor_shown(e["actor"], e.value("body", json::object())), event_detail(e)},
          {}, {"", at.substr(0, at.find(" ("))});
  }
  std::cout << t.render(colour, table_width(wide));
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

/// A fresh check of `probe_name` from `cfg`, run here as `probe run` does:
/// whether it passes now (ok or warn), and what it said. nullopt when the
/// config has no such probe.
std::optional<std::pair<bool, std::string>> check_now(const config::Config& cfg,
                                                      const std::string& probe_name) {
  for (const auto& p : cfg.probes) {
    if (p.name != probe_name) continue;
    std::cerr << "checking " << probe_name << " now…\n";
    const probes::ProbeResult r = probes::run_once(p);
    const bool passes =
        r.status == probes::ProbeStatus::ok || r.status == probes::ProbeStatus::warn;
    return std::make_pair(passes, r.message);
  }
  return std::nullopt;
}

int cmd_incident_action(const Globals& g, const std::string& action, const std::string& uid,
                        const std::string& by, const std::string& note, bool force, bool as_json) {
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  json req{{"op", "incident"}, {"action", action}, {"incident", uid}, {"note", note}};
  if (!by.empty()) req["by"] = by;
  add_sudo_user(req);
  // The resolve of an incident whose probe failed its last check: the
  // daemon refuses it unless forced (`"force": false`). The probe is then
  // checked here, now — the engine's last check may be seconds old and the
  // fix just made. Passing now, the resolve goes ahead. Still failing, a
  // person at a terminal is asked to confirm (--force); a script's resolve
  // is done, and the warning goes to stderr.
  if (action == "resolve") req["force"] = force;
  json refusal;
  auto answer = ask_daemon(*cfg, req, &refusal);
  bool passes_now = false;
  std::string warning;
  if (!answer && refusal.is_object() && refusal.contains("still_failing")) {
    const json& still = refusal["still_failing"];
    const std::string probe = still.value("probe", std::string());
    warning = still.value("warning", std::string());
    const auto now_checked = check_now(*cfg, probe);
    passes_now = now_checked && now_checked->first;
    if (passes_now) {
      std::cerr << probe << " passes now (" << now_checked->second << ")\n";
    } else if (const auto next = warning.find("the engine will");
               now_checked && next != std::string::npos) {
      const WallTime t = now();
      warning = fmt::format("{} still fails ({} at {}); {}", probe, now_checked->second,
                            agent::clock_time(t, t), warning.substr(next));
    }
    if (!passes_now && ::isatty(STDIN_FILENO) == 1) {
      std::cerr << "storewatch: " << warning
                << ".\nNothing was changed: run again with --force to resolve it anyway.\n";
      return kFailure;
    }
    req["force"] = true;
    refusal = json();
    answer = ask_daemon(*cfg, req, &refusal);
  }
  if (!answer) {
    if (!refusal.is_object()) return kFailure;  // ask_daemon said why
    std::cerr << "storewatch: " << refusal.value("error", std::string("the daemon refused"))
              << "\n";
    return kFailure;
  }
  if (warning.empty() && answer->contains("still_failing")) {
    warning = (*answer)["still_failing"].value("warning", std::string());  // --force given
  }
  if (!passes_now && !warning.empty()) std::cerr << "storewatch: warning: " << warning << "\n";
  const json& inc = (*answer)["incident"];
  if (as_json) {
    print_json(inc);
    return kOk;
  }
  static const std::map<std::string, std::string> kDone = {
      {"ack", "acknowledged"}, {"resolve", "resolved"}, {"close", "closed"}, {"note", "noted"}};
  std::cout << kDone.at(action) << " " << inc.value("uid", "") << " (" << inc.value("probe", "")
            << ", now " << inc.value("state", "") << ") by "
            << agent::actor_shown(answer->value("actor", std::string()), *answer) << ": "
            << inc.value("summary", "") << "\n";
  return kOk;
}

struct IncidentOptions {
  bool all = false;
  std::string since;
  std::string uid;
  std::string by;
  std::string note;
  bool force = false;
  bool json_out = false;
  bool wide = false;
};

}  // namespace

void add_incident_commands(CLI::App& app, const Globals& g, int& rc) {
  auto o = std::make_shared<IncidentOptions>();
  auto* incidents = sub(app, "incidents", "List open incidents (all with --all), newest first");
  incidents->add_flag("--all", o->all, "Include resolved and closed incidents");
  incidents->add_option("--since", o->since, "Only incidents detected within this long (e.g. 24h)");
  incidents->add_flag("--json", o->json_out, "Print a JSON array instead of a table");
  incidents->add_flag("--wide", o->wide,
                      "Whole uids and rows, whatever the width of the terminal ($COLUMNS)");
  incidents->callback(
      [&g, &rc, o] { rc = cmd_incidents(g, o->all, o->since, o->json_out, o->wide); });

  auto* incident = sub(app, "incident", "Look at one incident");
  incident->require_subcommand(1);
  auto* show = sub(*incident, "show", "Show an incident and its timeline of events");
  show->add_option("UID", o->uid, "Incident uid (or a unique start of it)")->required();
  show->add_flag("--json", o->json_out, "Print JSON with an \"events\" array");
  show->add_flag("--wide", o->wide,
                 "The timeline's details whole, whatever the width of the terminal ($COLUMNS)");
  show->callback([&g, &rc, o] { rc = cmd_incident_show(g, o->uid, o->json_out, o->wide); });

  // Human actions: recorded as events with the actor, through the daemon.
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
    cmd->add_option("UID", o->uid, "Incident uid (or a unique start of it)")->required();
    cmd->add_option("--by", o->by,
                    "Who you are (default: your login name, under sudo the one who ran sudo); "
                    "recorded as cli:NAME");
    cmd->add_option("--note", o->note, "A note recorded with the action");
    cmd->add_flag("--json", o->json_out, "Print the incident after the change as JSON");
    const std::string action = a.name;
    if (action == "resolve") {
      cmd->add_flag("--force", o->force,
                    "Resolve it even though its probe still fails (it reopens after its next "
                    "failed checks); needed on a terminal");
    }
    cmd->callback([&g, &rc, o, action] {
      rc = cmd_incident_action(g, action, o->uid, o->by, o->note, o->force, o->json_out);
    });
  }
}

}  // namespace storewatch::cli
