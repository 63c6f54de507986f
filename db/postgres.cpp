#include "db/postgres.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>

#include "base/find_bytes.h"
#include "config/config.h"
#include "config/postgres_uri.h"

namespace storewatch::db::pg {

namespace {

/// libpq's message on one line: its own line breaks (and the tab of a
/// hint line) become "; ", the trailing ones go.
std::string trimmed(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') {
      while (i + 1 < text.size() && (text[i + 1] == '\t' || text[i + 1] == ' ')) ++i;
      out += "; ";
    } else if (text[i] != '\r') {
      out += text[i];
    }
  }
  return out;
}

}  // namespace

// --- Params ---------------------------------------------------------------

Params& Params::add(std::string_view text) {
  values_.emplace_back(text);
  nulls_.push_back(false);
  return *this;
}

Params& Params::add(std::int64_t n) {
  values_.push_back(std::to_string(n));
  nulls_.push_back(false);
  return *this;
}

Params& Params::add(bool b) {
  values_.emplace_back(b ? "t" : "f");
  nulls_.push_back(false);
  return *this;
}

Params& Params::add(const std::optional<std::string>& text) {
  return text ? add(std::string_view(*text)) : add_null();
}

Params& Params::add(const std::optional<std::int64_t>& n) {
  return n ? add(*n) : add_null();
}

Params& Params::add_null() {
  values_.emplace_back();
  nulls_.push_back(true);
  return *this;
}

std::vector<const char*> Params::pointers() const {
  std::vector<const char*> out;
  out.reserve(values_.size());
  for (std::size_t i = 0; i < values_.size(); ++i) {
    out.push_back(nulls_[i] ? nullptr : values_[i].c_str());
  }
  return out;
}

// --- Rows -----------------------------------------------------------------

Rows::Rows(pg_result* result) : result_(result) {}
Rows::Rows(Rows&& other) noexcept : result_(std::exchange(other.result_, nullptr)) {}
Rows& Rows::operator=(Rows&& other) noexcept {
  if (this != &other) {
    if (result_ != nullptr) PQclear(result_);
    result_ = std::exchange(other.result_, nullptr);
  }
  return *this;
}
Rows::~Rows() {
  if (result_ != nullptr) PQclear(result_);
}

int Rows::size() const {
  return result_ == nullptr ? 0 : PQntuples(result_);
}

bool Rows::is_null(int row, int col) const {
  return PQgetisnull(result_, row, col) != 0;
}

std::string_view Rows::text(int row, int col) const {
  return {PQgetvalue(result_, row, col), static_cast<std::size_t>(PQgetlength(result_, row, col))};
}

std::int64_t Rows::int64(int row, int col) const {
  std::string_view t = text(row, col);
  std::int64_t n = 0;
  std::from_chars(t.data(), t.data() + t.size(), n);
  return n;
}

std::optional<std::int64_t> Rows::optional_int64(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return int64(row, col);
}

std::optional<std::string> Rows::optional_text(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return std::string(text(row, col));
}

bool Rows::boolean(int row, int col) const {
  return !is_null(row, col) && text(row, col) == "t";
}

std::int64_t Rows::affected() const {
  if (result_ == nullptr) return 0;
  const char* n = PQcmdTuples(result_);
  std::int64_t out = 0;
  std::from_chars(n, n + std::char_traits<char>::length(n), out);
  return out;
}

// --- Connection -----------------------------------------------------------

Connection::Connection(pg_conn* conn) : conn_(conn) {}
Connection::Connection(Connection&& other) noexcept : conn_(std::exchange(other.conn_, nullptr)) {}
Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = std::exchange(other.conn_, nullptr);
  }
  return *this;
}
Connection::~Connection() {
  if (conn_ != nullptr) PQfinish(conn_);
}

Result<Connection> Connection::connect(const std::string& uri,
                                       const std::filesystem::path& password_file,
                                       const std::string& application_name,
                                       std::chrono::seconds timeout) {
  std::string password;
  if (!password_file.empty()) {
    auto secret = config::read_secret(password_file);
    if (!secret) return secret.error();
    password = *secret;
  }
  const std::string timeout_text = std::to_string(std::max<std::int64_t>(timeout.count(), 1));
  // The URI is expanded first; the keywords after it override it.
  std::array<const char*, 6> keys{"dbname",
                                  "connect_timeout",
                                  "application_name",
                                  password.empty() ? nullptr : "password",
                                  nullptr,
                                  nullptr};
  std::array<const char*, 6> values{uri.c_str(),
                                    timeout_text.c_str(),
                                    application_name.c_str(),
                                    password.empty() ? nullptr : password.c_str(),
                                    nullptr,
                                    nullptr};
  pg_conn* conn = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn == nullptr) return Error{"cannot connect to PostgreSQL: out of memory"};
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = trimmed(PQerrorMessage(conn));
    // A server that is not there (yet) may come; a refused login, a
    // database or role that does not exist will not by waiting.
    const bool needs_password = PQconnectionNeedsPassword(conn) != 0;
    const bool refused = needs_password ||
                         message.find("authentication failed") != std::string::npos ||
                         message.find("does not exist") != std::string::npos ||
                         message.find("no pg_hba.conf entry") != std::string::npos ||
                         message.find("permission denied") != std::string::npos;
    if (needs_password) {
      message += password_file.empty()
                     ? " (the server wants a password: set [hq] database_password_file, or give "
                       "libpq a PGPASSFILE)"
                     : " (the password of " + password_file.string() + " was not enough)";
    }
    Error e{fmt::format("cannot connect to PostgreSQL at {}: {}",
                        config::redact_postgresql_uri(uri), message),
            refused ? 1 : kConnectionLost};
    PQfinish(conn);
    return e;
  }
  // Warnings and notices (e.g. "relation already exists, skipping") are not
  // the operator's business.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  return Connection(conn);
}

bool Connection::broken() const {
  return conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK;
}

std::string Connection::describe() const {
  if (conn_ == nullptr) return "(closed)";
  const char* host = PQhost(conn_);
  std::string where = host != nullptr ? host : "";
  if (where.starts_with('/')) where = "socket " + where;
  return fmt::format("{}@{}:{}/{}", PQuser(conn_), where, PQport(conn_), PQdb(conn_));
}

int Connection::server_version() const {
  return conn_ == nullptr ? 0 : PQserverVersion(conn_);
}

Error Connection::error_of(pg_result* result, std::string_view what) const {
  std::string message = trimmed(result != nullptr ? PQresultErrorMessage(result) : "");
  if (message.empty()) message = trimmed(PQerrorMessage(conn_));
  if (message.starts_with("ERROR:  ")) message.erase(0, 8);
  const bool lost = broken();
  if (result != nullptr) PQclear(result);
  return Error{fmt::format("PostgreSQL{}: {}", what.empty() ? "" : fmt::format(" ({})", what),
                           lost && message.empty() ? "the connection is gone" : message),
               lost ? kConnectionLost : 1};
}

Result<Rows> Connection::exec(std::string_view sql) {
  const std::string text(sql);
  pg_result* r = PQexec(conn_, text.c_str());
  const auto status = r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return error_of(r, {});
  return Rows(r);
}

Result<Rows> Connection::exec(std::string_view sql, const Params& params) {
  const std::string text(sql);
  const std::vector<const char*> values = params.pointers();
  pg_result* r = PQexecParams(conn_, text.c_str(), params.size(), nullptr, values.data(), nullptr,
                              nullptr, /*resultFormat=*/0);
  const auto status = r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return error_of(r, {});
  return Rows(r);
}

Status Connection::copy_in(std::string_view copy_sql, std::string_view data) {
  const std::string text(copy_sql);
  pg_result* r = PQexec(conn_, text.c_str());
  if (r == nullptr || PQresultStatus(r) != PGRES_COPY_IN) return error_of(r, "COPY");
  PQclear(r);
  // PQputCopyData takes an int length: large data goes in pieces.
  constexpr std::size_t kPiece = 1 << 20;
  for (std::size_t at = 0; at < data.size(); at += kPiece) {
    const std::size_t n = std::min(kPiece, data.size() - at);
    if (PQputCopyData(conn_, data.data() + at, static_cast<int>(n)) != 1) {
      return error_of(nullptr, "COPY");
    }
  }
  if (PQputCopyEnd(conn_, nullptr) != 1) return error_of(nullptr, "COPY");
  Status out;
  while ((r = PQgetResult(conn_)) != nullptr) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      Error e = error_of(r, "COPY");
      if (out) out = std::move(e);
    } else {
      PQclear(r);
    }
  }
  return out;
}

void copy_escape(std::string& out, std::string_view text) {
  // Runs without a character to escape (nearly all of an event's JSON) are
  // found eight bytes at a time and appended whole: a character at a time
  // was a sixth of a worker's CPU.
  std::size_t run = 0;
  for (std::size_t i = find_any_of<'\\', '\t', '\n', '\r'>(text, 0); i != std::string_view::npos;
       i = find_any_of<'\\', '\t', '\n', '\r'>(text, i + 1)) {
    out.append(text.data() + run, i - run);
    switch (text[i]) {
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      default: out += "\\r"; break;
    }
    run = i + 1;
  }
  out.append(text.data() + run, text.size() - run);
}

std::string quote_identifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

}  // namespace storewatch::db::pg
