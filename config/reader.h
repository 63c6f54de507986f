#pragma once
/// \file
/// Internal to config/: the pieces every section reader is built from. A
/// Context collects diagnostics; a Value is one key's TOML node with typed,
/// validating accessors; a Field says how one key of a table is read, and a
/// Section how one top-level table is read. Adding a section (`[[notify]]`,
/// `[[silence]]`, …) means writing one reader and adding one Section row.

#include <toml++/toml.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace storewatch::config::detail {

/// Where a toml++ node or key was defined; `fallback_file` when it carries no path.
SourcePos position(const toml::source_region& region, const std::string& fallback_file = {});

/// Collects diagnostics while one config is loaded.
class Context {
 public:
  explicit Context(std::string main_file, std::span<const ProbeTypeSchema> probe_types = {});

  void error(SourcePos where, std::string message);
  void warning(SourcePos where, std::string message);
  bool has_errors() const;
  std::size_t error_count() const;

  /// Records a file as read; diagnostics are ordered by the order files were read.
  void add_file(const std::string& file);

  /// Every diagnostic, ordered by file, line and column.
  std::vector<Diagnostic> take_diagnostics();

  /// The file as a whole, for problems that have no line (a missing key).
  SourcePos main_file() const { return SourcePos{files_.front(), 0, 0}; }

  std::span<const ProbeTypeSchema> probe_types() const { return probe_types_; }

 private:
  std::vector<std::string> files_;
  std::span<const ProbeTypeSchema> probe_types_;
  std::vector<Diagnostic> diagnostics_;
  bool has_errors_ = false;
  std::size_t error_count_ = 0;
};

/// Whether an empty string is accepted as "not set" by Value::file.
enum class Empty { allowed, error };

/// One key's value, in a scope such as "[sync]" or "[[probe]] \"lane-01\"".
/// Each accessor checks the TOML type and the value, reports what is wrong
/// (naming the key, the expected and the actual type) and returns nullopt
/// then.
class Value {
 public:
  Value(Context& ctx, std::string_view scope, std::string key, const toml::node& node);
  /// For values that are not in any file (a probe type's defaults): problems
  /// are reported at `where`.
  Value(Context& ctx, std::string_view scope, std::string key, const toml::node& node,
        SourcePos where);

  const toml::node& node() const { return node_; }
  const SourcePos& where() const { return where_; }
  const std::string& key() const { return key_; }

  /// "<scope> <key>: <message>" at the value's position.
  void error(std::string_view message) const;
  void warning(std::string_view message) const;

  std::optional<std::string> string() const;
  std::optional<std::int64_t> integer(std::int64_t min, std::int64_t max) const;
  std::optional<bool> boolean() const;
  /// An integer or a float, as a double.
  std::optional<double> number() const;
  /// A string that is one of `choices` ("a|b|c").
  std::optional<std::string> choice(std::string_view choices) const;
  /// Any duration config can write.
  std::optional<Millis> duration() const;
  /// A duration of at least `min`.
  std::optional<Millis> duration(Millis min) const;
  /// A size string, 1024-based: "512KB", "256MB", "1GB", "1TB"; at least `min` bytes.
  std::optional<std::int64_t> size(std::int64_t min) const;
  /// A string of `allowed` characters (besides letters and digits), 1..max_len long.
  std::optional<std::string> identifier(std::string_view what, std::string_view allowed,
                                        std::size_t max_len) const;
  std::optional<std::string> host() const;
  std::optional<std::filesystem::path> absolute_path() const;
  /// A file this machine should have: relative is an error, missing a warning.
  std::optional<std::filesystem::path> file(Empty empty) const;
  std::optional<std::vector<std::string>> string_array() const;
  /// An argv array: like string_array, and an absolute argv[0] that is
  /// missing or not executable on this machine is a warning.
  std::optional<std::vector<std::string>> command() const;
  /// An inline table of strings; keys match `[A-Za-z0-9_.-]{1,64}`.
  std::optional<std::map<std::string, std::string>> string_table() const;

  /// The element `index` of an array value, as a Value of its own.
  Value element(std::size_t index, const toml::node& node) const;

 private:
  void type_error(std::string_view expected) const;

  Context& ctx_;
  std::string_view scope_;
  std::string key_;
  const toml::node& node_;
  SourcePos where_;
};

/// One key a table accepts and how its value is read.
struct Field {
  std::string_view key;
  std::function<void(const Value&)> read;
  bool required = false;
};

/// What read_fields does with keys no Field names.
enum class UnknownKeys { error, ignore };

/// Reads every key of `table` with its Field. Unknown keys are errors that
/// list the known ones; a missing required key is reported at `missing_at`.
void read_fields(Context& ctx, std::string_view scope, const toml::table& table,
                 std::span<const Field> fields, const SourcePos& missing_at,
                 UnknownKeys unknown = UnknownKeys::error);

/// The table a section reader gets when its section is absent.
const toml::table& table_or_empty(const toml::node* node);

/// "[name]" or "[[name]]".
enum class Shape { table, array_of_tables };

/// One top-level section of a config of type T and its reader. The reader
/// gets the section's node (a table, or an array of tables) or nullptr when
/// the section is absent, so it can report missing required keys.
template <class T>
struct Section {
  std::string_view name;
  Shape shape;
  void (*read)(Context& ctx, const toml::node* node, T& out);
};

struct SectionName {
  std::string_view name;
  Shape shape;
};

/// Reports top-level keys no section names, and sections of the wrong shape.
/// Returns, per section, its node or nullptr (absent or of the wrong shape).
std::vector<const toml::node*> match_sections(Context& ctx, const toml::table& root,
                                              std::span<const SectionName> sections);

/// Reads `root` section by section into `out`.
template <class T>
void read_sections(Context& ctx, const toml::table& root, std::span<const Section<T>> sections,
                   T& out) {
  std::vector<SectionName> names;
  names.reserve(sections.size());
  for (const Section<T>& s : sections) names.push_back({s.name, s.shape});
  const std::vector<const toml::node*> nodes = match_sections(ctx, root, names);
  for (std::size_t i = 0; i < sections.size(); ++i) {
    const toml::node* node = nodes[i];
    if (node == nullptr && root.contains(sections[i].name)) continue;  // wrong shape, reported
    sections[i].read(ctx, node, out);
  }
}

// ---------------------------------------------------------------------------
// Checks shared by several readers; each returns what is wrong, or nullopt.

/// A host name, an IPv4 or an IPv6 literal (without brackets).
std::optional<std::string> host_problem(std::string_view host);

/// scheme://host[:port][/path], scheme tcp|ssl|ws|wss, a path only for ws/wss.
std::optional<std::string> broker_uri_problem(std::string_view uri);

/// Letters, digits and the characters of `allowed`, 1..max_len long.
bool is_identifier(std::string_view text, std::string_view allowed, std::size_t max_len);

/// "a string", "an integer", … for messages.
std::string_view type_name(const toml::node& node);

}  // namespace storewatch::config::detail
