// `storewatch doctor` (cli/doctor.h), check by check, against real files,
// real SQLite databases (sound and damaged), real Unix and TCP sockets.
#include "cli/doctor.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstring>
#include <fstream>

#include "agent/store.h"
#include "probes/registry.h"
#include "tests/support/support.h"

namespace storewatch::cli {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

config::Loaded<config::Config> load(const std::filesystem::path& file) {
  config::LoadOptions options;
  options.probe_types = probes::schemas();
  return config::load(file, options);
}

TEST(BrokerAddress, TakesTheUriApart) {
  auto a = broker_address("tcp://10.0.0.5:1884");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "10.0.0.5");
  EXPECT_EQ(a->port, 1884);
  EXPECT_FALSE(a->tls);
  a = broker_address("ssl://mqtt.hq.example.com");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "mqtt.hq.example.com");
  EXPECT_EQ(a->port, 8883);
  EXPECT_TRUE(a->tls);
  a = broker_address("wss://[2001:db8::1]/mqtt");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "2001:db8::1");
  EXPECT_EQ(a->port, 443);
  EXPECT_TRUE(a->tls);
  a = broker_address("ws://hq:8080/mqtt");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->port, 8080);
  EXPECT_EQ(broker_address("tcp://h")->port, 1883);
  for (const char* bad :
       {"", "h:1", "ftp://h", "tcp://", "tcp://h:0", "tcp://h:70000", "tcp://h:x", "tcp://[::1"}) {
    EXPECT_FALSE(broker_address(bad)) << bad;
  }
}

TEST(DiskStatus, FailsWhenNearlyFullAndWarnsEarly) {
  constexpr std::uint64_t MiB = 1024 * 1024;
  constexpr std::uint64_t GiB = 1024 * MiB;
  EXPECT_EQ(disk_status(8 * GiB, 16 * GiB, 100000, 200000, 256 * MiB), CheckStatus::ok);
  EXPECT_EQ(disk_status(63 * MiB, 16 * GiB, 100000, 200000, 0), CheckStatus::fail);
  EXPECT_EQ(disk_status(8 * GiB, 16 * GiB, 999, 200000, 0), CheckStatus::fail);
  // No inode accounting (btrfs reports 0 files): not a failure.
  EXPECT_EQ(disk_status(8 * GiB, 16 * GiB, 0, 0, 0), CheckStatus::ok);
  EXPECT_EQ(disk_status(1 * GiB, 16 * GiB, 100000, 200000, 0), CheckStatus::warn);  // < 10 %
  EXPECT_EQ(disk_status(200 * MiB, 1 * GiB, 100000, 200000, 256 * MiB),
            CheckStatus::warn);  // the database may outgrow it
}

TEST(HumanBytes, Units) {
  EXPECT_EQ(human_bytes(3), "3 B");
  EXPECT_EQ(human_bytes(2048), "2.0 KB");
  EXPECT_EQ(human_bytes(5 * 1024 * 1024 + 512 * 1024), "5.5 MB");
}

DoctorCheck made(std::string name, CheckStatus status, std::string summary,
                 std::vector<std::string> fix = {}) {
  DoctorCheck c;
  c.name = std::move(name);
  c.status = status;
  c.summary = std::move(summary);
  c.fix = std::move(fix);
  return c;
}

TEST(DoctorReport, ExitCodeAndJson) {
  DoctorReport r;
  r.config_file = "/etc/storewatch/storewatch.toml";
  r.checks.push_back(made("config", CheckStatus::ok, "fine"));
  r.checks.push_back(made("clock", CheckStatus::skip, "no"));
  r.checks.push_back(made("disk", CheckStatus::warn, "low"));
  EXPECT_EQ(r.exit_code(), 0);  // warnings do not fail
  auto j = r.to_json();
  EXPECT_TRUE(j["ok"]);
  EXPECT_EQ(j["counts"]["warn"], 1);
  EXPECT_EQ(j["checks"][2]["check"], "disk");
  EXPECT_EQ(j["checks"][2]["status"], "warn");
  r.checks.push_back(
      made("daemon", CheckStatus::fail, "not running", {"sudo systemctl start storewatch"}));
  EXPECT_EQ(r.exit_code(), 1);
  EXPECT_FALSE(r.to_json()["ok"]);
  const std::string text = r.render(false);
  EXPECT_THAT(text, HasSubstr("FAIL  daemon  not running\n"));
  EXPECT_THAT(text, HasSubstr("fix: sudo systemctl start storewatch\n"));
  EXPECT_THAT(text, HasSubstr("1 problem, 1 warning"));
}

// --- config ------------------------------------------------------------------

TEST(DoctorConfig, MissingFileFails) {
  test::TempDir dir;
  auto c = check_config(dir / "nope.toml", load(dir / "nope.toml"));
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(c.summary, HasSubstr("does not exist"));
  EXPECT_FALSE(c.fix.empty());
}

TEST(DoctorConfig, ErrorsComeWithFileLineAndColumn) {
  test::TempDir dir;
  test::write_file(dir / "s.toml", "[store]\nid = \"s1\"\n\n[agent]\nlog_level = \"loud\"\n");
  auto c = check_config(dir / "s.toml", load(dir / "s.toml"));
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(joined(c.details), HasSubstr((dir / "s.toml").string() + ":5:"));
  EXPECT_THAT(joined(c.fix), HasSubstr("config check"));
}

TEST(DoctorConfig, AGoodConfigIsOk) {
  test::TempDir dir;
  test::write_file(dir / "s.toml", "[store]\nid = \"s1\"\n");
  auto c = check_config(dir / "s.toml", load(dir / "s.toml"));
  EXPECT_EQ(c.status, CheckStatus::ok) << joined(c.details);
  EXPECT_THAT(c.summary, HasSubstr("store s1"));
}

// --- database ----------------------------------------------------------------

class DoctorDatabase : public ::testing::Test {
 protected:
  DoctorDatabase() { cfg.agent.data_dir = dir.path(); }
  std::filesystem::path db() const { return dir / "storewatch.db"; }

  /// A real storewatch database with a table of filler rows; returns the
  /// filler table's root page.
  std::int64_t make_database() {
    {
      auto store = agent::Store::open(db(), agent::Store::Mode::read_write);
      EXPECT_TRUE(store) << store.error().message;
    }
    auto d = db::Database::open(db(), db::Database::Mode::read_write);
    EXPECT_TRUE(d);
    EXPECT_TRUE(d->exec("CREATE TABLE filler(x BLOB)"));
    EXPECT_TRUE(
        d->exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < "
                "300) INSERT INTO filler SELECT randomblob(900) FROM n"));
    auto s = d->prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'filler'");
    EXPECT_TRUE(s && *s->step());
    return s->int64(0);
  }

  test::TempDir dir;
  config::Config cfg;
};

TEST_F(DoctorDatabase, NoDatabaseYet) {
  auto c = check_database(cfg);
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(c.summary, HasSubstr("no database at"));
  EXPECT_THAT(joined(c.fix), HasSubstr("systemctl start storewatch"));
}

TEST_F(DoctorDatabase, ASoundDatabaseIsOk) {
  make_database();
  std::int64_t bytes = 0;
  auto c = check_database(cfg, &bytes);
  EXPECT_EQ(c.status, CheckStatus::ok) << c.summary << joined(c.details);
  EXPECT_THAT(c.summary, HasSubstr("quick_check ok"));
  EXPECT_EQ(c.data["quick_check"], "ok");
  EXPECT_GE(c.data["schema_version"].get<int>(), 1);
  EXPECT_GT(bytes, 300 * 900);
}

TEST_F(DoctorDatabase, NotADatabaseFails) {
  test::write_file(db(), std::string(8192, 'x'));
  auto c = check_database(cfg);
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(c.summary, HasSubstr("corrupt"));
  EXPECT_THAT(joined(c.fix), HasSubstr("mv " + dir.path().string() + "/storewatch.db* "));
}

TEST_F(DoctorDatabase, ADamagedPageFailsQuickCheck) {
  const std::int64_t root = make_database();
  {
    // Overwrite the filler table's root page (4096-byte pages) with junk.
    std::fstream f(db(), std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f);
    f.seekp((root - 1) * 4096);
    const std::string junk(2000, '\xA5');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto c = check_database(cfg);
  EXPECT_EQ(c.status, CheckStatus::fail) << c.summary;
  EXPECT_THAT(c.summary, HasSubstr("damaged"));
  EXPECT_FALSE(c.details.empty());
  EXPECT_THAT(joined(c.fix), HasSubstr(".recover"));
}

TEST_F(DoctorDatabase, NearTheSizeCapWarns) {
  make_database();
  cfg.agent.max_db_bytes = 200 * 1024;  // the database holds ~270 KB
  auto c = check_database(cfg);
  EXPECT_EQ(c.status, CheckStatus::warn) << c.summary;
  EXPECT_THAT(joined(c.details), HasSubstr("max_db_size"));
}

TEST_F(DoctorDatabase, ChangesTheDatabaseRefusedFailWithWhatTheyWere) {
  make_database();
  {
    auto store = agent::Store::open(db(), agent::Store::Mode::read_write);
    ASSERT_TRUE(store);
    agent::ProbeStateRow row;
    row.probe = "lane-07";
    ASSERT_TRUE(store->dead_letter(row, "probe state of lane-07", "UNIQUE constraint failed"));
  }
  auto c = check_database(cfg);
  EXPECT_EQ(c.status, CheckStatus::fail) << c.summary;
  EXPECT_THAT(c.summary, HasSubstr("1 change refused by the database, kept in dead_letters"));
  EXPECT_THAT(joined(c.details), HasSubstr("probe state of lane-07: UNIQUE constraint failed"));
  EXPECT_THAT(joined(c.fix), HasSubstr("FROM dead_letters"));
  EXPECT_EQ(c.data["dead_letters"], 1);
}

// --- daemon ------------------------------------------------------------------

class DoctorDaemon : public ::testing::Test {
 protected:
  DoctorDaemon() { cfg.agent.control_socket = dir / "control.sock"; }
  test::TempDir dir;
  config::Config cfg;
};

TEST_F(DoctorDaemon, NoSocketMeansNotRunning) {
  auto c = check_daemon(cfg, 500ms);
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(c.summary, HasSubstr("not running"));
  EXPECT_THAT(joined(c.fix), HasSubstr("systemctl start storewatch"));
  EXPECT_FALSE(c.data["running"]);
}

TEST_F(DoctorDaemon, ALeftOverSocketIsNamed) {
  // A socket file whose listener is gone, as a killed daemon leaves it.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, cfg.agent.control_socket.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);
  auto c = check_daemon(cfg, 500ms);
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(c.summary, HasSubstr("left over"));
  EXPECT_THAT(joined(c.fix), HasSubstr("systemctl restart storewatch"));
}

TEST_F(DoctorDaemon, AListenerThatNeverAnswersTimesOut) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, cfg.agent.control_socket.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  const auto t0 = std::chrono::steady_clock::now();
  auto c = check_daemon(cfg, 300ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  ::close(fd);
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(c.summary, HasSubstr("does not answer"));
}

TEST_F(DoctorDaemon, AFileInItsPlace) {
  test::write_file(cfg.agent.control_socket, "x");
  auto c = check_daemon(cfg, 500ms);
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(c.summary, HasSubstr("not a socket"));
}

// --- broker (direct) ---------------------------------------------------------

TEST(DoctorBroker, ReachableWithoutTheDaemon) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(
      io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  config::Config cfg;
  cfg.sync.broker = fmt::format("tcp://127.0.0.1:{}", acceptor.local_endpoint().port());
  auto c = check_broker(cfg, nullptr, 2s);
  EXPECT_EQ(c.status, CheckStatus::ok) << c.summary;
  EXPECT_EQ(c.data["source"], "direct");
  EXPECT_TRUE(c.data["reachable"]);
  EXPECT_THAT(c.summary, HasSubstr("answers"));
}

TEST(DoctorBroker, NothingListening) {
  config::Config cfg;
  cfg.sync.broker = fmt::format("tcp://127.0.0.1:{}", test::free_port());
  auto c = check_broker(cfg, nullptr, 2s);
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(c.summary, HasSubstr("cannot connect"));
  EXPECT_THAT(joined(c.fix), HasSubstr("nc -vz 127.0.0.1"));
}

TEST(DoctorBroker, AnUnknownNameSaysSo) {
  config::Config cfg;
  cfg.sync.broker = "tcp://broker.no-such-store.invalid:1883";
  auto c = check_broker(cfg, nullptr, 3s);
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(joined(c.fix), HasSubstr("getent hosts broker.no-such-store.invalid"));
}

TEST(DoctorBroker, TlsToAPlainPortFailsTheHandshake) {
  // Something accepts and closes at once: no TLS server there.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(
      io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  boost::asio::ip::tcp::socket peer(io);
  acceptor.async_accept(peer, [&](const boost::system::error_code&) { peer.close(); });
  std::thread t([&] { io.run_for(5s); });
  config::Config cfg;
  cfg.sync.broker = fmt::format("ssl://127.0.0.1:{}", acceptor.local_endpoint().port());
  auto c = check_broker(cfg, nullptr, 2s);
  t.join();
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(c.summary, HasSubstr("TLS"));
  EXPECT_THAT(joined(c.fix), HasSubstr("openssl s_client -connect 127.0.0.1:"));
}

TEST(DoctorBroker, FromTheDaemonsSyncStatus) {
  config::Config cfg;
  cfg.sync.broker = fmt::format("tcp://127.0.0.1:{}", test::free_port());
  nlohmann::json live{{"sync",
                       {{"connected", true},
                        {"since", "2026-11-27T10:00:00.000Z"},
                        {"queued", 0},
                        {"hq_acked_seq", 42},
                        {"oldest_queued_age_s", nullptr}}}};
  auto c = check_broker(cfg, &live, 1s);
  EXPECT_EQ(c.status, CheckStatus::ok);
  EXPECT_EQ(c.data["source"], "daemon");
  EXPECT_THAT(c.summary, HasSubstr("HQ acked seq 42"));

  live["sync"]["queued"] = 500;
  live["sync"]["oldest_queued_age_s"] = 3600.0;
  c = check_broker(cfg, &live, 1s);
  EXPECT_EQ(c.status, CheckStatus::warn);
  EXPECT_THAT(joined(c.details), HasSubstr("60 min old"));

  live["sync"] = {{"connected", false}, {"queued", 7}, {"last_error", "connection refused"}};
  c = check_broker(cfg, &live, 1s);
  EXPECT_EQ(c.status, CheckStatus::fail);
  EXPECT_THAT(c.summary, HasSubstr("offline"));
  EXPECT_THAT(c.summary, HasSubstr("connection refused"));
  // The direct check adds where it breaks from here.
  EXPECT_THAT(joined(c.details), HasSubstr("from here: cannot connect"));
  EXPECT_THAT(joined(c.fix), HasSubstr("nc -vz"));
}

// --- clock and disk ----------------------------------------------------------

TEST(DoctorClock, WithoutAClockProbeItSaysWhyNot) {
  config::Config cfg;
  auto c = check_clock(cfg);
  const bool synced = SystemClock().wall_synced();
  EXPECT_EQ(c.status, synced ? CheckStatus::skip : CheckStatus::warn);
  EXPECT_THAT(c.summary, HasSubstr("not checked"));
  EXPECT_THAT(joined(c.details), HasSubstr("check = \"clock\""));
  EXPECT_EQ(c.data["kernel_synchronised"], synced);
}

TEST(DoctorDisk, ReportsTheStateDirectory) {
  test::TempDir dir;
  config::Config cfg;
  cfg.agent.data_dir = dir / "not" / "yet";  // before the first start: its parent
  auto c = check_disk(cfg, 0);
  EXPECT_EQ(c.data["path"], dir.path().string());
  EXPECT_GT(c.data["total_bytes"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(c.status, disk_status(c.data["free_bytes"], c.data["total_bytes"],
                                  c.data["free_inodes"], 0, c.data["db_may_grow_bytes"]));
}

}  // namespace
}  // namespace storewatch::cli
