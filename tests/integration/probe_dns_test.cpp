// The dns probe against the simulator's authoritative DNS server: answers,
// expect, NXDOMAIN, SERVFAIL, REFUSED, empty answers, truncation (TCP),
// garbage and a server that never answers.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/integration/probe_harness.h"
#include "tests/support/store_lab.h"

namespace storewatch::test {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class DnsProbeLab : public ::testing::Test {
 protected:
  int port = free_port();
  StoreLab lab{fmt::format(R"([[device]]
name = "store-dns"
kind = "dns"
host = "127.0.0.1"
port = {}
records = {{ "printer-01.store.lan" = "10.20.1.31", "lane.store.lan" = "CNAME pos.store.lan", "notes.store.lan" = "TXT only text here", "11.1.20.10.in-addr.arpa" = "PTR pos.store.lan" }}
)",
                           port)};

  std::string probe(const std::string& query, const std::string& extra = "") const {
    return fmt::format(
        "type = \"dns\"\nquery = \"{}\"\nserver = \"127.0.0.1:{}\"\ntimeout = \"2s\"\n{}", query,
        port, extra);
  }
};

TEST_F(DnsProbeLab, ResolvesARecordFromTheLabFile) {
  auto r = run_probe(probe("printer-01.store.lan"));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_THAT(r.message, HasSubstr("printer-01.store.lan A: 10.20.1.31"));
  EXPECT_EQ(r.metrics.at("answers"), 1);
  EXPECT_EQ(r.metrics.at("tcp"), 0);
  EXPECT_GE(r.metrics.at("rtt_ms"), 0);
  EXPECT_EQ(lab.stats("store-dns").value("connections", 0), 1);
}

TEST_F(DnsProbeLab, ExpectMatchesOrFailsNamingWhatCameBack) {
  EXPECT_EQ(status_of(run_probe(probe("pos.store.lan", "expect = \"10.20.1.11\""))), "ok");
  auto r = run_probe(probe("pos.store.lan", "expect = \"10.20.1.99\""));
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_EQ(r.message, "pos.store.lan A: expected 10.20.1.99, got 10.20.1.11");
  // Addresses compare as addresses.
  auto v6 =
      run_probe(probe("gateway.store.lan", "record_type = \"AAAA\"\nexpect = \"fd00:20:0::1\""));
  EXPECT_EQ(status_of(v6), "ok") << v6.message;
  EXPECT_THAT(v6.message, HasSubstr("fd00:20::1"));
}

TEST_F(DnsProbeLab, FollowsCnamesAndReadsOtherRecordTypes) {
  auto cname = run_probe(probe("lane.store.lan", "expect = \"10.20.1.11\""));
  EXPECT_EQ(status_of(cname), "ok") << cname.message;
  EXPECT_THAT(cname.message, HasSubstr("via CNAME pos.store.lan"));
  auto just_cname = run_probe(probe("lane.store.lan", "record_type = \"CNAME\""));
  EXPECT_EQ(status_of(just_cname), "ok") << just_cname.message;
  EXPECT_THAT(just_cname.message, HasSubstr(": pos.store.lan"));
  auto mx = run_probe(probe("store.lan", "record_type = \"MX\"\nexpect = \"10 mail.store.lan\""));
  EXPECT_EQ(status_of(mx), "ok") << mx.message;
  auto txt = run_probe(probe("notes.store.lan", "record_type = \"TXT\""));
  EXPECT_EQ(status_of(txt), "ok") << txt.message;
  EXPECT_THAT(txt.message, HasSubstr("only text here"));
  auto ns = run_probe(probe("store.lan", "record_type = \"NS\""));
  EXPECT_THAT(ns.message, HasSubstr("ns.store.lan"));
  auto ptr = run_probe(probe("10.20.1.11", "record_type = \"PTR\"\nexpect = \"pos.store.lan.\""));
  EXPECT_EQ(status_of(ptr), "ok") << ptr.message;
  EXPECT_THAT(ptr.message, HasSubstr("11.1.20.10.in-addr.arpa PTR"));
}

TEST_F(DnsProbeLab, NxdomainIsAFailSayingSo) {
  auto r = run_probe(probe("no-such-lane.store.lan"));
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, StartsWith("NXDOMAIN"));
  EXPECT_THAT(r.message, HasSubstr("no-such-lane.store.lan"));
  EXPECT_EQ(r.metrics.at("answers"), 0);
}

TEST_F(DnsProbeLab, EmptyAnswerIsAFailDistinctFromNxdomain) {
  auto r = run_probe(probe("notes.store.lan"));  // has TXT, no A
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, StartsWith("no A record for notes.store.lan"));
  EXPECT_THAT(r.message, HasSubstr("NOERROR, empty answer"));
}

TEST_F(DnsProbeLab, ServfailAndRefusedAreDistinct) {
  lab.fault("store-dns", "servfail");
  auto servfail = run_probe(probe("pos.store.lan"));
  EXPECT_EQ(status_of(servfail), "fail");
  EXPECT_THAT(servfail.message, StartsWith("SERVFAIL"));
  lab.fault("store-dns", "refused");
  auto refused = run_probe(probe("pos.store.lan"));
  EXPECT_EQ(status_of(refused), "fail");
  EXPECT_THAT(refused.message, StartsWith("REFUSED"));
}

TEST_F(DnsProbeLab, TruncatedUdpReplyIsAskedAgainOverTcp) {
  lab.fault("store-dns", "truncated");
  auto r = run_probe(probe("pos.store.lan", "expect = \"10.20.1.11\""));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_THAT(r.message, HasSubstr("over TCP"));
  EXPECT_EQ(r.metrics.at("tcp"), 1);
  EXPECT_EQ(lab.stats("store-dns").value("tcp_queries", 0), 1);
  EXPECT_TRUE(
      wait_until([&] { return lab.stats("store-dns").value("open_connections", -1) == 0; }, 2s));
}

TEST_F(DnsProbeLab, AnAnswerTooBigForUdpComesOverTcp) {
  auto r = run_probe(probe("many.store.lan", "expect = \"10.20.9.40\""));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_EQ(r.metrics.at("answers"), 40);
  EXPECT_EQ(r.metrics.at("tcp"), 1);
}

TEST_F(DnsProbeLab, GarbageReplyIsUnknown) {
  lab.fault("store-dns", "garbage");
  auto r = run_probe(probe("pos.store.lan"));
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, StartsWith(fmt::format("malformed reply from 127.0.0.1:{}", port)));
  EXPECT_THAT(r.message, HasSubstr("compression loop"));
}

TEST_F(DnsProbeLab, SilentServerTimesOutAndTheSocketIsFreed) {
  lab.fault("store-dns", "hang");
  const int fds_before = open_fds();
  const auto started = std::chrono::steady_clock::now();
  auto r = run_probe(fmt::format(
      "type = \"dns\"\nquery = \"pos.store.lan\"\nserver = \"127.0.0.1:{}\"\ntimeout = \"500ms\"",
      port));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, StartsWith("timed out after 500ms"));
  EXPECT_GE(took, 500ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(open_fds(), fds_before);
  EXPECT_GE(lab.stats("store-dns").value("connections", 0), 1);
}

TEST_F(DnsProbeLab, ServerThatIsDownIsRefusedAtOnce) {
  lab.fault("store-dns", "down");
  const auto started = std::chrono::steady_clock::now();
  auto r = run_probe(probe("pos.store.lan"));
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, HasSubstr("connection refused"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1500ms);
}

TEST_F(DnsProbeLab, ProbeRunPrintsTheDesignShape) {
  TempDir dir;
  auto r = run_probe_cli(dir, probe("pos.store.lan", "expect = \"10.20.1.11\""));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(r.result.is_object()) << r.err;
  EXPECT_EQ(r.result["name"], "p");
  EXPECT_EQ(r.result["type"], "dns");
  EXPECT_EQ(r.result["status"], "ok");
  EXPECT_TRUE(r.result["latency_ms"].is_number());
  EXPECT_EQ(r.result["metrics"]["answers"], 1);
  EXPECT_TRUE(r.result["metrics"]["rtt_ms"].is_number());

  auto nx = run_probe_cli(dir, probe("gone.store.lan"));
  EXPECT_EQ(nx.exit_code, 1);
  EXPECT_EQ(nx.result["status"], "fail");
  EXPECT_THAT(nx.result["message"].get<std::string>(), StartsWith("NXDOMAIN"));
}

TEST(DnsProbeIpv6, AsksAServerOnAnIpv6AddressWithAPort) {
  const int port = free_port();
  StoreLab lab{fmt::format(
      "[[device]]\nname = \"dns6\"\nkind = \"dns\"\nhost = \"::1\"\nport = {}\n", port)};
  auto r = run_probe(
      fmt::format("type = \"dns\"\nquery = \"gateway.store.lan\"\nrecord_type = \"AAAA\"\n"
                  "server = \"[::1]:{}\"\nexpect = \"fd00:20::1\"",
                  port));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_THAT(r.message, HasSubstr(fmt::format("[::1]:{}", port)));
}

TEST(DnsProbeConfig, DefaultsAndBadValuesAreConfigErrors) {
  auto c = probe_config("type = \"dns\"\nquery = \"pos.store.lan\"");
  EXPECT_EQ(c.str("record_type"), "A");
  EXPECT_THROW(probe_config("type = \"dns\""), std::runtime_error);
  try {
    probe_config("type = \"dns\"\nquery = \"pos.store.lan\"\nserver = \"dns.store.lan\"");
    ADD_FAILURE() << "a server name was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not an IP address"));
  }
  try {
    probe_config("type = \"dns\"\nquery = \"a..b\"");
    ADD_FAILURE() << "an empty label was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("empty label"));
  }
  EXPECT_THROW(probe_config("type = \"dns\"\nquery = \"x\"\nrecord_type = \"AXFR\""),
               std::runtime_error);
}

}  // namespace
}  // namespace storewatch::test
