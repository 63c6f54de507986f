// [incidents], [[remediation]], [[silence]] and the checks across sections
// that need every section read first (a probe's remediation, a remediation's
// precondition, silences that match nothing).
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <map>

#include "config/sections.h"

namespace storewatch::config::detail {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kNameChars = "_.-";
constexpr std::size_t kNameMax = 64;
constexpr std::int64_t kMaxAttempts = 100;
constexpr std::string_view kTypes = "exec|systemd-restart|http";

std::string_view severity_list() {
  return "critical, high, medium, low or info";
}

std::optional<Severity> severity(const Value& v) {
  auto s = v.string();
  if (!s) return std::nullopt;
  auto parsed = parse_severity(*s);
  if (!parsed) v.error(fmt::format("\"{}\" is not a severity: use {}", *s, severity_list()));
  return parsed;
}

std::optional<double> percent(const Value& v) {
  auto n = v.number();
  if (!n) return std::nullopt;
  if (*n < 0 || *n > 100) {
    v.error(fmt::format("must be a percentage between 0 and 100, got {}", *n));
    return std::nullopt;
  }
  return n;
}

// --- systemd unit names ----------------------------------------------------

/// Unit types RestartUnit works on (devices and scopes cannot be restarted).
constexpr std::array<std::string_view, 9> kRestartableSuffixes = {
    ".service", ".socket", ".target", ".mount", ".automount", ".swap", ".timer", ".path", ".slice"};
constexpr std::array<std::string_view, 2> kFixedSuffixes = {".device", ".scope"};

bool unit_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '_' || c == '.' ||
         c == '\\' || c == '-' || c == '@';
}

/// The unit as systemd spells it (a bare name gets `.service`, as systemctl
/// does), or what is wrong with it.
Result<std::string> restartable_unit(std::string_view configured) {
  if (configured.empty()) return Error{"must not be empty"};
  if (auto bad = std::find_if_not(configured.begin(), configured.end(), unit_char);
      bad != configured.end()) {
    return Error{
        fmt::format("\"{}\": '{}' is not allowed in a unit name (only letters, digits and :_.\\@-)",
                    configured, *bad)};
  }
  std::string name(configured);
  const auto has_suffix = [&](std::string_view suffix) {
    return name.size() > suffix.size() && name.ends_with(suffix);
  };
  for (std::string_view suffix : kFixedSuffixes) {
    if (has_suffix(suffix)) {
      return Error{
          fmt::format("\"{}\": a {} unit cannot be restarted; name a service, socket, "
                      "mount or other restartable unit",
                      configured, suffix.substr(1))};
    }
  }
  if (std::none_of(kRestartableSuffixes.begin(), kRestartableSuffixes.end(), has_suffix)) {
    name += ".service";
  }
  if (name.size() > 255) return Error{fmt::format("\"{}\" is longer than 255", configured)};
  const std::string_view prefix = std::string_view(name).substr(0, name.rfind('.'));
  if (prefix.empty() || prefix.front() == '.') {
    return Error{fmt::format("\"{}\" has no name before its type", configured)};
  }
  if (const auto at = prefix.find('@'); at != std::string_view::npos) {
    if (prefix.find('@', at + 1) != std::string_view::npos) {
      return Error{fmt::format("\"{}\" has more than one '@'", configured)};
    }
    if (at == 0) return Error{fmt::format("\"{}\" has no name before '@'", configured)};
    if (at + 1 == prefix.size()) {
      return Error{fmt::format("\"{}\" is a template: name an instance, such as {}1{}", configured,
                               prefix, name.substr(prefix.size()))};
    }
  }
  return name;
}

// --- URLs ------------------------------------------------------------------

/// http(s)://host[:port][/path?query]; nullopt when fine.
std::optional<std::string> http_url_problem(std::string_view url) {
  constexpr std::string_view kExample = "e.g. \"http://10.20.1.11:8080/restart\"";
  if (std::any_of(url.begin(), url.end(), [](char c) {
        return std::isspace(static_cast<unsigned char>(c)) != 0 ||
               std::iscntrl(static_cast<unsigned char>(c)) != 0;
      })) {
    return fmt::format("\"{}\" must not contain spaces or control characters", url);
  }
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else {
    return fmt::format("\"{}\" must start with http:// or https://; {}", url, kExample);
  }
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty()) return fmt::format("\"{}\" has no host; {}", url, kExample);
  if (authority.find('@') != std::string_view::npos) {
    return fmt::format(
        "\"{}\" must not hold credentials (user:password@): secrets do not go "
        "inline in the config",
        url);
  }
  std::string_view host = authority;
  std::string_view port;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      return fmt::format("\"{}\": an IPv6 address needs its closing ']'", url);
    }
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fmt::format("\"{}\": bad text after ']'", url);
      port = after.substr(1);
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) return fmt::format("\"{}\": the port after ':' is empty", url);
  }
  if (!port.empty()) {
    const bool digits = port.size() <= 5 && std::all_of(port.begin(), port.end(), [](char c) {
                          return std::isdigit(static_cast<unsigned char>(c)) != 0;
                        });
    const int n = digits ? std::stoi(std::string(port)) : 0;
    if (n < 1 || n > 65535) {
      return fmt::format("\"{}\": port \"{}\" is not a number between 1 and 65535", url, port);
    }
  }
  if (auto problem = host_problem(host)) return fmt::format("\"{}\": host {}", url, *problem);
  return std::nullopt;
}

// --- [[remediation]] -------------------------------------------------------

struct RemediationSource {
  bool named = false;
  SourcePos name;
};

std::optional<RemediationType> parse_type(std::string_view s) {
  for (RemediationType t :
       {RemediationType::exec, RemediationType::systemd_restart, RemediationType::http}) {
    if (to_string(t) == s) return t;
  }
  return std::nullopt;
}

void read_remediation(Context& ctx, const toml::table& table, std::size_t number,
                      RemediationConfig& r, RemediationSource& src) {
  r.where = position(table.source());
  std::string scope = fmt::format("[[remediation]] #{}", number);
  if (const toml::node* name = table.get("name")) {
    Value v(ctx, scope, "name", *name);
    if (auto n = v.identifier("remediation name", kNameChars, kNameMax)) {
      r.name = *n;
      src.named = true;
      src.name = v.where();
      scope = fmt::format("[[remediation]] \"{}\"", *n);
    }
  }
  std::optional<RemediationType> type;
  if (const toml::node* node = table.get("type")) {
    Value v(ctx, scope, "type", *node);
    if (auto t = v.choice(kTypes)) type = parse_type(*t);
    if (type) r.type = *type;
  }
  // A key of another type is an error; with an unknown type, the type error
  // says enough.
  const auto for_type = [&type](const Value& v, RemediationType owner) {
    if (!type || *type == owner) return true;
    v.error(fmt::format("is for type {}; this remediation is type {}", to_string(owner),
                        to_string(*type)));
    return false;
  };
  const auto needs = [&type](RemediationType owner) { return type && *type == owner; };

  std::optional<SourcePos> backoff_at;
  std::optional<SourcePos> backoff_max_at;
  const Field fields[] = {
      {"name", [](const Value&) {}, true},
      {"type", [](const Value&) {}, true},
      {"command",
       [&](const Value& v) {
         if (!for_type(v, RemediationType::exec)) return;
         auto argv = v.command();
         if (!argv) return;
         if (argv->empty()) {
           v.error("must name the program to run (an empty array runs nothing)");
         } else if ((*argv)[0].empty()) {
           v.error("the first element (the program) is empty");
         } else if ((*argv)[0].find('/') != std::string::npos && (*argv)[0][0] != '/') {
           v.error(fmt::format(
               "\"{}\" is a relative path; give an absolute path or a bare name found on PATH",
               (*argv)[0]));
         } else if (std::any_of(argv->begin(), argv->end(), [](const std::string& a) {
                      return a.find('\0') != std::string::npos;
                    })) {
           v.error("an argument contains a NUL character");
         } else {
           r.command = std::move(*argv);
         }
       },
       needs(RemediationType::exec)},
      {"unit",
       [&](const Value& v) {
         if (!for_type(v, RemediationType::systemd_restart)) return;
         auto unit = v.string();
         if (!unit) return;
         if (auto name = restartable_unit(*unit)) {
           r.unit = *name;
         } else {
           v.error(name.error().message);
         }
       },
       needs(RemediationType::systemd_restart)},
      {"url",
       [&](const Value& v) {
         if (!for_type(v, RemediationType::http)) return;
         auto url = v.string();
         if (!url) return;
         if (auto problem = http_url_problem(*url)) {
           v.error(*problem);
         } else {
           r.url = *url;
         }
       },
       needs(RemediationType::http)},
      {"method",
       [&](const Value& v) {
         if (!for_type(v, RemediationType::http)) return;
         if (auto m = v.choice("GET|POST|PUT")) r.method = *m;
       }},
      {"expect_status",
       [&](const Value& v) {
         if (!for_type(v, RemediationType::http)) return;
         if (auto n = v.integer(100, 599)) r.expect_status = static_cast<int>(*n);
       }},
      {"timeout",
       [&r](const Value& v) {
         if (auto d = v.duration(Millis(1))) r.timeout = *d;
       }},
      {"max_attempts",
       [&r](const Value& v) {
         if (auto n = v.integer(1, kMaxAttempts)) r.max_attempts = static_cast<int>(*n);
       }},
      {"window",
       [&r](const Value& v) {
         if (auto d = v.duration(Millis(1))) r.window = *d;
       }},
      {"backoff",
       [&](const Value& v) {
         if (auto d = v.duration(Millis(1))) {
           r.backoff = *d;
           backoff_at = v.where();
         }
       }},
      {"backoff_max",
       [&](const Value& v) {
         if (auto d = v.duration(Millis(1))) {
           r.backoff_max = *d;
           backoff_max_at = v.where();
         }
       }},
      {"verify_after",
       [&r](const Value& v) {
         if (auto d = v.duration()) r.verify_after = *d;
       }},
      {"only_outside_trading_hours",
       [&r](const Value& v) {
         if (auto b = v.boolean()) r.only_outside_trading_hours = *b;
       }},
      {"precondition",
       [&r](const Value& v) {
         if (auto n = v.identifier("probe name", kNameChars, kNameMax)) r.precondition = *n;
       }},
      {"escalate_severity",
       [&r](const Value& v) {
         if (auto s = severity(v)) r.escalate_severity = *s;
       }},
  };
  read_fields(ctx, scope, table, fields, r.where);

  if (r.backoff_max < r.backoff) {
    ctx.error(backoff_max_at.value_or(backoff_at.value_or(r.where)),
              fmt::format("{} backoff_max: {} is shorter than backoff {}; the wait starts at "
                          "backoff and doubles up to backoff_max",
                          scope, format_duration(r.backoff_max), format_duration(r.backoff)));
  }
}

// --- cross-section checks --------------------------------------------------

/// The tables of a [[section]] in the merged document, or none when it is
/// absent or of the wrong shape (reported already).
std::vector<const toml::table*> tables_of(const toml::table& root, std::string_view section) {
  std::vector<const toml::table*> out;
  const toml::array* array = root.get_as<toml::array>(section);
  if (array == nullptr) return out;
  for (const toml::node& node : *array) out.push_back(node.as_table());
  return out;
}

std::string probe_scope(const ProbeConfig& p, std::size_t i) {
  return p.name.empty() ? fmt::format("[[probe]] #{}", i + 1)
                        : fmt::format("[[probe]] \"{}\"", p.name);
}

std::string remediation_scope(const RemediationConfig& r, std::size_t i) {
  return r.name.empty() ? fmt::format("[[remediation]] #{}", i + 1)
                        : fmt::format("[[remediation]] \"{}\"", r.name);
}

std::string names_of(const std::vector<RemediationConfig>& remediations) {
  std::string out;
  for (const RemediationConfig& r : remediations) {
    if (r.name.empty()) continue;
    out += out.empty() ? "" : ", ";
    out += r.name;
  }
  return out.empty() ? "no [[remediation]] is configured" : "known: " + out;
}

}  // namespace

void read_incidents(Context& ctx, const toml::node* node, Config& out) {
  static constexpr std::string_view kScope = "[incidents]";
  IncidentsConfig& c = out.incidents;
  std::optional<SourcePos> high_at;
  std::optional<SourcePos> low_at;
  const Field fields[] = {
      {"reopen_window",
       [&c](const Value& v) {
         if (auto d = v.duration()) c.reopen_window = *d;
       }},
      {"close_after",
       [&c](const Value& v) {
         if (auto d = v.duration()) c.close_after = *d;
       }},
      {"flap_high",
       [&](const Value& v) {
         if (auto n = percent(v)) {
           c.flap_high = *n;
           high_at = v.where();
         }
       }},
      {"flap_low",
       [&](const Value& v) {
         if (auto n = percent(v)) {
           c.flap_low = *n;
           low_at = v.where();
         }
       }},
  };
  read_fields(ctx, kScope, table_or_empty(node), fields, section_file(ctx, node));
  if (c.flap_low > c.flap_high) {
    ctx.error(low_at.value_or(high_at.value_or(section_file(ctx, node))),
              fmt::format("{} flap_low: {} is above flap_high {}; flapping starts at or above "
                          "flap_high and stops at or below flap_low",
                          kScope, c.flap_low, c.flap_high));
  }
}

void read_remediations(Context& ctx, const toml::node* node, Config& out) {
  if (node == nullptr) return;
  const toml::array& array = *node->as_array();
  std::vector<RemediationSource> sources(array.size());
  out.remediations.resize(array.size());
  for (std::size_t i = 0; i < array.size(); ++i) {
    read_remediation(ctx, *array.get(i)->as_table(), i + 1, out.remediations[i], sources[i]);
  }
  std::map<std::string_view, std::size_t> first;
  for (std::size_t i = 0; i < out.remediations.size(); ++i) {
    if (!sources[i].named) continue;
    auto [it, inserted] = first.emplace(out.remediations[i].name, i);
    if (inserted) continue;
    ctx.error(sources[i].name,
              fmt::format("[[remediation]] \"{}\" name: duplicate remediation name; the first is "
                          "at {}",
                          out.remediations[i].name, to_string(sources[it->second].name)));
  }
}

void read_silences(Context& ctx, const toml::node* node, Config& out) {
  if (node == nullptr) return;
  const toml::array& array = *node->as_array();
  out.silences.resize(array.size());
  for (std::size_t i = 0; i < array.size(); ++i) {
    const toml::table& table = *array.get(i)->as_table();
    SilenceConfig& s = out.silences[i];
    s.where = position(table.source());
    const std::string scope = fmt::format("[[silence]] #{}", i + 1);
    const Field fields[] = {
        {"match",
         [&s](const Value& v) {
           auto text = v.string();
           if (!text) return;
           std::string problem;
           if (auto m = ProbeMatch::parse(*text, &problem)) {
             s.match = std::move(*m);
           } else {
             v.error(problem);
           }
         },
         true},
        {"schedule",
         [&s](const Value& v) {
           auto text = v.string();
           if (!text) return;
           if (auto schedule = WeeklySchedule::parse(*text)) {
             s.schedule = std::move(*schedule);
           } else {
             v.error(schedule.error().message);
           }
         },
         true},
        {"reason",
         [&s](const Value& v) {
           auto text = v.string();
           if (!text) return;
           if (std::all_of(text->begin(), text->end(),
                           [](char c) { return std::isspace(static_cast<unsigned char>(c)); })) {
             v.error("must say why (it is shown with every failure the silence covers)");
             return;
           }
           s.reason = *text;
         },
         true},
    };
    read_fields(ctx, scope, table, fields, s.where);
  }
}

void check_references(Context& ctx, const toml::table& root, const Config& config) {
  const std::vector<const toml::table*> probe_tables = tables_of(root, "probe");
  const std::vector<const toml::table*> remediation_tables = tables_of(root, "remediation");
  const std::vector<const toml::table*> silence_tables = tables_of(root, "silence");

  // A probe's remediation.
  if (probe_tables.size() == config.probes.size()) {
    for (std::size_t i = 0; i < config.probes.size(); ++i) {
      const ProbeConfig& p = config.probes[i];
      const toml::node* node = probe_tables[i] ? probe_tables[i]->get("remediation") : nullptr;
      if (p.remediation.empty() || node == nullptr) continue;
      const std::string scope = probe_scope(p, i);
      const Value v(ctx, scope, "remediation", *node);
      const RemediationConfig* r = config.find_remediation(p.remediation);
      if (r == nullptr) {
        v.error(fmt::format("unknown remediation \"{}\" ({})", p.remediation,
                            names_of(config.remediations)));
      } else if (!p.name.empty() && r->precondition == p.name) {
        v.error(
            fmt::format("remediation \"{}\" has this probe as its precondition; the probe "
                        "fails whenever the remediation would run, so it never could",
                        r->name));
      }
    }
  }

  // A remediation's precondition, and only_outside_trading_hours.
  if (remediation_tables.size() == config.remediations.size()) {
    for (std::size_t i = 0; i < config.remediations.size(); ++i) {
      const RemediationConfig& r = config.remediations[i];
      if (remediation_tables[i] == nullptr) continue;
      const std::string scope = remediation_scope(r, i);
      const toml::node* pre = remediation_tables[i]->get("precondition");
      if (!r.precondition.empty() && pre != nullptr &&
          config.find_probe(r.precondition) == nullptr) {
        Value(ctx, scope, "precondition", *pre)
            .error(fmt::format("unknown probe \"{}\"; a precondition names a [[probe]] that must "
                               "be ok right before the action runs",
                               r.precondition));
      }
      const toml::node* outside = remediation_tables[i]->get("only_outside_trading_hours");
      if (r.only_outside_trading_hours && outside != nullptr &&
          config.store.trading_hours.empty()) {
        Value(ctx, scope, "only_outside_trading_hours", *outside)
            .warning(
                "has no effect: [store] trading_hours is not set, so the store is never in "
                "trading hours and the remediation may run at any time");
      }
    }
  }

  // Silences that match nothing are probably a typo.
  if (silence_tables.size() == config.silences.size()) {
    for (std::size_t i = 0; i < config.silences.size(); ++i) {
      const SilenceConfig& s = config.silences[i];
      const toml::node* node = silence_tables[i] ? silence_tables[i]->get("match") : nullptr;
      if (s.match.text().empty() || node == nullptr) continue;
      const bool any =
          std::any_of(config.probes.begin(), config.probes.end(), [&](const ProbeConfig& p) {
            return !p.name.empty() && s.match.matches(p.name, p.labels);
          });
      if (!any) {
        const std::string scope = fmt::format("[[silence]] #{}", i + 1);
        Value(ctx, scope, "match", *node)
            .warning(fmt::format("\"{}\" matches no configured probe", s.match.text()));
      }
    }
  }
}

}  // namespace storewatch::config::detail
