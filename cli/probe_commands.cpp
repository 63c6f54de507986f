// probe run, probe types: run the config's probes now; list the probe types
// and their keys.
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <iostream>
#include <memory>

#include "agent/status.h"
#include "cli/commands.h"
#include "probes/registry.h"
#include "probes/run_once.h"

namespace storewatch::cli {

using nlohmann::json;

namespace {

std::string text_of(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

bool answered(probes::ProbeStatus s) {
  return s == probes::ProbeStatus::ok || s == probes::ProbeStatus::warn;
}

/// "7 probes: 5 ok, 1 failing, 1 not answering". A device that answered
/// with an error (refused, HTTP 500, paper out) is failing; only one that
/// gave no answer at all (a timeout, every echo lost) is not answering.
std::string summary_line(const std::vector<probes::ProbeResult>& results) {
  std::size_t ok = 0, warn = 0, failing = 0, silent = 0, unknown = 0;
  for (const auto& r : results) {
    switch (r.status) {
      case probes::ProbeStatus::ok: ++ok; break;
      case probes::ProbeStatus::warn: ++warn; break;
      case probes::ProbeStatus::fail: ++(r.no_answer ? silent : failing); break;
      case probes::ProbeStatus::unknown: ++unknown; break;
    }
  }
  std::string parts;
  auto add = [&](std::size_t n, const std::string& what) {
    if (n == 0) return;
    parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", n, what);
  };
  add(ok, "ok");
  add(warn, warn == 1 ? "warning" : "warnings");
  add(failing, "failing");
  add(silent, "not answering");
  add(unknown, "unknown");
  return fmt::format("{} probe{}: {}", results.size(), results.size() == 1 ? "" : "s", parts);
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
  std::cout << t.render(colour) << "\n" << summary_line(results) << "\n";
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

struct ProbeOptions {
  std::vector<std::string> names;
  bool all = false;
  bool json_out = false;
};

}  // namespace

void add_probe_commands(CLI::App& app, const Globals& g, int& rc) {
  auto o = std::make_shared<ProbeOptions>();
  auto* probe_cmd = sub(app, "probe", "Run probes now; list the probe types and their keys");
  probe_cmd->require_subcommand(1);
  auto* probe_run =
      sub(*probe_cmd, "run",
          "Run probes from the config now and print their results (status, latency, message, "
          "metrics), all at once on one loop. Needs no daemon. Exit 0 when every probe is ok or "
          "warn, 1 when any is fail or unknown, 2 for a config error or an unknown probe.");
  probe_run->add_option("NAME", o->names, "Probe names in the config");
  probe_run->add_flag("--all", o->all, "Run every probe in the config");
  probe_run->add_flag("--json", o->json_out,
                      "Print JSON: one probe by name gives the DESIGN §7 object, several or "
                      "--all an array of them");
  probe_run->callback([&g, &rc, o] { rc = cmd_probe_run(g, o->names, o->all, o->json_out); });

  auto* probe_types = sub(*probe_cmd, "types",
                          "List every probe type with its config keys, kinds, defaults and what "
                          "each key is for");
  probe_types->add_flag("--json", o->json_out, "Print a JSON array instead of tables");
  probe_types->callback([&rc, o] { rc = cmd_probe_types(o->json_out); });
}

}  // namespace storewatch::cli
