#pragma once
/// \file
/// HQ's tests over both backends of its database (hq/hq_database.h): a
/// SQLite file, or a fresh database in a throwaway PostgreSQL cluster
/// (pg_cluster.h). A test parameterised by Backend runs once per backend
/// this build has.

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "tests/support/pg_cluster.h"

namespace storewatch::test {

enum class Backend { sqlite, postgresql };

/// SQLite, and PostgreSQL where this build has the backend.
std::vector<Backend> hq_backends();

/// "SQLite" or "PostgreSQL", for the tests' names.
std::string backend_name(const testing::TestParamInfo<Backend>& info);

/// One test's HQ database on one backend.
class HqTestDatabase {
 public:
  /// SQLite: the file `sqlite_file`. PostgreSQL: starts a cluster (unless
  /// skip_reason() says it cannot) and creates database `hq` in it.
  HqTestDatabase(Backend backend, std::filesystem::path sqlite_file);

  /// Why this backend cannot run on this machine, or empty.
  const std::string& skip_reason() const { return skip_; }

  /// Points `config`'s [hq] database at it.
  void configure(config::HqConfig& config) const;

  /// The first column of the first row of `sql` (a SELECT count(*) ...),
  /// read with the engine's own client.
  std::int64_t count(const std::string& sql);

  /// Runs `sql` (a statement the test uses to damage or change the
  /// database) with the engine's own client.
  void exec(const std::string& sql);

  Backend backend() const { return backend_; }
  PgCluster* cluster() { return cluster_.get(); }

 private:
  Backend backend_;
  std::filesystem::path file_;
  std::unique_ptr<PgCluster> cluster_;
  std::string uri_;
  std::string skip_;
};

}  // namespace storewatch::test
