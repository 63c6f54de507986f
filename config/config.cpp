#include "config/config.h"

#include "config/postgres_uri.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <utility>

#include "config/reader.h"
#include "config/sections.h"
#include "config/sources.h"

namespace storewatch::config {
namespace {

using detail::Section;
using detail::Shape;

// The sections of each config type. A new section is one reader and one row.
constexpr Section<Config> kAgentSections[] = {
    {"store", Shape::table, &detail::read_store},
    {"agent", Shape::table, &detail::read_agent},
    {"sync", Shape::table, &detail::read_sync},
    {"probe", Shape::array_of_tables, &detail::read_probes},
    {"incidents", Shape::table, &detail::read_incidents},
    {"remediation", Shape::array_of_tables, &detail::read_remediations},
    {"silence", Shape::array_of_tables, &detail::read_silences},
    {"notify", Shape::array_of_tables, &detail::read_notify},
};

constexpr Section<HqConfig> kHqSections[] = {
    {"hq", Shape::table, &detail::read_hq},
};

template <class T>
Loaded<T> finish(detail::Context& ctx, std::optional<T> config) {
  Loaded<T> out;
  if (!ctx.has_errors()) out.config = std::move(config);
  out.diagnostics = ctx.take_diagnostics();
  return out;
}

template <class T>
Loaded<T> internal_error(detail::Context& ctx, const std::exception& e) {
  ctx.error(ctx.main_file(), fmt::format("internal error while loading: {}", e.what()));
  return finish<T>(ctx, std::nullopt);
}

/// Reads and parses one file; problems are reported and give nullopt.
std::optional<toml::table> read_document(detail::Context& ctx, const std::filesystem::path& file,
                                         std::string_view what) {
  const std::string name = file.string();
  ctx.add_file(name);
  auto text = detail::read_text(file);
  if (!text) {
    ctx.error(SourcePos{name, 0, 0}, fmt::format("cannot read {}: {}", what, text.error().message));
    return std::nullopt;
  }
  return detail::parse_toml(ctx, *text, name);
}

Loaded<Config> validate(detail::Context& ctx, const toml::table& root, Config config) {
  detail::read_sections<Config>(ctx, root, kAgentSections, config);
  detail::check_references(ctx, root, config);
  return finish<Config>(ctx, std::move(config));
}

Loaded<HqConfig> validate_hq(detail::Context& ctx, const toml::table& root) {
  HqConfig config;
  detail::read_sections<HqConfig>(ctx, root, kHqSections, config);
  return finish<HqConfig>(ctx, std::move(config));
}

template <class T>
const T& option_as(const ProbeConfig& p, std::string_view key, std::string_view type) {
  auto it = p.options.find(std::string(key));
  if (it == p.options.end()) {
    throw std::logic_error(fmt::format("probe \"{}\": option \"{}\" is not set", p.name, key));
  }
  const T* value = std::get_if<T>(&it->second);
  if (value == nullptr) {
    throw std::logic_error(fmt::format("probe \"{}\": option \"{}\" is not {}", p.name, key, type));
  }
  return *value;
}

}  // namespace

std::string to_string(const SourcePos& pos) {
  if (pos.line <= 0) return pos.file;
  if (pos.column <= 0) return fmt::format("{}:{}", pos.file, pos.line);
  return fmt::format("{}:{}:{}", pos.file, pos.line, pos.column);
}

std::string to_string(const Diagnostic& d) {
  const std::string_view kind = d.kind == Diagnostic::Kind::error ? "error" : "warning";
  if (d.where.file.empty()) return fmt::format("{}: {}", kind, d.message);
  return fmt::format("{}: {}: {}", to_string(d.where), kind, d.message);
}

std::string format_size(std::int64_t bytes) {
  static constexpr std::pair<int, std::string_view> kUnits[] = {
      {40, "TB"}, {30, "GB"}, {20, "MB"}, {10, "KB"}};
  for (const auto& [shift, unit] : kUnits) {
    const std::int64_t one = std::int64_t{1} << shift;
    if (bytes >= one && bytes % one == 0) return fmt::format("{}{}", bytes / one, unit);
  }
  return fmt::format("{} bytes", bytes);
}

bool is_valid_store_id(std::string_view id) {
  return detail::is_identifier(id, kStoreIdExtraChars, kStoreIdMaxLength);
}

Result<std::string> read_secret(const std::filesystem::path& file) {
  auto text = detail::read_text(file);
  if (!text) return Error{fmt::format("cannot read {}: {}", file.string(), text.error().message)};
  std::string& s = *text;
  auto not_space = [](unsigned char c) { return std::isspace(c) == 0; };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return std::move(s);
}

Result<std::string> read_command_key(const std::filesystem::path& file) {
  auto text = read_secret(file);
  if (!text) return text.error();
  const std::string& hex = *text;
  const std::string make = fmt::format("make one with: openssl rand -hex 32 > {}", file.string());
  if (hex.size() > 2 * kMaxCommandKeyBytes) {
    return Error{
        fmt::format("{} is {} bytes long: not a command key file (at most {} hex digits); {}",
                    file.string(), hex.size(), 2 * kMaxCommandKeyBytes, make)};
  }
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string key;
  key.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = i + 1 < hex.size() ? nibble(hex[i + 1]) : -1;
    if (hi < 0 || lo < 0) {
      return Error{fmt::format(
          "{} does not hold the key as hex digits (an even number of 0-9 a-f, nothing else); {}",
          file.string(), make)};
    }
    key.push_back(static_cast<char>((hi << 4) | lo));
  }
  if (key.size() < kMinCommandKeyBytes) {
    return Error{fmt::format("{} holds a key of {} bytes; at least {} ({} hex digits); {}",
                             file.string(), key.size(), kMinCommandKeyBytes,
                             2 * kMinCommandKeyBytes, make)};
  }
  return key;
}

bool HqConfig::enrolled(std::string_view store) const {
  if (enroll == Enroll::automatic) return true;
  return stores.find(std::string(store)) != stores.end();
}

std::string HqConfig::database_name() const {
  return postgresql.empty() ? database.string() : redact_postgresql_uri(postgresql);
}

std::string_view to_string(Severity s) {
  switch (s) {
    case Severity::critical: return "critical";
    case Severity::high: return "high";
    case Severity::medium: return "medium";
    case Severity::low: return "low";
    case Severity::info: return "info";
  }
  return "medium";
}

std::optional<Severity> parse_severity(std::string_view s) {
  for (Severity v :
       {Severity::critical, Severity::high, Severity::medium, Severity::low, Severity::info}) {
    if (to_string(v) == s) return v;
  }
  return std::nullopt;
}

const std::string& ProbeConfig::str(std::string_view key) const {
  return option_as<std::string>(*this, key, "a string");
}

std::int64_t ProbeConfig::integer(std::string_view key) const {
  return option_as<std::int64_t>(*this, key, "an integer");
}

bool ProbeConfig::boolean(std::string_view key) const {
  return option_as<bool>(*this, key, "a boolean");
}

Millis ProbeConfig::duration(std::string_view key) const {
  return option_as<Millis>(*this, key, "a duration");
}

const std::vector<std::string>& ProbeConfig::strings(std::string_view key) const {
  return option_as<std::vector<std::string>>(*this, key, "an array of strings");
}

const std::map<std::string, std::string>& ProbeConfig::table(std::string_view key) const {
  return option_as<std::map<std::string, std::string>>(*this, key, "a table of strings");
}

double ProbeConfig::number(std::string_view key) const {
  return option_as<double>(*this, key, "a number");
}

bool ProbeConfig::has(std::string_view key) const {
  return options.find(std::string(key)) != options.end();
}

const ProbeConfig* Config::find_probe(std::string_view name) const {
  for (const ProbeConfig& p : probes) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

const RemediationConfig* Config::find_remediation(std::string_view name) const {
  for (const RemediationConfig& r : remediations) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

std::string_view to_string(RemediationType t) {
  switch (t) {
    case RemediationType::exec: return "exec";
    case RemediationType::systemd_restart: return "systemd-restart";
    case RemediationType::http: return "http";
  }
  return "exec";
}

Loaded<Config> load(const std::filesystem::path& file, const LoadOptions& options) {
  detail::Context ctx(file.string(), options.probe_types);
  try {
    Config config;
    config.files.push_back(file);
    auto text = detail::read_text(file);
    if (!text) {
      ctx.error(ctx.main_file(), fmt::format("cannot read config file: {}", text.error().message));
      return finish<Config>(ctx, std::nullopt);
    }
    auto root = detail::parse_toml(ctx, *text, file.string());
    bool complete = root.has_value();
    if (!root) root.emplace();
    const std::filesystem::path dir = options.conf_dir.value_or(file.parent_path() / "conf.d");
    config.conf_dir = dir;
    for (const std::filesystem::path& drop_in : detail::drop_in_files(ctx, dir)) {
      config.files.push_back(drop_in);
      if (auto document = read_document(ctx, drop_in, "drop-in file")) {
        detail::merge(*root, std::move(*document));
      } else {
        complete = false;
      }
    }
    // Checking a config with a file missing or unparsable would report
    // errors that are not there (a [store] id in the missing part).
    if (!complete) return finish<Config>(ctx, std::nullopt);
    return validate(ctx, *root, std::move(config));
  } catch (const std::exception& e) {
    return internal_error<Config>(ctx, e);
  }
}

Loaded<Config> load_string(std::string_view text, const std::string& name,
                           std::span<const ProbeTypeSchema> probe_types) {
  detail::Context ctx(name, probe_types);
  try {
    Config config;
    config.files.emplace_back(name);
    auto root = detail::parse_toml(ctx, text, name);
    if (!root) return finish<Config>(ctx, std::nullopt);
    return validate(ctx, *root, std::move(config));
  } catch (const std::exception& e) {
    return internal_error<Config>(ctx, e);
  }
}

Loaded<HqConfig> load_hq(const std::filesystem::path& file) {
  detail::Context ctx(file.string());
  try {
    auto root = read_document(ctx, file, "config file");
    if (!root) return finish<HqConfig>(ctx, std::nullopt);
    return validate_hq(ctx, *root);
  } catch (const std::exception& e) {
    return internal_error<HqConfig>(ctx, e);
  }
}

Loaded<HqConfig> load_hq_string(std::string_view text, const std::string& name) {
  detail::Context ctx(name);
  try {
    auto root = detail::parse_toml(ctx, text, name);
    if (!root) return finish<HqConfig>(ctx, std::nullopt);
    return validate_hq(ctx, *root);
  } catch (const std::exception& e) {
    return internal_error<HqConfig>(ctx, e);
  }
}

FileKind file_kind(const std::filesystem::path& file) {
  FileKind out;
  detail::Context ctx(file.string());
  std::optional<toml::table> root;
  try {
    root = read_document(ctx, file, "config file");
  } catch (const std::exception&) {
    return out;  // load() reports it
  }
  if (!root) return out;
  bool hq = false;
  for (auto&& [key, node] : *root) {
    for (const auto& section : kHqSections) {
      if (key.str() == section.name) {
        hq = true;
        out.hq_at = detail::position(key.source(), file.string());
      }
    }
    for (const auto& section : kAgentSections) {
      if (key.str() == section.name && out.agent_table.empty()) {
        out.agent_table = section.shape == Shape::array_of_tables
                              ? fmt::format("[[{}]]", section.name)
                              : fmt::format("[{}]", section.name);
        out.agent_at = detail::position(key.source(), file.string());
      }
    }
  }
  if (hq) out.kind = out.agent_table.empty() ? FileKind::hq : FileKind::mixed;
  return out;
}

}  // namespace storewatch::config
