// silence add, list, remove: ad-hoc silences through the daemon, and the
// config's scheduled ones.
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "agent/control_ops.h"
#include "agent/control_server.h"
#include "cli/commands.h"

namespace storewatch::cli {

using nlohmann::json;

namespace {

int cmd_silence_add(const Globals& g, const std::string& match, const std::string& length,
                    const std::string& reason, const std::string& by, bool as_json) {
  auto d = parse_duration_option("--for", length, true, "2h");
  if (!d) return usage(d.error());
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  json req{{"op", "silence_add"}, {"match", match}, {"for_ms", d->count()}, {"reason", reason}};
  if (!by.empty()) req["by"] = by;
  add_sudo_user(req);
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
  add_sudo_user(req);
  auto answer = ask_daemon(*cfg, std::move(req));
  if (!answer) return kFailure;
  std::cout << "removed silence " << (*answer)["silence"].value("uid", "") << "\n";
  return kOk;
}

int cmd_silence_list(const Globals& g, bool as_json, bool wide) {
  auto cfg = load_agent_config(g);
  if (!cfg) return kUsage;
  json list;
  // As `status`: a hung daemon does not hold the command up, and a
  // database the user may not read is said so, never "no silences".
  auto live = agent::call_daemon(cfg->agent.control_socket,
                                 json{{"v", agent::kControlVersion}, {"op", "silence_list"}},
                                 kStatusTimeout);
  if (live.state == agent::DaemonState::running && live.response.value("ok", false)) {
    list = json{{"silences", live.response["silences"]}, {"scheduled", live.response["scheduled"]}};
  } else {
    auto store = open_agent_store(*cfg);
    if (!store) return fail(store.error());
    json rows = json::array();
    auto active = store->silences(now());
    if (!active) return fail(active.error());
    for (const auto& r : *active) rows.push_back(r.to_json());
    list = json{{"silences", std::move(rows)},
                {"scheduled", agent::scheduled_silences_json(*cfg, now())}};
  }
  if (as_json) {
    print_json(list);
    return kOk;
  }
  const bool colour = use_colour(stdout);
  const std::size_t width = table_width(wide);
  // On a narrow terminal REASON is cut, UNTIL says only how long, BY goes.
  Table t({"ID", "MATCH", "UNTIL", "BY", "REASON"});
  t.truncatable(4, 16).droppable(3, 1);
  const auto ids = shown_uids(list["silences"], wide);
  for (std::size_t k = 0; k < ids.size(); ++k) {
    const json& s = list["silences"][k];
    t.add({ids[k], s.value("match", ""), when(s["ends_at"]), s.value("created_by", ""),
           s.value("reason", "")},
          {}, {"", "", ago(s["ends_at"])});
  }
  std::cout << (list["silences"].empty() ? std::string("no ad-hoc silences in force\n")
                                         : t.render(colour, width));
  if (!list["scheduled"].empty()) {
    Table sched({"SCHEDULE", "MATCH", "IN FORCE", "NEXT CHANGE", "REASON"});
    sched.truncatable(4, 16);
    for (const auto& s : list["scheduled"]) {
      sched.add(
          {s.value("schedule", ""), s.value("match", ""), s.value("active", false) ? "yes" : "no",
           when(s["next_change"]), s.value("reason", "")},
          {}, {"", "", "", ago(s["next_change"])});
    }
    std::cout << "\nfrom the config:\n" << sched.render(colour, width);
  }
  return kOk;
}

struct SilenceOptions {
  std::string match;
  std::string length;
  std::string reason;
  std::string by;
  std::string id;
  bool json_out = false;
  bool wide = false;
};

}  // namespace

void add_silence_commands(CLI::App& app, const Globals& g, int& rc) {
  auto o = std::make_shared<SilenceOptions>();
  auto* silence =
      sub(app, "silence", "Silence probes for a while (maintenance): add, list, remove");
  silence->require_subcommand(1);
  auto* silence_add =
      sub(*silence, "add",
          "Silence matching probes from now on: their failures are recorded in_maintenance and "
          "notify nobody; what still fails when the silence ends becomes a normal incident");
  silence_add
      ->add_option("--match", o->match,
                   "A glob on probe names (\"lane-*\") or a label (\"kind=pos\")")
      ->required();
  silence_add->add_option("--for", o->length, "How long (30m, 2h, 1d)")->required();
  silence_add->add_option("--reason", o->reason, "Why (shown to everyone)")->required();
  silence_add->add_option("--by", o->by, "Who you are (default: your login name)");
  silence_add->add_flag("--json", o->json_out, "Print the silence as JSON");
  silence_add->callback([&g, &rc, o] {
    rc = cmd_silence_add(g, o->match, o->length, o->reason, o->by, o->json_out);
  });
  auto* silence_list = sub(*silence, "list", "Silences in force, and the config's schedules");
  silence_list->add_flag("--json", o->json_out, "Print JSON");
  silence_list->add_flag("--wide", o->wide,
                         "Whole ids and rows, whatever the width of the terminal ($COLUMNS)");
  silence_list->callback([&g, &rc, o] { rc = cmd_silence_list(g, o->json_out, o->wide); });
  auto* silence_remove = sub(*silence, "remove", "End an ad-hoc silence now");
  silence_remove->add_option("ID", o->id, "Silence id (or a unique start of it)")->required();
  silence_remove->add_option("--by", o->by, "Who you are (default: your login name)");
  silence_remove->callback([&g, &rc, o] { rc = cmd_silence_remove(g, o->id, o->by); });
}

}  // namespace storewatch::cli
