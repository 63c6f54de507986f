#include "config/postgres_uri.h"

#include <fmt/format.h>

#include <algorithm>

#ifdef STOREWATCH_HAVE_POSTGRESQL
#include <libpq-fe.h>
#endif

namespace storewatch::config {

bool is_postgresql_uri(std::string_view database) {
  return database.starts_with("postgresql://") || database.starts_with("postgres://");
}

bool have_postgresql() {
#ifdef STOREWATCH_HAVE_POSTGRESQL
  return true;
#else
  return false;
#endif
}

std::string redact_postgresql_uri(std::string_view uri) {
  std::string out(uri);
  const auto scheme = out.find("://");
  if (scheme == std::string::npos) return out;
  const std::size_t start = scheme + 3;
  const std::size_t end = std::min(out.find_first_of("/?", start), out.size());
  const std::size_t at = out.rfind('@', end);
  if (at != std::string::npos && at >= start) {
    const std::size_t colon = out.find(':', start);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  // password=... among the parameters.
  for (std::size_t p = out.find("password=", start); p != std::string::npos;
       p = out.find("password=", p + 1)) {
    if (out[p - 1] != '?' && out[p - 1] != '&') continue;
    const std::size_t value = p + 9;
    const std::size_t stop = std::min(out.find('&', value), out.size());
    out.replace(value, stop - value, "***");
  }
  return out;
}

std::optional<std::string> postgresql_uri_problem(std::string_view uri) {
  if (!is_postgresql_uri(uri)) {
    return std::string("a PostgreSQL database is a URI that starts with postgresql://");
  }
#ifdef STOREWATCH_HAVE_POSTGRESQL
  char* error = nullptr;
  const std::string text(uri);
  PQconninfoOption* options = PQconninfoParse(text.c_str(), &error);
  if (options == nullptr) {
    std::string message = error != nullptr ? error : "out of memory";
    PQfreemem(error);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
      message.pop_back();
    }
    return fmt::format("\"{}\" is not a PostgreSQL connection URI libpq can read: {}",
                       redact_postgresql_uri(uri), message);
  }
  std::optional<std::string> problem;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string_view key = o->keyword;
    if (key == "password") {
      problem = fmt::format(
          "\"{}\" holds a password: put it in the file named by database_password_file (or "
          "libpq's PGPASSFILE) instead, never in the config",
          redact_postgresql_uri(uri));
      break;
    }
    if (key == "port") {
      // libpq reads the port only when it connects: a typo would surface
      // as a server out of reach, retried for ever.
      std::string_view ports = o->val;
      bool ok = !ports.empty();
      while (ok && !ports.empty()) {
        const std::string_view one = ports.substr(0, ports.find(','));
        ports.remove_prefix(std::min(ports.size(), one.size() + 1));
        int n = 0;
        for (char ch : one) ok = ok && ch >= '0' && ch <= '9' && (n = n * 10 + (ch - '0')) <= 65535;
        ok = ok && !one.empty() && n > 0;
      }
      if (!ok) {
        problem = fmt::format("\"{}\": the port \"{}\" is not a number from 1 to 65535",
                              redact_postgresql_uri(uri), o->val);
        break;
      }
    }
    if (key == "dbname" && std::string_view(o->val).empty()) {
      problem = fmt::format("\"{}\" names no database (…/storewatch at the end)",
                            redact_postgresql_uri(uri));
    }
  }
  PQconninfoFree(options);
  return problem;
#else
  return std::string(
      "this storewatch was built without HQ's PostgreSQL backend (no libpq: the build for the "
      "stores' ARM gateways); run HQ from the amd64 package, or give a SQLite path");
#endif
}

}  // namespace storewatch::config
