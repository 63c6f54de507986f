#pragma once
/// \file
/// `[hq] database` as a PostgreSQL connection URI (docs/HQ.md, "Scaling
/// out"): telling it from a SQLite path, checking it, and writing it without
/// secrets for logs and messages.

#include <optional>
#include <string>
#include <string_view>

namespace storewatch::config {

/// Whether `database` names a PostgreSQL database (postgresql:// or
/// postgres://) rather than a SQLite file.
bool is_postgresql_uri(std::string_view database);

/// Why `uri` is not a usable connection URI for HQ — libpq cannot parse it,
/// it holds a password (which belongs in `database_password_file`), or this
/// build has no PostgreSQL backend — or nullopt.
std::optional<std::string> postgresql_uri_problem(std::string_view uri);

/// `uri` with any password replaced by "***" (for logs).
std::string redact_postgresql_uri(std::string_view uri);

/// Whether this build has HQ's PostgreSQL backend (libpq).
bool have_postgresql();

}  // namespace storewatch::config
