#include "base/short_uid.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "base/table.h"

namespace storewatch {

namespace {

std::size_t common_start(const std::string& a, const std::string& b) {
  const std::size_t n = std::min(a.size(), b.size());
  std::size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

std::vector<std::string> unique_prefixes(const std::vector<std::string>& uids, std::size_t min) {
  // Sorted, a uid shares its longest start with a neighbour.
  std::vector<std::size_t> order(uids.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return uids[a] < uids[b]; });
  std::vector<std::string> out(uids.size());
  for (std::size_t k = 0; k < order.size(); ++k) {
    const std::string& uid = uids[order[k]];
    std::size_t shared = 0;
    if (k > 0) shared = std::max(shared, common_start(uid, uids[order[k - 1]]));
    if (k + 1 < order.size()) shared = std::max(shared, common_start(uid, uids[order[k + 1]]));
    std::size_t n = std::max(min, shared + 1);
    if (n < uid.size() && uid[n - 1] == '-') ++n;
    out[order[k]] = uid.substr(0, std::min(n, uid.size()));
  }
  return out;
}

std::string ambiguous_uid_message(const std::string& prefix, const std::string& things,
                                  const std::vector<std::string>& headers,
                                  std::vector<std::vector<std::string>> rows, std::size_t more) {
  std::vector<std::string> uids;
  for (const auto& r : rows) uids.push_back(r.empty() ? std::string() : r.front());
  const auto shown = unique_prefixes(uids, std::max(kShortUid, prefix.size() + 1));
  Table t(headers);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].empty()) rows[i].front() = shown[i];
    t.add(std::move(rows[i]));
  }
  std::string out =
      fmt::format("'{}' matches {} {}; give more of the uid:", prefix, rows.size() + more, things);
  const std::string table = t.render(false);
  std::size_t start = 0;
  while (start < table.size()) {
    const std::size_t end = table.find('\n', start);
    out += "\n  " + table.substr(start, end - start);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (more > 0) out += fmt::format("\n  and {} more", more);
  return out;
}

}  // namespace storewatch
