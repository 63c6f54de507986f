#include "config/reader.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <limits>
#include <system_error>

namespace storewatch::config::detail {
namespace {

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

std::string join_keys(std::span<const Field> fields) {
  std::string out;
  for (const Field& f : fields) {
    if (!out.empty()) out += ", ";
    out += f.key;
  }
  return out;
}

std::string join_sections(std::span<const SectionName> sections) {
  std::string out;
  for (const SectionName& s : sections) {
    if (!out.empty()) out += ", ";
    out += s.shape == Shape::table ? fmt::format("[{}]", s.name) : fmt::format("[[{}]]", s.name);
  }
  return out;
}

bool has_shape(const toml::node& node, Shape shape) {
  if (shape == Shape::table) return node.is_table();
  const toml::array* array = node.as_array();
  return array != nullptr && (array->empty() || array->is_array_of_tables());
}

std::optional<std::string> ipv6_problem(std::string_view host) {
  std::string address(host.substr(0, host.find('%')));
  if (address.size() < host.size()) {
    std::string_view zone = host.substr(address.size() + 1);
    if (zone.empty() || !std::all_of(zone.begin(), zone.end(), [](char c) {
          return is_alnum(c) || c == '_' || c == '-' || c == '.';
        })) {
      return fmt::format("\"{}\" has an invalid IPv6 zone", host);
    }
  }
  in6_addr out{};
  if (inet_pton(AF_INET6, address.c_str(), &out) != 1) {
    return fmt::format("\"{}\" is not a valid IPv6 address", host);
  }
  return std::nullopt;
}

}  // namespace

SourcePos position(const toml::source_region& region, const std::string& fallback_file) {
  SourcePos pos;
  pos.file = region.path ? *region.path : fallback_file;
  pos.line = static_cast<int>(region.begin.line);
  pos.column = static_cast<int>(region.begin.column);
  return pos;
}

// ---------------------------------------------------------------------------

Context::Context(std::string main_file, std::span<const ProbeTypeSchema> probe_types)
    : files_{std::move(main_file)}, probe_types_(probe_types) {}

void Context::error(SourcePos where, std::string message) {
  if (where.file.empty()) where.file = files_.front();
  diagnostics_.push_back({std::move(where), Diagnostic::Kind::error, std::move(message)});
  has_errors_ = true;
  ++error_count_;
}

void Context::warning(SourcePos where, std::string message) {
  if (where.file.empty()) where.file = files_.front();
  diagnostics_.push_back({std::move(where), Diagnostic::Kind::warning, std::move(message)});
}

bool Context::has_errors() const {
  return has_errors_;
}

std::size_t Context::error_count() const {
  return error_count_;
}

void Context::add_file(const std::string& file) {
  if (std::find(files_.begin(), files_.end(), file) == files_.end()) files_.push_back(file);
}

std::vector<Diagnostic> Context::take_diagnostics() {
  auto rank = [this](const std::string& file) {
    return std::find(files_.begin(), files_.end(), file) - files_.begin();
  };
  std::stable_sort(diagnostics_.begin(), diagnostics_.end(),
                   [&](const Diagnostic& a, const Diagnostic& b) {
                     const auto ra = rank(a.where.file);
                     const auto rb = rank(b.where.file);
                     if (ra != rb) return ra < rb;
                     if (a.where.line != b.where.line) return a.where.line < b.where.line;
                     return a.where.column < b.where.column;
                   });
  has_errors_ = false;
  error_count_ = 0;
  return std::move(diagnostics_);
}

// ---------------------------------------------------------------------------

Value::Value(Context& ctx, std::string_view scope, std::string key, const toml::node& node)
    : ctx_(ctx),
      scope_(scope),
      key_(std::move(key)),
      node_(node),
      where_(position(node.source())) {}

Value::Value(Context& ctx, std::string_view scope, std::string key, const toml::node& node,
             SourcePos where)
    : ctx_(ctx), scope_(scope), key_(std::move(key)), node_(node), where_(std::move(where)) {}

void Value::error(std::string_view message) const {
  ctx_.error(where_, fmt::format("{} {}: {}", scope_, key_, message));
}

void Value::warning(std::string_view message) const {
  ctx_.warning(where_, fmt::format("{} {}: {}", scope_, key_, message));
}

void Value::type_error(std::string_view expected) const {
  std::string message = fmt::format("expected {}, got {}", expected, type_name(node_));
  // A quoted number is the most common slip; say how to write it.
  if (const auto* s = node_.as_string(); s != nullptr && expected == "an integer" &&
                                         !s->get().empty() &&
                                         std::all_of(s->get().begin(), s->get().end(), is_digit)) {
    message += fmt::format(" (write {} without quotes)", s->get());
  }
  error(message);
}

std::optional<std::string> Value::string() const {
  if (const auto* s = node_.as_string()) return s->get();
  type_error("a string");
  return std::nullopt;
}

std::optional<std::int64_t> Value::integer(std::int64_t min, std::int64_t max) const {
  const auto* i = node_.as_integer();
  if (i == nullptr) {
    type_error("an integer");
    return std::nullopt;
  }
  const std::int64_t v = i->get();
  if (v < min || v > max) {
    if (max == std::numeric_limits<std::int64_t>::max()) {
      error(fmt::format("must be at least {}, got {}", min, v));
    } else {
      error(fmt::format("must be between {} and {}, got {}", min, max, v));
    }
    return std::nullopt;
  }
  return v;
}

std::optional<double> Value::number() const {
  if (const auto* i = node_.as_integer()) return static_cast<double>(i->get());
  if (const auto* f = node_.as_floating_point()) {
    if (std::isfinite(f->get())) return f->get();
    error("must be a finite number");
    return std::nullopt;
  }
  type_error("a number");
  return std::nullopt;
}

std::optional<std::string> Value::choice(std::string_view choices) const {
  auto s = string();
  if (!s) return std::nullopt;
  std::string_view rest = choices;
  while (!rest.empty()) {
    const auto bar = rest.find('|');
    if (rest.substr(0, bar) == *s) return s;
    rest = bar == std::string_view::npos ? std::string_view{} : rest.substr(bar + 1);
  }
  std::string listed(choices);
  std::replace(listed.begin(), listed.end(), '|', ',');
  error(fmt::format("\"{}\" is not one of {}", *s, listed));
  return std::nullopt;
}

std::optional<bool> Value::boolean() const {
  if (const auto* b = node_.as_boolean()) return b->get();
  type_error("a boolean (true or false)");
  return std::nullopt;
}

std::optional<Millis> Value::duration() const {
  const auto* s = node_.as_string();
  if (s == nullptr) {
    type_error("a duration string like \"15s\"");
    return std::nullopt;
  }
  auto d = parse_duration(s->get());
  if (!d) error(fmt::format("\"{}\" is not a duration: {}", s->get(), duration_problem(s->get())));
  return d;
}

std::optional<Millis> Value::duration(Millis min) const {
  auto d = duration();
  if (!d) return std::nullopt;
  if (*d < min) {
    if (min == Millis(1)) {
      error(fmt::format("must be longer than 0s, got \"{}\"", node_.as_string()->get()));
    } else {
      error(fmt::format("must be at least {}, got \"{}\"", format_duration(min),
                        node_.as_string()->get()));
    }
    return std::nullopt;
  }
  return d;
}

std::optional<std::int64_t> Value::size(std::int64_t min) const {
  const auto* s = node_.as_string();
  if (s == nullptr) {
    error(fmt::format("expected a size string like \"256MB\" (KB, MB, GB or TB), got {}",
                      type_name(node_)));
    return std::nullopt;
  }
  const std::string& text = s->get();
  std::size_t digits = 0;
  while (digits < text.size() && is_digit(text[digits])) ++digits;
  std::string unit = text.substr(digits);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  int shift = -1;
  if (unit == "KB") shift = 10;
  if (unit == "MB") shift = 20;
  if (unit == "GB") shift = 30;
  if (unit == "TB") shift = 40;
  if (digits == 0 || digits > 12 || shift < 0) {
    error(
        fmt::format("\"{}\" is not a size: write a whole number and KB, MB, GB or TB "
                    "(1024-based), e.g. \"256MB\" or \"1GB\"",
                    text));
    return std::nullopt;
  }
  const std::int64_t n = std::stoll(text.substr(0, digits));  // at most 12 digits: fits
  if (n > (std::numeric_limits<std::int64_t>::max() >> shift)) {
    error(fmt::format("\"{}\" is too large", text));
    return std::nullopt;
  }
  const std::int64_t bytes = n << shift;
  if (bytes < min) {
    error(fmt::format("must be at least {}, got \"{}\"", format_size(min), text));
    return std::nullopt;
  }
  return bytes;
}

std::optional<std::string> Value::identifier(std::string_view what, std::string_view allowed,
                                             std::size_t max_len) const {
  auto s = string();
  if (!s) return std::nullopt;
  if (!is_identifier(*s, allowed, max_len)) {
    std::string chars;
    for (char c : allowed) chars += fmt::format(" '{}'", c);
    error(fmt::format("\"{}\" is not a valid {}: use 1 to {} letters, digits or{}", *s, what,
                      max_len, chars));
    return std::nullopt;
  }
  return s;
}

std::optional<std::string> Value::host() const {
  auto s = string();
  if (!s) return std::nullopt;
  if (auto problem = host_problem(*s)) {
    error(*problem);
    return std::nullopt;
  }
  return s;
}

std::optional<std::filesystem::path> Value::absolute_path() const {
  auto s = string();
  if (!s) return std::nullopt;
  if (s->empty() || s->front() != '/') {
    error(fmt::format("must be an absolute path, got \"{}\"", *s));
    return std::nullopt;
  }
  return std::filesystem::path(*s);
}

std::optional<std::filesystem::path> Value::file(Empty empty) const {
  auto s = string();
  if (!s) return std::nullopt;
  if (s->empty()) {
    if (empty == Empty::allowed) return std::filesystem::path();
    error("must not be empty");
    return std::nullopt;
  }
  auto path = absolute_path();
  if (!path) return std::nullopt;
  std::error_code ec;
  const auto status = std::filesystem::status(*path, ec);
  if (status.type() == std::filesystem::file_type::not_found) {
    warning(fmt::format("{} does not exist on this machine", path->string()));
  } else if (ec) {
    warning(fmt::format("cannot check {}: {}", path->string(), ec.message()));
  } else if (std::filesystem::is_directory(status)) {
    error(fmt::format("{} is a directory, not a file", path->string()));
    return std::nullopt;
  }
  return path;
}

std::optional<std::vector<std::string>> Value::command() const {
  auto argv = string_array();
  if (!argv || argv->empty() || argv->front().empty() || argv->front()[0] != '/') return argv;
  const std::string& program = argv->front();
  std::error_code ec;
  const auto status = std::filesystem::status(program, ec);
  if (status.type() == std::filesystem::file_type::not_found) {
    warning(fmt::format("{} does not exist on this machine", program));
  } else if (ec) {
    warning(fmt::format("cannot check {}: {}", program, ec.message()));
  } else if (std::filesystem::is_directory(status) || ::access(program.c_str(), X_OK) != 0) {
    warning(fmt::format("{} is not an executable file", program));
  }
  return argv;
}

std::optional<std::vector<std::string>> Value::string_array() const {
  const auto* array = node_.as_array();
  if (array == nullptr) {
    type_error("an array of strings");
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (std::size_t i = 0; i < array->size(); ++i) {
    auto s = element(i, *array->get(i)).string();
    if (s) {
      out.push_back(std::move(*s));
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::map<std::string, std::string>> Value::string_table() const {
  const auto* table = node_.as_table();
  if (table == nullptr) {
    type_error("a table of strings like { lane = \"01\" }");
    return std::nullopt;
  }
  std::map<std::string, std::string> out;
  bool ok = true;
  for (auto&& [k, v] : *table) {
    if (!is_identifier(k.str(), "_.-", 64)) {
      ctx_.error(position(k.source()),
                 fmt::format("{} {}: \"{}\" is not a valid key: use 1 to 64 letters, digits or "
                             "'_' '.' '-'",
                             scope_, key_, k.str()));
      ok = false;
      continue;
    }
    auto s = Value(ctx_, scope_, fmt::format("{}.{}", key_, k.str()), v).string();
    if (s) {
      out.emplace(std::string(k.str()), std::move(*s));
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

Value Value::element(std::size_t index, const toml::node& node) const {
  return Value(ctx_, scope_, fmt::format("{}[{}]", key_, index), node);
}

// ---------------------------------------------------------------------------

void read_fields(Context& ctx, std::string_view scope, const toml::table& table,
                 std::span<const Field> fields, const SourcePos& missing_at, UnknownKeys unknown) {
  for (auto&& [key, node] : table) {
    auto field = std::find_if(fields.begin(), fields.end(),
                              [&, &key = key](const Field& f) { return f.key == key.str(); });
    if (field == fields.end()) {
      if (unknown == UnknownKeys::error) {
        ctx.error(position(key.source()), fmt::format("{}: unknown key \"{}\" (known keys: {})",
                                                      scope, key.str(), join_keys(fields)));
      }
      continue;
    }
    field->read(Value(ctx, scope, std::string(key.str()), node));
  }
  for (const Field& f : fields) {
    if (f.required && !table.contains(f.key)) {
      ctx.error(missing_at, fmt::format("{}: missing required key \"{}\"", scope, f.key));
    }
  }
}

const toml::table& table_or_empty(const toml::node* node) {
  static const toml::table empty;
  const toml::table* table = node != nullptr ? node->as_table() : nullptr;
  return table != nullptr ? *table : empty;
}

std::vector<const toml::node*> match_sections(Context& ctx, const toml::table& root,
                                              std::span<const SectionName> sections) {
  std::vector<const toml::node*> nodes(sections.size(), nullptr);
  for (auto&& [key, node] : root) {
    auto it = std::find_if(sections.begin(), sections.end(),
                           [&, &key = key](const SectionName& s) { return s.name == key.str(); });
    const SourcePos where = position(key.source());
    if (it == sections.end()) {
      const std::string known = join_sections(sections);
      if (node.is_table()) {
        ctx.error(where, fmt::format("unknown table [{}] (known: {})", key.str(), known));
      } else if (has_shape(node, Shape::array_of_tables) && !node.as_array()->empty()) {
        ctx.error(where, fmt::format("unknown table [[{}]] (known: {})", key.str(), known));
      } else {
        ctx.error(where, fmt::format("unknown top-level key \"{}\" (known: {})", key.str(), known));
      }
      continue;
    }
    if (!has_shape(node, it->shape)) {
      if (it->shape == Shape::table) {
        ctx.error(where, fmt::format("{} must be a table: write [{}], got {}", key.str(), key.str(),
                                     type_name(node)));
      } else {
        ctx.error(where, fmt::format("{} must be an array of tables: write [[{}]], got {}",
                                     key.str(), key.str(), type_name(node)));
      }
      continue;
    }
    nodes[static_cast<std::size_t>(it - sections.begin())] = &node;
  }
  return nodes;
}

// ---------------------------------------------------------------------------

bool is_identifier(std::string_view text, std::string_view allowed, std::size_t max_len) {
  if (text.empty() || text.size() > max_len) return false;
  return std::all_of(text.begin(), text.end(), [&](char c) {
    return is_alnum(c) || allowed.find(c) != std::string_view::npos;
  });
}

std::optional<std::string> host_problem(std::string_view host) {
  if (host.empty()) return "must not be empty";
  if (std::any_of(host.begin(), host.end(),
                  [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; })) {
    return fmt::format("\"{}\" must not contain spaces", host);
  }
  if (host.find('/') != std::string_view::npos) {
    return fmt::format("\"{}\" must be a host name or an IP address, not a URL or a path", host);
  }
  if (host.find(':') != std::string_view::npos) return ipv6_problem(host);
  if (std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || c == '.'; })) {
    in_addr out{};
    if (inet_pton(AF_INET, std::string(host).c_str(), &out) != 1) {
      return fmt::format("\"{}\" is not a valid IPv4 address", host);
    }
    return std::nullopt;
  }
  std::string_view name = host;
  if (name.back() == '.') name.remove_suffix(1);
  bool ok = !name.empty() && name.size() <= 253;
  while (ok && !name.empty()) {
    const std::size_t dot = name.find('.');
    const std::string_view label = name.substr(0, dot);
    ok = !label.empty() && label.size() <= 63 && label.front() != '-' && label.back() != '-' &&
         std::all_of(label.begin(), label.end(),
                     [](char c) { return is_alnum(c) || c == '-' || c == '_'; });
    name = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
    if (dot != std::string_view::npos && name.empty()) ok = false;
  }
  if (!ok) {
    return fmt::format(
        "\"{}\" is not a valid host name: use letters, digits, '-' and dots, or an IP address",
        host);
  }
  return std::nullopt;
}

std::optional<std::string> broker_uri_problem(std::string_view uri) {
  static constexpr std::string_view kExample = "e.g. \"tcp://127.0.0.1:1883\"";
  const std::size_t sep = uri.find("://");
  if (sep == std::string_view::npos) {
    return fmt::format("\"{}\" is not a broker URI: write scheme://host[:port], {}", uri, kExample);
  }
  const std::string_view scheme = uri.substr(0, sep);
  if (scheme != "tcp" && scheme != "ssl" && scheme != "ws" && scheme != "wss") {
    return fmt::format("\"{}\": unknown scheme \"{}\": use tcp, ssl, ws or wss, {}", uri, scheme,
                       kExample);
  }
  const std::string_view rest = uri.substr(sep + 3);
  const std::string_view authority = rest.substr(0, rest.find('/'));
  const std::string_view path = rest.substr(authority.size());
  if (authority.find('@') != std::string_view::npos) {
    return fmt::format("\"{}\" must not carry credentials: use username and password_file", uri);
  }
  std::string_view host = authority;
  std::optional<std::string_view> port;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return fmt::format("\"{}\": IPv6 address without its closing ']'", uri);
    }
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fmt::format("\"{}\": unexpected text after ']'", uri);
      port = after.substr(1);
    }
    if (host.find(':') == std::string_view::npos) {
      return fmt::format("\"{}\": only IPv6 addresses go in brackets", uri);
    }
  } else if (const std::size_t colon = authority.find(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port->find(':') != std::string_view::npos) {
      return fmt::format("\"{}\": write an IPv6 address in brackets, e.g. \"tcp://[::1]:1883\"",
                         uri);
    }
  }
  if (host.empty()) return fmt::format("\"{}\" has no host, {}", uri, kExample);
  if (auto problem = host_problem(host)) return fmt::format("\"{}\": host {}", uri, *problem);
  if (port) {
    int n = 0;
    bool ok =
        !port->empty() && port->size() <= 5 && std::all_of(port->begin(), port->end(), is_digit);
    for (char c : *port) n = ok ? n * 10 + (c - '0') : 0;
    if (!ok || n < 1 || n > 65535) {
      return fmt::format("\"{}\": port must be between 1 and 65535, got \"{}\"", uri, *port);
    }
  }
  if (!path.empty() && scheme != "ws" && scheme != "wss") {
    return fmt::format("\"{}\": a path is only allowed with ws:// or wss://", uri);
  }
  if (std::any_of(path.begin(), path.end(),
                  [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; })) {
    return fmt::format("\"{}\": the path must not contain spaces", uri);
  }
  return std::nullopt;
}

std::string_view type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    case toml::node_type::none: break;
  }
  return "nothing";
}

}  // namespace storewatch::config::detail
