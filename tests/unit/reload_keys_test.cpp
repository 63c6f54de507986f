// Every key the loader takes in a section that needs a restart, changed by a
// reload: refused (agent/reload.h). No list of keys here or in
// agent/reload.cpp: the keys come from the loader's own table, and
// diff_config compares whole sections.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "agent/reload.h"
#include "config/config.h"

namespace storewatch::agent {
namespace restart_keys {

/// A section as TOML: its header and its keys (key → TOML value).
struct Section {
  std::string header;  ///< "[sync]", "[[notify]]"
  std::map<std::string, std::string> keys;
};

/// The [store] every config here has, unless the section under test is [store].
const Section kStore{"[store]", {{"id", "\"store-0042\""}}};

std::string render(const Section& s) {
  std::string out = s.header + "\n";
  for (const auto& [k, v] : s.keys) out += k + " = " + v + "\n";
  return out;
}

config::Loaded<config::Config> load(const Section& s) {
  const std::string text = (s.header == kStore.header ? "" : render(kStore) + "\n") + render(s);
  return config::load_string(text, "reload-keys.toml", {});
}

std::string diagnostics(const config::Loaded<config::Config>& l) {
  std::string out;
  for (const auto& d : l.diagnostics) out += config::to_string(d) + "\n";
  return out;
}

/// The keys the loader takes in `s`, as its error for an unknown key lists
/// them ("unknown key \"x\" (known keys: a, b, c)"): the table it checks
/// every config against, which a new key joins.
std::vector<std::string> loader_keys(Section s) {
  s.keys["no_such_key"] = "1";
  const std::string all = diagnostics(load(s));
  const std::string marker = "(known keys: ";
  const auto at = all.find(marker);
  if (at == std::string::npos) {
    ADD_FAILURE() << "no list of known keys in:\n" << all;
    return {};
  }
  const auto end = all.find(')', at);
  std::vector<std::string> keys;
  std::istringstream list(all.substr(at + marker.size(), end - at - marker.size()));
  for (std::string k; std::getline(list, k, ',');) {
    k.erase(0, k.find_first_not_of(' '));
    keys.push_back(k);
  }
  return keys;
}

/// Values to try for a key, as TOML: the first that loads and changes the
/// config is the change. A key of a kind none of these fits fails the test
/// below by name: add a value here, not the key anywhere.
const std::vector<std::string> kCandidates = {
    "\"changed\"",
    "\"changed/v2\"",
    "\"ssl://changed.example:8883\"",
    "\"/nonexistent/changed\"",
    "\"36h\"",
    "\"7s\"",
    "\"64MB\"",
    "7",
    "40",
    "true",
    "false",
    "\"debug\"",
    "\"high\"",
    "\"optional\"",
    "\"slack\"",
    "\"Mon-Fri 08:00-20:00\"",
    "\"Europe/Paris\"",
    "\"changed@example.com\"",
    "\"smtps://changed.example:465\"",
    "\"http://proxy.example:3128\"",
    "[\"changed@example.com\"]",
    "[\"opened\"]",
};

struct Outcome {
  std::string key;
  std::optional<ConfigChange> change;  ///< nullopt: no candidate changed the config
  std::string why_not;                 ///< each value tried, and why it did not load
};

/// Changes each key of `base` the loader takes, one at a time, and diffs the
/// running config (`base`) against the changed one.
std::vector<Outcome> change_each_key(const Section& base) {
  const auto running = load(base);
  EXPECT_TRUE(running.ok()) << diagnostics(running);
  if (!running.ok()) return {};
  std::vector<Outcome> out;
  for (const std::string& key : loader_keys(base)) {
    Outcome o{key, std::nullopt, ""};
    for (const std::string& value : kCandidates) {
      Section changed = base;
      changed.keys[key] = value;
      const auto next = load(changed);
      if (!next.ok()) {
        o.why_not += value + ": " + diagnostics(next);
        continue;
      }
      config::Config same_place = *next.config;
      same_place.files = running.config->files;
      if (same_place == *running.config) continue;  // the default, or the value it had
      o.change = diff_config(*running.config, *next.config);
      break;
    }
    out.push_back(std::move(o));
  }
  return out;
}

// The sections whose every key needs a restart: whatever key the loader
// takes there — one added next year included, since it joins the loader's
// table this test reads and the section struct diff_config compares whole —
// a reload that changes it is refused. sync.command_key_file is one that
// agent/reload.cpp never named, and its change is refused all the same.
TEST(ReloadRestartKeys, EveryKeyOfSyncAndNotifyIsRefused) {
  const std::vector<Section> bases = {
      {"[sync]", {}},
      {"[sync]",
       {{"broker", "\"ssl://hq.example:8883\""},
        {"ca_file", "\"/nonexistent/ca.pem\""},
        {"cert_file", "\"/nonexistent/cert.pem\""},
        {"key_file", "\"/nonexistent/key.pem\""},
        {"username", "\"store-0042\""},
        {"password_file", "\"/nonexistent/password\""}}},
      {"[[notify]]",
       {{"name", "\"ops\""}, {"type", "\"webhook\""}, {"url_file", "\"/nonexistent/url\""}}},
      {"[[notify]]",
       {{"name", "\"mail\""},
        {"type", "\"email\""},
        {"smtp_url", "\"smtps://mail.example:465\""},
        {"from", "\"storewatch@example.com\""},
        {"to", "[\"ops@example.com\"]"},
        {"username", "\"storewatch\""},
        {"password_file", "\"/nonexistent/smtp-password\""}}},
  };
  std::map<std::string, std::set<std::string>> changed;  // section → keys changed
  std::map<std::string, std::string> why_not;            // "section key" → diagnostics
  for (const Section& base : bases) {
    for (const Outcome& o : change_each_key(base)) {
      if (!o.change) {
        why_not[base.header + " " + o.key] = o.why_not;
        continue;
      }
      changed[base.header].insert(o.key);
      EXPECT_FALSE(o.change->needs_restart.empty())
          << base.header << " " << o.key << " changed and the reload was not refused";
    }
  }
  // Every key was changed under one of the bases.
  for (const auto& [where, diags] : why_not) {
    const std::string header = where.substr(0, where.find(' '));
    const std::string key = where.substr(where.find(' ') + 1);
    EXPECT_TRUE(changed[header].contains(key)) << where << ": no value of kCandidates changes it:\n"
                                               << diags;
  }
  EXPECT_TRUE(changed["[sync]"].contains("command_key_file"));
  EXPECT_GE(changed["[sync]"].size(), 14u) << "the loader's [sync] keys were not all read";
}

// [store] and [agent] mix keys that apply at run time with keys that need a
// restart; [incidents] applies at run time. Whatever key the loader takes
// there, a change to it is refused or said to apply — never accepted and
// ignored.
TEST(ReloadRestartKeys, EveryKeyOfStoreAgentAndIncidentsIsRefusedOrApplied) {
  const std::vector<Section> bases = {kStore, {"[agent]", {}}, {"[incidents]", {}}};
  for (const Section& base : bases) {
    const std::string name = base.header.substr(1, base.header.size() - 2);
    const auto outcomes = change_each_key(base);
    EXPECT_FALSE(outcomes.empty()) << base.header;
    for (const Outcome& o : outcomes) {
      ASSERT_TRUE(o.change) << base.header << " " << o.key
                            << ": no value of kCandidates changes it:\n"
                            << o.why_not;
      const ConfigChange& c = *o.change;
      if (!c.needs_restart.empty()) continue;
      const std::vector<std::string>& said = c.other;
      const bool applied = std::find(said.begin(), said.end(), name + "." + o.key) != said.end() ||
                           std::find(said.begin(), said.end(), name) != said.end();
      EXPECT_TRUE(applied) << base.header << " " << o.key
                           << " changed: neither refused nor said to apply (" << c.summary() << ")";
    }
  }
}

}  // namespace restart_keys
}  // namespace storewatch::agent
