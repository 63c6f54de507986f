// The escpos probe against the simulator's ESC/POS printer: every fault, a
// hung printer, and the one-connection-at-a-time rule of network printers.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <filesystem>

#include "tests/integration/probe_harness.h"
#include "tests/support/store_lab.h"

namespace storewatch::test {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class EscposProbeLab : public ::testing::Test {
 protected:
  int port = free_port();
  StoreLab lab{fmt::format(R"([[device]]
name = "printer"
kind = "escpos"
host = "127.0.0.1"
port = {}
)",
                           port)};
  std::string probe =
      fmt::format("type = \"escpos\"\nhost = \"127.0.0.1\"\nport = {}\ntimeout = \"2s\"", port);

  int stat(const char* key) const { return lab.stats("printer").value(key, -1); }

  /// The printer has seen every connection of the probe closed.
  bool printer_idle() const {
    return wait_until([&] { return stat("open_connections") == 0; }, 2s);
  }
};

TEST_F(EscposProbeLab, HealthyPrinterIsOkAndTheConnectionIsClosedAtOnce) {
  auto r = run_probe(probe);
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_THAT(r.message, HasSubstr("ready"));
  EXPECT_EQ(r.metrics.at("paper_end"), 0);
  EXPECT_EQ(r.metrics.at("paper_near_end"), 0);
  EXPECT_EQ(r.metrics.at("cover_open"), 0);
  EXPECT_EQ(r.metrics.at("offline"), 0);
  EXPECT_GT(r.metrics.at("connect_ms"), 0);
  EXPECT_TRUE(printer_idle());
  EXPECT_EQ(stat("requests"), 4);
  EXPECT_EQ(stat("connections"), 1);
  EXPECT_EQ(stat("max_open"), 1);
}

TEST_F(EscposProbeLab, EachPrinterFaultGivesItsStatusAndMessage) {
  struct Case {
    const char* fault;
    const char* status;
    const char* message;
    const char* metric;
  };
  const Case cases[] = {
      {"near_end", "warn", "paper near end", "paper_near_end"},
      {"paper_end", "fail", "paper end; offline", "paper_end"},
      {"cover_open", "fail", "cover open; offline", "cover_open"},
      {"offline", "fail", "offline", "offline"},
      {"cutter_error", "fail", "autocutter error; offline", "autocutter_error"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.fault);
    lab.fault("printer", c.fault);
    auto r = run_probe(probe);
    EXPECT_EQ(status_of(r), c.status) << r.message;
    EXPECT_EQ(r.message, c.message);
    EXPECT_EQ(r.metrics.at(c.metric), 1);
    EXPECT_TRUE(printer_idle());
  }
  EXPECT_EQ(stat("max_open"), 1);
}

TEST_F(EscposProbeLab, GarbageIsUnknownAndNamesTheByte) {
  lab.fault("printer", "garbage");
  auto r = run_probe(probe);
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, HasSubstr("garbage reply"));
  EXPECT_THAT(r.message, HasSubstr("DLE EOT 1 was answered with 0xFF"));
  EXPECT_TRUE(printer_idle());
  // It stopped at the first bad byte.
  EXPECT_EQ(stat("requests"), 1);
}

TEST_F(EscposProbeLab, ShortReplyIsUnknownAndSaysThePrinterClosed) {
  lab.fault("printer", "short");
  auto r = run_probe(probe);
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, HasSubstr("short reply: 2 of 4 status bytes"));
  EXPECT_THAT(r.message, HasSubstr("closed the connection"));
}

TEST_F(EscposProbeLab, RefusedWhenThePrinterIsDown) {
  lab.fault("printer", "down");
  auto r = run_probe(probe);
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, HasSubstr(fmt::format("connect 127.0.0.1:{}", port)));
  EXPECT_THAT(r.message, HasSubstr("refused"));
}

TEST_F(EscposProbeLab, NameThatDoesNotResolveFailsSayingSo) {
  auto r = run_probe("type = \"escpos\"\nhost = \"no-such-printer.invalid\"\ntimeout = \"5s\"");
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, HasSubstr("resolve no-such-printer.invalid"));
}

TEST_F(EscposProbeLab, HungPrinterTimesOutAndTheSocketIsFreed) {
  lab.fault("printer", "hang");
  const int fds_before = open_fds();
  const auto started = std::chrono::steady_clock::now();
  auto r = run_probe(
      fmt::format("type = \"escpos\"\nhost = \"127.0.0.1\"\nport = {}\ntimeout = \"500ms\"", port));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, StartsWith("timed out after 500ms"));
  EXPECT_GE(took, 500ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(open_fds(), fds_before);
  // The printer sees the connection go.
  EXPECT_TRUE(printer_idle());
}

TEST_F(EscposProbeLab, SlowPrinterIsOkWithinTheTimeout) {
  lab.fault("printer", "slow");
  auto r = run_probe(
      fmt::format("type = \"escpos\"\nhost = \"127.0.0.1\"\nport = {}\ntimeout = \"5s\"", port));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_GE(r.latency, 1500ms);
}

// Network printers serve one connection at a time: a probe that held its
// socket would block the next receipt (and the next probe).
TEST_F(EscposProbeLab, NeverHoldsMoreThanOneConnectionToABusyPrinter) {
  lab.fault("printer", "busy");
  for (int i = 0; i < 10; ++i) {
    auto r = run_probe(probe);
    ASSERT_EQ(status_of(r), "ok") << i << ": " << r.message;
  }
  EXPECT_TRUE(printer_idle());
  EXPECT_EQ(stat("connections"), 10);
  EXPECT_EQ(stat("max_open"), 1);
  EXPECT_EQ(stat("requests"), 40);
}

TEST_F(EscposProbeLab, APrinterBusyWithAReceiptTimesTheProbeOutAndServesItAfter) {
  lab.fault("printer", "busy");
  // The POS holds the printer's one connection, in the middle of a receipt.
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket pos(io);
  pos.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<std::uint16_t>(port)});
  const std::uint8_t dle_eot_1[] = {0x10, 0x04, 0x01};
  boost::asio::write(pos, boost::asio::buffer(dle_eot_1));
  std::uint8_t status = 0;
  boost::asio::read(pos, boost::asio::buffer(&status, 1));
  ASSERT_EQ(status, 0x12);

  const int fds_before = open_fds();
  auto r = run_probe(
      fmt::format("type = \"escpos\"\nhost = \"127.0.0.1\"\nport = {}\ntimeout = \"500ms\"", port));
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, StartsWith("timed out"));
  EXPECT_EQ(open_fds(), fds_before);
  EXPECT_EQ(stat("max_open"), 2);  // the POS's connection and the probe's, waiting

  // Like a real printer, the simulator looks at the waiting connection only
  // once the POS is done, and finds it closed: a socket the probe had left
  // open would be served and stay open.
  pos.close();
  EXPECT_TRUE(printer_idle());
  auto after = run_probe(probe);
  EXPECT_EQ(status_of(after), "ok") << after.message;
}

TEST_F(EscposProbeLab, ProbeRunPrintsTheDesignShape) {
  TempDir dir;
  auto r = run_probe_cli(dir, probe);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(r.result.is_object()) << r.err;
  EXPECT_EQ(r.result["name"], "p");
  EXPECT_EQ(r.result["type"], "escpos");
  EXPECT_EQ(r.result["status"], "ok");
  EXPECT_TRUE(r.result["latency_ms"].is_number());
  EXPECT_EQ(r.result["metrics"]["paper_end"], 0);

  lab.fault("printer", "paper_end");
  auto end = run_probe_cli(dir, probe);
  EXPECT_EQ(end.exit_code, 1);
  EXPECT_EQ(end.result["status"], "fail");
  EXPECT_EQ(end.result["message"], "paper end; offline");
  EXPECT_EQ(end.result["metrics"]["paper_end"], 1);
  EXPECT_TRUE(printer_idle());
}

TEST(EscposProbeConfig, PortDefaultsTo9100AndHostIsRequired) {
  auto c = probe_config("type = \"escpos\"\nhost = \"10.20.1.31\"");
  EXPECT_EQ(c.integer("port"), 9100);
  EXPECT_THROW(probe_config("type = \"escpos\""), std::runtime_error);
}

}  // namespace
}  // namespace storewatch::test
