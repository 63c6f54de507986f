#include "tests/support/hq_backend.h"

#include <stdexcept>

#include "db/sqlite.h"

namespace storewatch::test {

std::vector<Backend> hq_backends() {
#ifdef STOREWATCH_HAVE_POSTGRESQL
  return {Backend::sqlite, Backend::postgresql};
#else
  return {Backend::sqlite};
#endif
}

std::string backend_name(const testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::sqlite ? "SQLite" : "PostgreSQL";
}

HqTestDatabase::HqTestDatabase(Backend backend, std::filesystem::path sqlite_file)
    : backend_(backend), file_(std::move(sqlite_file)) {
  if (backend_ != Backend::postgresql) return;
  skip_ = PgCluster::unavailable();
  if (!skip_.empty()) return;
  cluster_ = std::make_unique<PgCluster>();
  uri_ = cluster_->create_database("hq");
}

void HqTestDatabase::configure(config::HqConfig& config) const {
  if (backend_ == Backend::sqlite) {
    config.database = file_;
    config.postgresql.clear();
  } else {
    config.postgresql = uri_;
  }
}

std::int64_t HqTestDatabase::count(const std::string& sql) {
  if (backend_ == Backend::postgresql) return std::stoll(cluster_->sql("hq", sql));
  auto db = db::Database::open(file_, db::Database::Mode::read_only);
  if (!db) throw std::runtime_error(db.error().message);
  auto stmt = db->prepare(sql);
  if (!stmt) throw std::runtime_error(stmt.error().message);
  auto row = stmt->step();
  if (!row || !*row) throw std::runtime_error("no row: " + sql);
  return stmt->int64(0);
}

void HqTestDatabase::exec(const std::string& sql) {
  if (backend_ == Backend::postgresql) {
    cluster_->sql("hq", sql);
    return;
  }
  auto db = db::Database::open(file_, db::Database::Mode::read_write);
  if (!db) throw std::runtime_error(db.error().message);
  if (auto st = db->exec(sql); !st) throw std::runtime_error(st.error().message);
}

}  // namespace storewatch::test
