#pragma once
/// \file
/// A throwaway PostgreSQL cluster for the tests of HQ's PostgreSQL backend:
/// `initdb` and `pg_ctl` of Debian's postgresql package, in a temporary
/// directory (in /dev/shm where there is one), as user nobody when the tests
/// run as root (PostgreSQL refuses to run as root). Each cluster is a copy of
/// one initdb'd template. It listens on a Unix socket in its directory and on
/// 127.0.0.1 at a free port; the superuser `storewatch` logs in over the
/// socket without a password, over TCP with scram-sha-256 only.

#include <filesystem>
#include <string>

#include "tests/support/support.h"

namespace storewatch::test {

class PgCluster {
 public:
  /// Why no cluster can be started on this machine (no initdb or pg_ctl),
  /// or empty. Tests skip with it; nothing else makes them skip.
  static std::string unavailable();

  /// A fresh cluster (a copy of an initdb'd template) started; throws
  /// std::runtime_error with the log on failure.
  PgCluster();
  ~PgCluster();  ///< stops it (immediate) and removes everything
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  /// Creates an empty database `name` and returns its URI (over the socket).
  std::string create_database(const std::string& name);
  /// The URI of database `name` over the Unix socket.
  std::string uri(const std::string& name) const;
  /// The URI of database `name` over TCP (127.0.0.1:port()), where a
  /// password is asked for.
  std::string tcp_uri(const std::string& name) const;
  int port() const { return port_; }

  /// Runs `sql` in database `name` with psql; returns its unaligned,
  /// tuples-only output without the trailing newline. Throws on failure.
  std::string sql(const std::string& name, const std::string& sql);

  void start();
  /// pg_ctl stop with `mode` (fast, immediate).
  void stop(const std::string& mode = "fast");
  /// pg_ctl restart -m fast: every connection is cut.
  void restart();
  bool running() const { return running_; }
  std::string log() const;

 private:
  std::vector<std::string> as_owner(std::vector<std::string> argv) const;
  /// The initdb'd template clusters are copies of: made by the first
  /// caller on this machine (under a lock), kept for the next.
  std::filesystem::path make_template() const;
  std::filesystem::path dir_;  // owned by nobody when root
  std::filesystem::path bin_;
  int port_ = 0;
  bool running_ = false;
};

}  // namespace storewatch::test
