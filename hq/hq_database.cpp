#include "hq/hq_database.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "config/postgres_uri.h"
#include "hq/hq_store.h"
#ifdef STOREWATCH_HAVE_POSTGRESQL
#include "hq/pg_store.h"
#endif

namespace storewatch::hq {

Result<std::unique_ptr<HqDatabase>> open_hq_database(const config::HqConfig& config, HqOpen mode,
                                                     const std::string& application_name) {
  if (!config.postgresql.empty()) {
#ifdef STOREWATCH_HAVE_POSTGRESQL
    auto pg = PgHqStore::open(config, mode, application_name);
    if (!pg) return pg.error();
    return std::unique_ptr<HqDatabase>(std::move(*pg));
#else
    (void)application_name;
    return Error{*config::postgresql_uri_problem(config.postgresql)};
#endif
  }
  auto sqlite =
      HqStore::open(config.database, mode == HqOpen::read_write ? db::Database::Mode::read_write
                                                                : db::Database::Mode::read_only);
  if (!sqlite) return sqlite.error();
  return std::unique_ptr<HqDatabase>(std::make_unique<HqStore>(std::move(*sqlite)));
}

std::string grouped(std::int64_t n) {
  const std::string digits = std::to_string(n);
  const std::size_t first = n < 0 ? 1 : 0;  // after the sign
  std::string out = digits.substr(0, first);
  for (std::size_t i = first; i < digits.size(); ++i) {
    if (i > first && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string describe(const Pruned& pruned) {
  std::string out = fmt::format("removed {} event{} and {} closed incident{}",
                                grouped(pruned.events), pruned.events == 1 ? "" : "s",
                                grouped(pruned.incidents), pruned.incidents == 1 ? "" : "s");
  if (!pruned.partitions.empty()) {
    out += fmt::format(" (partition{} {} dropped)", pruned.partitions.size() == 1 ? "" : "s",
                       fmt::join(pruned.partitions, ", "));
  }
  if (pruned.more) out += "; more to do";
  return out;
}

}  // namespace storewatch::hq
