#include "hq/hq_database.h"

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

}  // namespace storewatch::hq
