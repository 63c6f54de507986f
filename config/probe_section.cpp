// [[probe]]: the keys every probe has, the keys of its type (from the type's
// ProbeTypeSchema), and the checks across probes: unique names, depends_on.
#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>

#include "config/sections.h"

namespace storewatch::config::detail {
namespace {

using namespace std::chrono_literals;

constexpr Millis kMinInterval = 100ms;
constexpr std::int64_t kMaxStreak = 1000;

/// Whether `key` is one of `fields`, the keys every probe has; a probe type
/// cannot redefine those.
bool is_common_key(std::span<const Field> fields, std::string_view key) {
  return std::any_of(fields.begin(), fields.end(), [&](const Field& f) { return f.key == key; });
}

/// Where the cross-probe checks report; kept beside each ProbeConfig while loading.
struct ProbeSource {
  bool named = false;  ///< the name is valid
  bool duplicate = false;
  SourcePos name;
  std::vector<SourcePos> depends_on;
};

template <class T>
std::optional<KeyValue> as_key_value(std::optional<T> v) {
  if (!v) return std::nullopt;
  return KeyValue(std::in_place_type<T>, std::move(*v));
}

std::optional<KeyValue> read_option(const Value& v, const KeySpec& spec) {
  switch (spec.kind) {
    case KeyKind::string: return as_key_value(v.string());
    case KeyKind::host: return as_key_value(v.host());
    case KeyKind::integer:
      return as_key_value(v.integer(std::numeric_limits<std::int64_t>::min(),
                                    std::numeric_limits<std::int64_t>::max()));
    case KeyKind::boolean: return as_key_value(v.boolean());
    case KeyKind::duration: return as_key_value(v.duration());
    case KeyKind::port: return as_key_value(v.integer(1, 65535));
    case KeyKind::string_array: return as_key_value(v.string_array());
    case KeyKind::string_table: return as_key_value(v.string_table());
    case KeyKind::file: {
      auto path = v.file(Empty::error);
      if (!path) return std::nullopt;
      return KeyValue(std::in_place_type<std::string>, path->string());
    }
    case KeyKind::number: return as_key_value(v.number());
    case KeyKind::choice: return as_key_value(v.choice(spec.choices));
    case KeyKind::command: return as_key_value(v.command());
    case KeyKind::size: return as_key_value(v.size(std::int64_t{1} << 10));
  }
  return std::nullopt;
}

/// A default as TOML, so it goes through the same checks as a written value:
/// text kinds are taken as written ("3s"), the others parsed ("9100", "false").
std::optional<toml::table> default_document(const KeySpec& spec) {
  switch (spec.kind) {
    case KeyKind::string:
    case KeyKind::host:
    case KeyKind::duration:
    case KeyKind::choice:
    case KeyKind::size:
    case KeyKind::file: {
      toml::table t;
      t.insert("v", std::string(spec.default_value));
      return t;
    }
    case KeyKind::integer:
    case KeyKind::boolean:
    case KeyKind::port:
    case KeyKind::number:
    case KeyKind::command:
    case KeyKind::string_array:
    case KeyKind::string_table: break;
  }
  try {
    return toml::parse(fmt::format("v = {}", spec.default_value));
  } catch (const toml::parse_error&) {
    return std::nullopt;
  }
}

void fill_defaults(Context& ctx, std::string_view scope, const toml::table& table,
                   const ProbeTypeSchema& schema, std::span<const Field> common, ProbeConfig& p) {
  for (const KeySpec& spec : schema.keys) {
    if (spec.default_value.empty() || is_common_key(common, spec.name) ||
        table.contains(spec.name)) {
      continue;
    }
    const std::string key = fmt::format("{} (default \"{}\" of probe type {})", spec.name,
                                        spec.default_value, schema.type);
    auto document = default_document(spec);
    if (!document) {
      ctx.error(p.where, fmt::format("{} {}: not a valid value", scope, key));
      continue;
    }
    if (auto v = read_option(Value(ctx, scope, key, *document->get("v"), p.where), spec)) {
      p.options[std::string(spec.name)] = std::move(*v);
    }
  }
}

std::string known_types(std::span<const ProbeTypeSchema> types) {
  if (types.empty()) return "no probe types are registered";
  std::string out = "known types: ";
  for (std::size_t i = 0; i < types.size(); ++i) {
    if (i > 0) out += ", ";
    out += types[i].type;
  }
  return out;
}

void read_probe(Context& ctx, const toml::table& table, std::size_t number, ProbeConfig& p,
                ProbeSource& src) {
  p.where = position(table.source());
  // Every message about this probe names it, so the name is read first.
  std::string scope = fmt::format("[[probe]] #{}", number);
  if (const toml::node* name = table.get("name")) {
    Value v(ctx, scope, "name", *name);
    if (auto n = v.identifier("probe name", "_.-", 64)) {
      p.name = *n;
      src.named = true;
      src.name = v.where();
      scope = fmt::format("[[probe]] \"{}\"", *n);
    }
  }
  const ProbeTypeSchema* schema = nullptr;
  if (const toml::node* type = table.get("type")) {
    Value v(ctx, scope, "type", *type);
    if (auto t = v.string()) {
      const auto types = ctx.probe_types();
      auto it = std::find_if(types.begin(), types.end(),
                             [&](const ProbeTypeSchema& s) { return s.type == *t; });
      if (it == types.end()) {
        v.error(fmt::format("unknown probe type \"{}\" ({})", *t, known_types(types)));
      } else {
        schema = &*it;
        p.type = *t;
      }
    }
  }

  std::optional<SourcePos> interval_at;
  std::optional<SourcePos> timeout_at;
  std::vector<Field> fields = {
      {"name", [](const Value&) {}, true},
      {"type", [](const Value&) {}, true},
      {"interval",
       [&](const Value& v) {
         if (auto d = v.duration(kMinInterval)) {
           p.interval = *d;
           interval_at = v.where();
         }
       }},
      {"timeout",
       [&](const Value& v) {
         if (auto d = v.duration(Millis(1))) {
           p.timeout = *d;
           timeout_at = v.where();
         }
       }},
      {"fail_after",
       [&p](const Value& v) {
         if (auto n = v.integer(1, kMaxStreak)) p.fail_after = static_cast<int>(*n);
       }},
      {"recover_after",
       [&p](const Value& v) {
         if (auto n = v.integer(1, kMaxStreak)) p.recover_after = static_cast<int>(*n);
       }},
      {"severity",
       [&p](const Value& v) {
         auto s = v.string();
         if (!s) return;
         if (auto severity = parse_severity(*s)) {
           p.severity = *severity;
         } else {
           v.error(fmt::format("\"{}\" is not a severity: use critical, high, medium, low or info",
                               *s));
         }
       }},
      {"depends_on",
       [&](const Value& v) {
         auto names = v.string_array();
         if (!names) return;
         p.depends_on = std::move(*names);
         for (const toml::node& element : *v.node().as_array()) {
           src.depends_on.push_back(position(element.source()));
         }
       }},
      {"labels",
       [&p](const Value& v) {
         if (auto labels = v.string_table()) p.labels = std::move(*labels);
       }},
      // Checked against the [[remediation]]s once every section is read.
      {"remediation",
       [&p](const Value& v) {
         if (auto name = v.identifier("remediation name", "_.-", 64)) p.remediation = *name;
       }},
  };
  const std::size_t common_count = fields.size();
  if (schema != nullptr) {
    for (const KeySpec& spec : schema->keys) {
      if (is_common_key(std::span(fields).first(common_count), spec.name)) continue;
      fields.push_back({spec.name,
                        [&p, &spec](const Value& v) {
                          if (auto value = read_option(v, spec)) {
                            p.options[std::string(spec.name)] = std::move(*value);
                          }
                        },
                        spec.required});
    }
  }
  const std::size_t errors_before = ctx.error_count();
  // Without a known type its keys are unknown too; the type error says enough.
  read_fields(ctx, scope, table, fields, p.where,
              schema != nullptr ? UnknownKeys::error : UnknownKeys::ignore);
  if (schema != nullptr) {
    fill_defaults(ctx, scope, table, *schema, std::span(fields).first(common_count), p);
    // Cross-key checks only make sense once every key read cleanly.
    const bool keys_ok =
        std::all_of(schema->keys.begin(), schema->keys.end(),
                    [&](const KeySpec& spec) { return !spec.required || p.has(spec.name); });
    if (schema->validate != nullptr && keys_ok && errors_before == ctx.error_count()) {
      for (const std::string& problem : schema->validate(p)) {
        ctx.error(p.where, fmt::format("{}: {}", scope, problem));
      }
    }
  }

  if (p.timeout > p.interval) {
    ctx.warning(timeout_at.value_or(interval_at.value_or(p.where)),
                fmt::format("{} timeout: {} is longer than the interval {}; a check that slow "
                            "delays the next one",
                            scope, format_duration(p.timeout), format_duration(p.interval)));
  }
}

void check_names(Context& ctx, const std::vector<ProbeConfig>& probes,
                 std::vector<ProbeSource>& sources) {
  std::map<std::string_view, std::size_t> first;
  for (std::size_t i = 0; i < probes.size(); ++i) {
    if (!sources[i].named) continue;
    auto [it, inserted] = first.emplace(probes[i].name, i);
    if (inserted) continue;
    sources[i].duplicate = true;
    ctx.error(sources[i].name,
              fmt::format("[[probe]] \"{}\" name: duplicate probe name; the first is at {}",
                          probes[i].name, to_string(sources[it->second].name)));
  }
}

/// Reports dependency cycles, each at the depends_on entry that closes it.
void check_cycles(Context& ctx, const std::vector<ProbeConfig>& probes,
                  const std::vector<std::vector<std::pair<std::size_t, SourcePos>>>& edges) {
  enum class Mark { unvisited, on_path, done };
  std::vector<Mark> marks(probes.size(), Mark::unvisited);
  struct Frame {
    std::size_t probe;
    std::size_t next_edge;
  };
  for (std::size_t root = 0; root < probes.size(); ++root) {
    if (marks[root] != Mark::unvisited) continue;
    std::vector<Frame> path{{root, 0}};
    marks[root] = Mark::on_path;
    while (!path.empty()) {
      Frame& top = path.back();
      if (top.next_edge == edges[top.probe].size()) {
        marks[top.probe] = Mark::done;
        path.pop_back();
        continue;
      }
      const auto& [to, where] = edges[top.probe][top.next_edge++];
      if (marks[to] == Mark::unvisited) {
        marks[to] = Mark::on_path;
        path.push_back({to, 0});
      } else if (marks[to] == Mark::on_path) {
        std::string cycle;
        auto start = std::find_if(path.begin(), path.end(),
                                  [to = to](const Frame& f) { return f.probe == to; });
        for (auto it = start; it != path.end(); ++it) cycle += probes[it->probe].name + " -> ";
        cycle += probes[to].name;
        ctx.error(where, fmt::format("[[probe]] \"{}\" depends_on: dependency cycle: {}",
                                     probes[path.back().probe].name, cycle));
      }
    }
  }
}

void check_dependencies(Context& ctx, const std::vector<ProbeConfig>& probes,
                        const std::vector<ProbeSource>& sources) {
  std::map<std::string_view, std::size_t> index;
  for (std::size_t i = 0; i < probes.size(); ++i) {
    if (sources[i].named && !sources[i].duplicate) index.emplace(probes[i].name, i);
  }
  std::vector<std::vector<std::pair<std::size_t, SourcePos>>> edges(probes.size());
  for (std::size_t i = 0; i < probes.size(); ++i) {
    const ProbeConfig& p = probes[i];
    const std::string scope =
        sources[i].named ? fmt::format("[[probe]] \"{}\"", p.name) : "[[probe]]";
    for (std::size_t d = 0; d < p.depends_on.size(); ++d) {
      const std::string& dep = p.depends_on[d];
      const SourcePos& where = sources[i].depends_on[d];
      if (sources[i].named && dep == p.name) {
        ctx.error(where, fmt::format("{} depends_on: a probe cannot depend on itself", scope));
      } else if (std::find(p.depends_on.begin(), p.depends_on.begin() + static_cast<long>(d),
                           dep) != p.depends_on.begin() + static_cast<long>(d)) {
        ctx.error(where, fmt::format("{} depends_on: \"{}\" is listed twice", scope, dep));
      } else if (auto it = index.find(dep); it == index.end()) {
        ctx.error(where, fmt::format("{} depends_on: unknown probe \"{}\"", scope, dep));
      } else if (sources[i].named && !sources[i].duplicate) {
        edges[i].emplace_back(it->second, where);
      }
    }
  }
  check_cycles(ctx, probes, edges);
}

}  // namespace

void read_probes(Context& ctx, const toml::node* node, Config& out) {
  if (node == nullptr) return;
  const toml::array& array = *node->as_array();
  std::vector<ProbeSource> sources(array.size());
  out.probes.resize(array.size());
  for (std::size_t i = 0; i < array.size(); ++i) {
    read_probe(ctx, *array.get(i)->as_table(), i + 1, out.probes[i], sources[i]);
  }
  check_names(ctx, out.probes, sources);
  check_dependencies(ctx, out.probes, sources);
}

}  // namespace storewatch::config::detail
