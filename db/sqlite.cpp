#include "db/sqlite.h"

#include <cerrno>

#include <sqlite3.h>

#include <fmt/format.h>

namespace storewatch::db {

// --- Statement ---------------------------------------------------------------

Statement::Statement(Statement&& other) noexcept : stmt_(other.stmt_), db_(other.db_) {
  other.stmt_ = nullptr;
}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    stmt_ = other.stmt_;
    db_ = other.db_;
    other.stmt_ = nullptr;
  }
  return *this;
}

Statement::~Statement() {
  sqlite3_finalize(stmt_);
}

Statement& Statement::bind(int index, std::int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::bind(int index, double value) {
  sqlite3_bind_double(stmt_, index, value);
  return *this;
}

Statement& Statement::bind(int index, std::string_view value) {
  sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::bind_ref(int index, std::string_view value) {
  sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
  return *this;
}

Statement& Statement::bind_null(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

Result<bool> Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return db_->error(rc);
}

Status Statement::run() {
  for (;;) {
    auto r = step();
    if (!r) {
      reset();
      return r.error();
    }
    if (!*r) break;
  }
  reset();
  return {};
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int Statement::column_count() const {
  return sqlite3_column_count(stmt_);
}

bool Statement::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

std::int64_t Statement::int64(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

double Statement::real(int column) const {
  return sqlite3_column_double(stmt_, column);
}

std::string Statement::text(int column) const {
  const auto* p = sqlite3_column_text(stmt_, column);
  if (p == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
}

std::optional<std::string> Statement::optional_text(int column) const {
  if (is_null(column)) return std::nullopt;
  return text(column);
}

std::optional<std::int64_t> Statement::optional_int64(int column) const {
  if (is_null(column)) return std::nullopt;
  return int64(column);
}

// --- Database ----------------------------------------------------------------

Result<Database> Database::open(const std::filesystem::path& path, Mode mode) {
  // SQLite's memory statistics take a global mutex on every allocation; we
  // never read them, and they cost the store writer about 8 % of its
  // instructions per change. This must precede SQLite's initialisation, so
  // it is done once, before the first connection; if something else already
  // initialised SQLite the call fails and changes nothing.
  static const int memstatus_off = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)memstatus_off;
  sqlite3* handle = nullptr;
  int flags = SQLITE_OPEN_NOMUTEX;
  flags |=
      mode == Mode::read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  int rc = sqlite3_open_v2(path.c_str(), &handle, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = handle != nullptr ? sqlite3_errmsg(handle) : sqlite3_errstr(rc);
    sqlite3_close(handle);
    return Error{fmt::format("cannot open database {}: {}", path.string(), msg)};
  }
  Database db(handle, path);
  sqlite3_extended_result_codes(handle, 1);
  sqlite3_busy_timeout(handle, 5000);
  if (mode != Mode::read_only) {
    // Keep the -wal and -shm files when the last writer closes: a reader
    // that may not write the directory (a technician in the file's group,
    // the daemon stopped) can open a WAL database only when they exist.
    // They are kept empty: a -wal with old frames next to a database
    // someone replaced would be read into the new one. With a non-negative
    // journal_size_limit SQLite truncates a kept WAL to zero bytes when the
    // last connection closes; 64 MB (the writer's own checkpoint threshold)
    // leaves the WAL alone while the daemon runs.
    int persist = 1;
    sqlite3_file_control(handle, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    sqlite3_exec(handle, "PRAGMA journal_size_limit = 67108864", nullptr, nullptr, nullptr);
  }
  // SQLite opens lazily: touching the schema is what reveals a file that is
  // not a database or whose header is damaged.
  rc = sqlite3_exec(handle, "SELECT count(*) FROM sqlite_schema", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    int primary = rc & 0xff;
    if (primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT) {
      return Error{fmt::format(
          "database {} is corrupt or not a storewatch database ({}); move it aside to start a "
          "new one",
          path.string(), sqlite3_errstr(rc))};
    }
    return db.error(rc);
  }
  return db;
}

Database::Database(Database&& other) noexcept : db_(other.db_), path_(std::move(other.path_)) {
  other.db_ = nullptr;
}

Database& Database::operator=(Database&& other) noexcept {
  if (this != &other) {
    sqlite3_close_v2(db_);
    db_ = other.db_;
    path_ = std::move(other.path_);
    other.db_ = nullptr;
  }
  return *this;
}

Database::~Database() {
  sqlite3_close_v2(db_);
}

Status Database::exec(std::string_view sql) {
  std::string s(sql);
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return error(rc);
  return {};
}

Result<Statement> Database::prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return error(rc);
  return Statement(stmt, this);
}

std::int64_t Database::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}

int Database::changes() const {
  return sqlite3_changes(db_);
}

Error Database::error(int rc) const {
  int code = rc & 0xff;
  // SQLite reports some writes that failed for want of space as I/O errors.
  if (code == SQLITE_IOERR && db_ != nullptr) {
    const int sys = sqlite3_system_errno(db_);
    if (sys == ENOSPC || sys == EDQUOT) code = SQLITE_FULL;
  }
  return Error{error_message(rc), code};
}

bool retry_may_fix(const Error& e) {
  switch (e.code) {
    case SQLITE_FULL:   // space may be freed
    case SQLITE_IOERR:  // a disk or mount that comes back
    case SQLITE_BUSY:   // another connection's lock
    case SQLITE_LOCKED:
    case SQLITE_NOMEM:
    case SQLITE_CANTOPEN:  // the -wal or -shm file, for a moment
    case SQLITE_READONLY:  // a file system remounted read-only, then fixed
    case SQLITE_PROTOCOL:
    case SQLITE_INTERRUPT: return true;
    default:
      // A constraint, a schema error, a value too big, a corrupt file: the
      // same statements fail the same way every time.
      return false;
  }
}

bool disk_full(const Error& e) {
  return e.code == SQLITE_FULL;
}

std::string Database::error_message(int rc) const {
  const char* msg = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  return fmt::format("database {}: {} ({})", path_.string(), msg, sqlite3_errstr(rc));
}

// --- Transaction -------------------------------------------------------------

Result<Transaction> Transaction::begin(Database& db) {
  if (auto st = db.exec("BEGIN IMMEDIATE"); !st) return st.error();
  return Transaction(&db);
}

Transaction::~Transaction() {
  if (db_ != nullptr) (void)db_->exec("ROLLBACK");
}

Status Transaction::commit() {
  if (db_ == nullptr) return Error{"transaction already finished"};
  auto st = db_->exec("COMMIT");
  if (st) db_ = nullptr;
  return st;
}

// --- migrations --------------------------------------------------------------

Result<int> schema_version(Database& db) {
  auto stmt = db.prepare("PRAGMA user_version");
  if (!stmt) return stmt.error();
  auto row = stmt->step();
  if (!row) return row.error();
  return static_cast<int>(stmt->int64(0));
}

Status check_not_newer(Database& db, std::span<const Migration> migrations) {
  auto version = schema_version(db);
  if (!version) return version.error();
  int latest = migrations.empty() ? 0 : migrations.back().version;
  if (*version > latest) {
    return Error{fmt::format(
        "database {} has schema version {}, newer than this storewatch knows ({}); it was "
        "written by a newer release: upgrade storewatch, or move the file aside",
        db.path().string(), *version, latest)};
  }
  return {};
}

Status migrate(Database& db, std::span<const Migration> migrations) {
  if (auto st = check_not_newer(db, migrations); !st) return st;
  auto version = schema_version(db);
  if (!version) return version.error();
  for (const Migration& m : migrations) {
    if (m.version <= *version) continue;
    auto tx = Transaction::begin(db);
    if (!tx) return tx.error();
    if (auto st = db.exec(m.sql); !st) {
      return Error{fmt::format("migrating to schema {}: {}", m.version, st.error().message)};
    }
    if (auto st = db.exec(fmt::format("PRAGMA user_version = {}", m.version)); !st) return st;
    if (auto st = tx->commit(); !st) return st;
  }
  return {};
}

}  // namespace storewatch::db
