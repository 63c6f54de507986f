// incidents, incident show, and the human actions on an incident: ack,
// resolve, close, note.
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <iostream>
#include <map>
#include <memory>

#include "cli/commands.h"
#include "probes/perfdata.h"

namespace storewatch::cli {

using nlohmann::json;

namespace {

int cmd_incidents(const Globals& g, bool all, const std::string& since, bool as_json) {
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

struct IncidentOptions {
  bool all = false;
  std::string since;
  std::string uid;
  std::string by;
  std::string note;
  bool json_out = false;
};

}  // namespace

void add_incident_commands(CLI::App& app, const Globals& g, int& rc) {
  auto o = std::make_shared<IncidentOptions>();
  auto* incidents = sub(app, "incidents", "List open incidents (all with --all), newest first");
  incidents->add_flag("--all", o->all, "Include resolved and closed incidents");
  incidents->add_option("--since", o->since, "Only incidents detected within this long (e.g. 24h)");
  incidents->add_flag("--json", o->json_out, "Print a JSON array instead of a table");
  incidents->callback([&g, &rc, o] { rc = cmd_incidents(g, o->all, o->since, o->json_out); });

  auto* incident = sub(app, "incident", "Look at one incident");
  incident->require_subcommand(1);
  auto* show = sub(*incident, "show", "Show an incident and its timeline of events");
  show->add_option("UID", o->uid, "Incident uid (or a unique start of it)")->required();
  show->add_flag("--json", o->json_out, "Print JSON with an \"events\" array");
  show->callback([&g, &rc, o] { rc = cmd_incident_show(g, o->uid, o->json_out); });

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
    cmd->add_option("--by", o->by, "Who you are (default: your login name); recorded as cli:NAME");
    cmd->add_option("--note", o->note, "A note recorded with the action");
    cmd->add_flag("--json", o->json_out, "Print the incident after the change as JSON");
    const std::string action = a.name;
    cmd->callback([&g, &rc, o, action] {
      rc = cmd_incident_action(g, action, o->uid, o->by, o->note, o->json_out);
    });
  }
}

}  // namespace storewatch::cli
