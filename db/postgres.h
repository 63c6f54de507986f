#pragma once
/// \file
/// A small RAII client over libpq for HQ's PostgreSQL backend
/// (hq/pg_store.h): one connection, parameterised statements in text
/// format, COPY FROM STDIN, and errors that say whether the connection is
/// gone (so the caller reconnects) or the statement failed. Not thread-safe:
/// each worker owns its connection.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "db/errors.h"

struct pg_conn;
struct pg_result;

namespace storewatch::db::pg {

/// Error::code of a failure that lost the connection (the server went away,
/// restarted, failed over) or could not make one: reconnect and try again.
inline constexpr int kConnectionLost = db::kUnreachable;

/// The parameters of one statement, in text format ($1, $2, ...).
class Params {
 public:
  Params& add(std::string_view text);
  Params& add(const std::string& text) { return add(std::string_view(text)); }
  Params& add(const char* text) { return add(std::string_view(text)); }
  Params& add(std::int64_t n);
  Params& add(bool b);
  Params& add(const std::optional<std::string>& text);
  Params& add(const std::optional<std::int64_t>& n);
  Params& add_null();

  int size() const { return static_cast<int>(values_.size()); }
  /// Pointers into the values, null for SQL NULL; valid while `*this` is.
  std::vector<const char*> pointers() const;

 private:
  std::vector<std::string> values_;
  std::vector<bool> nulls_;
};

/// The rows of one statement. Cells are read as text (text format).
class Rows {
 public:
  Rows() = default;
  explicit Rows(pg_result* result);
  Rows(Rows&&) noexcept;
  Rows& operator=(Rows&&) noexcept;
  ~Rows();

  int size() const;
  bool empty() const { return size() == 0; }
  bool is_null(int row, int col) const;
  std::string_view text(int row, int col) const;
  std::int64_t int64(int row, int col) const;
  std::optional<std::int64_t> optional_int64(int row, int col) const;
  std::optional<std::string> optional_text(int row, int col) const;
  /// `t` of a boolean column.
  bool boolean(int row, int col) const;
  /// Rows changed by an INSERT, UPDATE or DELETE.
  std::int64_t affected() const;

 private:
  pg_result* result_ = nullptr;
};

class Connection {
 public:
  /// Connects to `uri` (a libpq connection URI). The password comes from
  /// `password_file` when given (the file's first line), else from libpq's
  /// own PGPASSFILE (~/.pgpass). Every connection gets `application_name`.
  /// A failure's message is libpq's, prefixed with the server it tried,
  /// without any password.
  static Result<Connection> connect(const std::string& uri,
                                    const std::filesystem::path& password_file,
                                    const std::string& application_name,
                                    std::chrono::seconds timeout);

  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  ~Connection();

  /// Runs `sql`: one or more statements without parameters.
  Result<Rows> exec(std::string_view sql);
  /// Runs one statement with `params` ($1, $2, ...).
  Result<Rows> exec(std::string_view sql, const Params& params);
  /// `COPY ... FROM STDIN` (text format) with `data`: rows of tab-separated
  /// columns ended by '\n', escaped by copy_escape.
  Status copy_in(std::string_view copy_sql, std::string_view data);

  /// Whether the connection is gone (the server closed it, restarted).
  bool broken() const;
  /// "user@host:port/dbname", nothing secret.
  std::string describe() const;
  /// The server's version number, e.g. 150018.
  int server_version() const;

 private:
  explicit Connection(pg_conn* conn);
  Error error_of(pg_result* result, std::string_view what) const;
  pg_conn* conn_ = nullptr;
};

/// Appends `text` to `out` escaped for COPY's text format (backslash, tab,
/// newline, carriage return).
void copy_escape(std::string& out, std::string_view text);

/// Quotes `name` as an SQL identifier.
std::string quote_identifier(std::string_view name);

}  // namespace storewatch::db::pg
