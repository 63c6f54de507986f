#include "config/sources.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <system_error>

#include "config/prescan.h"

namespace storewatch::config::detail {
namespace {

// A config larger than this is not a config (or is /dev/zero).
constexpr std::size_t kMaxFileSize = std::size_t{16} << 20;

std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

struct FileCloser {
  void operator()(std::FILE* f) const { static_cast<void>(std::fclose(f)); }
};

bool is_array_of_tables(const toml::node& node) {
  const toml::array* array = node.as_array();
  return array != nullptr && array->is_array_of_tables();
}

}  // namespace

Result<std::string> read_text(const std::filesystem::path& file) {
  errno = 0;
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(file.c_str(), "rb"));
  if (!f) return Error{errno_text(errno)};
  std::string text;
  char buffer[64 * 1024];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, f.get())) > 0) {
    text.append(buffer, n);
    if (text.size() > kMaxFileSize) {
      return Error{fmt::format("larger than {} MiB, not a config file", kMaxFileSize >> 20)};
    }
  }
  if (std::ferror(f.get()) != 0) return Error{errno_text(errno)};
  return text;
}

std::optional<toml::table> parse_toml(Context& ctx, std::string_view text,
                                      const std::string& name) {
  ctx.add_file(name);
  // toml++ recurses once per level of a table header or a dotted key, without
  // a limit: a hostile file would overflow the stack. Bound them first.
  if (auto problem = prescan_toml(text)) {
    ctx.error(SourcePos{name, problem->line, problem->column}, std::move(problem->message));
    return std::nullopt;
  }
  try {
    return toml::parse(text, std::string(name));
  } catch (const toml::parse_error& e) {
    // toml++ says "Error while parsing value: could not determine value type";
    // lead with what is wrong, and keep where the parser was as context.
    std::string_view description = e.description();
    static constexpr std::string_view kPrefix = "Error while parsing ";
    std::string message = fmt::format("invalid TOML: {}", description);
    if (description.substr(0, kPrefix.size()) == kPrefix) {
      description.remove_prefix(kPrefix.size());
      const std::size_t colon = description.find(": ");
      if (colon != std::string_view::npos) {
        message = fmt::format("invalid TOML: {} (while parsing {})", description.substr(colon + 2),
                              description.substr(0, colon));
      }
    }
    ctx.error(position(e.source(), name), std::move(message));
    return std::nullopt;
  }
}

void merge(toml::table& dst, toml::table&& src) {
  for (auto&& [key, node] : src) {
    toml::node* existing = dst.get(key.str());
    if (existing != nullptr && existing->is_table() && node.is_table()) {
      merge(*existing->as_table(), std::move(*node.as_table()));
      continue;
    }
    if (existing != nullptr && is_array_of_tables(*existing) && is_array_of_tables(node)) {
      toml::array& to = *existing->as_array();
      for (toml::node& element : *node.as_array()) to.push_back(std::move(*element.as_table()));
      continue;
    }
    // Erase first so the key's position is the overriding file's.
    dst.erase(key.str());
    node.visit([&dst, &key = key](auto& concrete) {
      dst.insert_or_assign(toml::key(key), std::move(concrete));
    });
  }
}

std::vector<std::filesystem::path> drop_in_files(Context& ctx, const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  std::error_code ec;
  const auto status = fs::status(dir, ec);
  if (status.type() == fs::file_type::not_found) return files;
  if (ec) {
    ctx.error(SourcePos{dir.string(), 0, 0},
              fmt::format("cannot read drop-in directory: {}", ec.message()));
    return files;
  }
  if (!fs::is_directory(status)) {
    ctx.error(SourcePos{dir.string(), 0, 0}, "drop-in directory is not a directory");
    return files;
  }
  fs::directory_iterator it(dir, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const fs::path& path = it->path();
    const std::string name = path.filename().string();
    if (path.extension() != ".toml" || name.front() == '.') continue;
    std::error_code type_ec;
    if (it->is_directory(type_ec)) continue;
    files.push_back(path);
  }
  if (ec) {
    ctx.error(SourcePos{dir.string(), 0, 0},
              fmt::format("cannot read drop-in directory: {}", ec.message()));
  }
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().string() < b.filename().string();
  });
  return files;
}

}  // namespace storewatch::config::detail
