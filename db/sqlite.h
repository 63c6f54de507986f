#pragma once
/// \file
/// A thin RAII layer over SQLite shared by the agent's store and HQ's
/// database: prepared statements only, SQLite codes turned into Errors that
/// name the file, and versioned migrations.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace storewatch::db {

class Database;

/// A prepared statement. Bind indexes start at 1, column indexes at 0.
class Statement {
 public:
  Statement() = default;
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, int value) { return bind(index, static_cast<std::int64_t>(value)); }
  Statement& bind(int index, bool value) { return bind(index, static_cast<std::int64_t>(value)); }
  Statement& bind(int index, double value);
  Statement& bind(int index, std::string_view value);
  Statement& bind(int index, const char* value) { return bind(index, std::string_view(value)); }
  Statement& bind(int index, const std::string& value) {
    return bind(index, std::string_view(value));
  }
  Statement& bind_null(int index);
  /// Binds text that SQLite reads in place, without a copy: it must stay
  /// alive and unchanged until run() or reset(). For hot paths only.
  Statement& bind_ref(int index, std::string_view value);
  Statement& bind_ref(int index, const std::string& value) {
    return bind_ref(index, std::string_view(value));
  }
  Statement& bind_ref(int index, const std::optional<std::string>& value) {
    return value ? bind_ref(index, *value) : bind_null(index);
  }
  // A temporary would be gone before the statement runs.
  Statement& bind_ref(int index, std::string&& value) = delete;
  Statement& bind_ref(int index, std::optional<std::string>&& value) = delete;
  template <class T>
  Statement& bind(int index, const std::optional<T>& value) {
    return value ? bind(index, *value) : bind_null(index);
  }

  /// true: a row is ready; false: done.
  Result<bool> step();
  /// Runs to completion (for statements that return no rows).
  Status run();
  /// Resets for another execution and clears the bindings.
  void reset();

  /// Steps through the rows, calling `on_row(*this)` for each until it
  /// returns false, then resets the statement (also on an error).
  template <class F>
  Status each(F&& on_row) {
    Status result;
    for (;;) {
      auto r = step();
      if (!r) {
        result = r.error();
        break;
      }
      if (!*r || !on_row(*this)) break;
    }
    reset();
    return result;
  }

  /// Columns in the result.
  int column_count() const;
  bool is_null(int column) const;
  std::int64_t int64(int column) const;
  double real(int column) const;
  std::string text(int column) const;
  std::optional<std::string> optional_text(int column) const;
  std::optional<std::int64_t> optional_int64(int column) const;

 private:
  friend class Database;
  Statement(sqlite3_stmt* stmt, Database* db) : stmt_(stmt), db_(db) {}
  sqlite3_stmt* stmt_ = nullptr;
  Database* db_ = nullptr;
};

class Database {
 public:
  enum class Mode { read_only, read_write };

  /// Opens (read_write also creates) the file and checks it is a SQLite
  /// database; a corrupt or foreign file is an Error naming it.
  static Result<Database> open(const std::filesystem::path& path, Mode mode);

  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  Status exec(std::string_view sql);
  Result<Statement> prepare(std::string_view sql);
  std::int64_t last_insert_rowid() const;
  /// Rows changed by the last statement.
  int changes() const;

  /// "path: message (code)" for the connection's last error.
  std::string error_message(int rc) const;
  /// That message as an Error carrying the primary result code.
  Error error(int rc) const;
  const std::filesystem::path& path() const { return path_; }
  sqlite3* handle() const { return db_; }

 private:
  Database(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
};

/// Whether the same statements may succeed when tried again later (the
/// disk is full, a lock is held, an I/O error): false for a failure that
/// repeats every time (a constraint, a schema error, a corrupt file).
bool retry_may_fix(const Error& e);
/// Whether the write failed for want of space (SQLITE_FULL, ENOSPC, EDQUOT).
bool disk_full(const Error& e);

/// BEGIN IMMEDIATE … COMMIT, rolled back unless commit() succeeded.
class Transaction {
 public:
  static Result<Transaction> begin(Database& db);
  Transaction(Transaction&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  Status commit();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;
};

/// One schema step: SQL that takes the schema from version `version - 1`
/// to `version`.
struct Migration {
  int version;
  std::string_view sql;
};

/// Applies the migrations the file lacks, each in its own transaction,
/// recording the version in `PRAGMA user_version`. A file whose version is
/// newer than the last migration was written by a newer storewatch and is
/// refused.
Status migrate(Database& db, std::span<const Migration> migrations);

/// The schema version recorded in the file.
Result<int> schema_version(Database& db);

/// Refuses a database written by a newer build (read-only callers).
Status check_not_newer(Database& db, std::span<const Migration> migrations);

}  // namespace storewatch::db
