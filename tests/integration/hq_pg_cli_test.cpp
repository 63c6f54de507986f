// HQ on PostgreSQL from the command line, as an operator meets it: each bad
// database setting or state is one line naming the problem, exit 2 for the
// config and 1 for the rest; `hq run` refuses at once what waiting would
// not fix. Real binary, real throwaway cluster (tests/support/pg_cluster.h).
#include <signal.h>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/support/pg_cluster.h"
#include "tests/support/support.h"

#ifdef STOREWATCH_HAVE_POSTGRESQL

namespace storewatch::test {
namespace {

using testing::HasSubstr;
using testing::Not;
using namespace std::chrono_literals;

class HqPostgresCli : public testing::Test {
 protected:
  void SetUp() override {
    if (auto why = PgCluster::unavailable(); !why.empty()) GTEST_SKIP() << why;
    cluster_ = std::make_unique<PgCluster>();
  }

  /// hq.toml with `database` (and more lines), returned as its path.
  std::filesystem::path config(const std::string& database, const std::string& more = "") {
    const auto path = dir_ / "hq.toml";
    write_file(path, fmt::format("[hq]\ndatabase = \"{}\"\nbroker = \"{}\"\n{}", database,
                                 broker_.uri(), more));
    return path;
  }

  RunResult hq(const std::filesystem::path& cfg, std::vector<std::string> args) {
    std::vector<std::string> full{"hq", "--config", cfg.string()};
    full.insert(full.end(), args.begin(), args.end());
    return run(storewatch_command(full));
  }

  static void expect_one_line(const RunResult& r) {
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }

  TempDir dir_;
  Broker broker_;
  std::unique_ptr<PgCluster> cluster_;
};

TEST_F(HqPostgresCli, AMalformedUriIsAConfigErrorAndAPasswordInItIsNeverShown) {
  for (const std::string& bad :
       {std::string("postgresql://[::1/hq"), std::string("postgresql://db:port/hq"),
        std::string("postgresql://hq:s3cret@127.0.0.1/hq")}) {
    const auto cfg = config(bad);
    for (const auto& args : {std::vector<std::string>{"config", "check"},
                             std::vector<std::string>{"stores"}, std::vector<std::string>{"run"}}) {
      auto r = hq(cfg, args);
      EXPECT_EQ(r.exit_code, 2) << bad << " " << args[0] << ": " << r.err;
      EXPECT_THAT(r.err, HasSubstr("hq.toml:2:")) << r.err;
      EXPECT_THAT(r.err + r.out, Not(HasSubstr("s3cret")));
    }
  }
}

TEST_F(HqPostgresCli, EachBadStateOfTheDatabaseIsOneLineAndExitOne) {
  // Nothing listens there.
  auto r =
      hq(config(fmt::format("postgresql://storewatch@127.0.0.1:{}/hq", free_port())), {"stores"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("cannot connect to PostgreSQL"));
  expect_one_line(r);

  // A database HQ has never run on.
  const std::string uri = cluster_->create_database("hq");
  r = hq(config(uri), {"stores"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("has `storewatch hq run` ever run"));
  expect_one_line(r);

  // Someone else's database: refused by the views and by `hq run`, at once.
  const std::string theirs = cluster_->create_database("crm");
  cluster_->sql("crm", "CREATE TABLE customers (id int)");
  for (const auto& args : {std::vector<std::string>{"stores"}, std::vector<std::string>{"run"}}) {
    r = hq(config(theirs), args);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("is not storewatch HQ's"));
    EXPECT_THAT(r.err, HasSubstr("customers"));
  }

  // A refused password: `hq run` gives up at once (waiting would not help).
  cluster_->sql("postgres", "ALTER ROLE storewatch PASSWORD 'right-password'");
  write_file(dir_ / "db.password", "wrong-password\n");
  const auto cfg = config(cluster_->tcp_uri("hq"), fmt::format("database_password_file = \"{}\"\n",
                                                               (dir_ / "db.password").string()));
  for (const auto& args : {std::vector<std::string>{"stores"}, std::vector<std::string>{"run"}}) {
    r = hq(cfg, args);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("password authentication failed"));
    EXPECT_THAT(r.err, Not(HasSubstr("wrong-password")));
  }
  r = hq(cfg, {"stores"});
  expect_one_line(r);
}

TEST_F(HqPostgresCli, TheViewsShowTheWorkersHealth) {
  const std::string uri = cluster_->create_database("hq");
  const auto cfg = config(uri, "client_id = \"hq-cli-1\"\n");
  auto check = hq(cfg, {"config", "check"});
  ASSERT_EQ(check.exit_code, 0) << check.err;
  EXPECT_THAT(check.out, HasSubstr("database " + uri));
  Child worker(storewatch_command({"hq", "--config", cfg.string(), "run"}), dir_ / "logs");
  ASSERT_TRUE(
      wait_until([&] { return worker.err().find("hq: subscribed to") != std::string::npos; }, 20s))
      << worker.err();
  auto workers = hq(cfg, {"workers", "--json"});
  ASSERT_EQ(workers.exit_code, 0) << workers.err;
  auto list = nlohmann::json::parse(workers.out);
  ASSERT_EQ(list.size(), 1u) << workers.out;
  EXPECT_EQ(list[0]["worker"], "hq-cli-1");
  EXPECT_EQ(list[0]["silent"], false);
  EXPECT_EQ(list[0]["pid"], worker.pid());

  auto stores = hq(cfg, {"stores"});
  ASSERT_EQ(stores.exit_code, 0) << stores.err;
  EXPECT_THAT(stores.out, HasSubstr("HQ: 1 worker(s) — hq-cli-1 on "));
  EXPECT_THAT(stores.out, HasSubstr("No stores have reported yet."));
  EXPECT_EQ(worker.stop(SIGTERM), 0) << worker.err();
}

}  // namespace
}  // namespace storewatch::test

#endif  // STOREWATCH_HAVE_POSTGRESQL
