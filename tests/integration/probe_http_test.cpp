// The http probe against the store simulator's http and https devices.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <memory>
#include <optional>
#include <set>

#include "os/curl_multi.h"
#include "tests/integration/probe_harness.h"
#include "tests/support/store_lab.h"

namespace storewatch::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// One simulator for the whole suite: making its certificates takes a few
// openssl runs. Each test leaves the lane without a fault.
class HttpProbeLab : public ::testing::Test {
 protected:
  static inline std::map<std::string, int> ports;
  static inline std::unique_ptr<StoreLab> lab;

  static void SetUpTestSuite() {
    std::string devices;
    std::set<int> used;
    auto add = [&](const std::string& name, const std::string& kind, const std::string& cert) {
      int port = free_port();
      while (used.count(port) != 0) port = free_port();
      used.insert(port);
      ports[name] = port;
      devices += fmt::format(
          "[[device]]\nname = \"{}\"\nkind = \"{}\"\nhost = \"127.0.0.1\"\n"
          "port = {}\n{}\n",
          name, kind, port, cert.empty() ? "" : "cert = \"" + cert + "\"\n");
    };
    add("lane", "http", "");
    for (const char* cert :
         {"good", "expired", "not_yet_valid", "wrong_host", "unknown_ca", "expiring"}) {
      add(std::string("gw-") + cert, "https", cert);
    }
    lab = std::make_unique<StoreLab>(devices);
  }
  static void TearDownTestSuite() { lab.reset(); }

  void TearDown() override { lab->fault("lane", "none"); }

  static std::string lane_url(const std::string& path = "/health") {
    return fmt::format("http://127.0.0.1:{}{}", ports.at("lane"), path);
  }
  static std::string gw_url(const std::string& cert) {
    return fmt::format("https://127.0.0.1:{}/pay/health", ports.at("gw-" + cert));
  }
  static std::string lane_probe(const std::string& extra = "", const std::string& timeout = "5s") {
    return fmt::format("type = \"http\"\nurl = \"{}\"\ntimeout = \"{}\"\n{}", lane_url(), timeout,
                       extra);
  }
  static std::string gw_probe(const std::string& cert, const std::string& extra = "",
                              bool trust_lab_ca = true) {
    return fmt::format(
        "type = \"http\"\nurl = \"{}\"\ntimeout = \"5s\"\n{}{}", gw_url(cert),
        trust_lab_ca ? fmt::format("ca_file = \"{}\"\n", lab->ca_file().string()) : std::string(),
        extra);
  }
};

using Clock = std::chrono::steady_clock;

double elapsed_s(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Runs the loop for a while, also after it ran out of work before.
void run_for(boost::asio::io_context& io, std::chrono::milliseconds d) {
  io.restart();
  io.run_for(d);
}

TEST_F(HttpProbeLab, HealthyLaneIsOkWithItsMetrics) {
  auto r = run_probe(lane_probe("expect_body = '\"status\": \"ok\"'"));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_THAT(r.message, HasSubstr("HTTP 200"));
  EXPECT_EQ(r.metrics.at("status_code"), 200);
  EXPECT_GT(r.metrics.at("body_bytes"), 10);
  for (const char* m : {"total_ms", "connect_ms", "ttfb_ms"}) {
    ASSERT_EQ(r.metrics.count(m), 1u) << m;
    EXPECT_GE(r.metrics.at(m), 0) << m;
  }
  EXPECT_GE(r.metrics.at("total_ms"), r.metrics.at("ttfb_ms"));
  EXPECT_EQ(r.metrics.count("tls_ms"), 0u);
  EXPECT_EQ(r.metrics.count("cert_days_left"), 0u);
  EXPECT_GT(r.latency.count(), 0);
}

TEST_F(HttpProbeLab, ServerErrorFailsWithTheStatus) {
  lab->fault("lane", "http500");
  auto r = run_probe(lane_probe());
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_EQ(r.message, "HTTP 500, expected 200");
  EXPECT_EQ(r.metrics.at("status_code"), 500);

  auto expecting_500 = run_probe(lane_probe("expect_status = 500"));
  EXPECT_EQ(status_of(expecting_500), "ok") << expecting_500.message;
}

TEST_F(HttpProbeLab, DegradedBodyFailsOnlyWhenTheBodyIsChecked) {
  lab->fault("lane", "degraded");
  auto checked = run_probe(lane_probe("expect_body = '\"status\": \"ok\"'"));
  EXPECT_EQ(status_of(checked), "fail");
  EXPECT_THAT(checked.message, HasSubstr("HTTP 200 but the body does not contain"));
  EXPECT_THAT(checked.message, HasSubstr("\"status\": \"ok\""));

  auto unchecked = run_probe(lane_probe());
  EXPECT_EQ(status_of(unchecked), "ok") << unchecked.message;
}

TEST_F(HttpProbeLab, HungLaneTimesOutWithinItsTimeout) {
  lab->fault("lane", "hang");
  const auto started = Clock::now();
  auto r = run_probe(lane_probe("", "1s"));
  const double took = elapsed_s(started);
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, HasSubstr("timed out after 1s"));
  EXPECT_GE(took, 0.9);
  EXPECT_LT(took, 4.0);  // a gross miss only: sanitizer builds on busy machines are slow
}

TEST_F(HttpProbeLab, SlowLaneIsOkWithinTheTimeoutAndTimesOutBeyondIt) {
  lab->fault("lane", "slow");  // answers after 2 s
  auto within = run_probe(lane_probe("", "8s"));
  EXPECT_EQ(status_of(within), "ok") << within.message;
  EXPECT_GE(within.metrics.at("ttfb_ms"), 1900);

  auto beyond = run_probe(lane_probe("", "1s"));
  EXPECT_EQ(status_of(beyond), "fail");
  EXPECT_THAT(beyond.message, HasSubstr("timed out after 1s"));
}

TEST_F(HttpProbeLab, AnEndlessBodyIsReadUpToMaxBodyNotUntilTheTimeout) {
  // Issue 18: an endpoint whose body never ends cost 62 % of a core, each
  // check reading until its timeout. The read stops at max_body (64 KB by
  // default) and the check is made on what was read.
  lab->fault("lane", "endless");
  auto started = Clock::now();
  auto r = run_probe(lane_probe("expect_body = '\"status\": \"ok\"'", "20s"));
  double took = elapsed_s(started);
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_THAT(r.message, HasSubstr("HTTP 200 in "));
  EXPECT_THAT(r.message, HasSubstr("; body cut at 64KB (max_body)"));
  EXPECT_EQ(r.metrics.at("body_bytes"), 64 * 1024);
  EXPECT_EQ(r.metrics.at("body_truncated"), 1);
  EXPECT_LT(took, 5.0) << "read until the timeout?";

  // A text past the cap is not there: the message says how much was searched.
  started = Clock::now();
  r = run_probe(lane_probe("expect_body = 'never-sent'\nmax_body = \"1MB\"", "20s"));
  took = elapsed_s(started);
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_EQ(r.message,
            "HTTP 200 but the body's first 1MB (max_body) do not contain \"never-sent\"");
  EXPECT_EQ(r.metrics.at("body_bytes"), 1024 * 1024);
  EXPECT_LT(took, 5.0);

  // A whole body within the cap is read to its end, as before.
  lab->fault("lane", "none");
  r = run_probe(lane_probe("max_body = \"1KB\""));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_THAT(r.message, Not(HasSubstr("max_body")));
  EXPECT_EQ(r.metrics.count("body_truncated"), 0u);
}

TEST_F(HttpProbeLab, DownLaneIsRefused) {
  lab->fault("lane", "down");
  auto r = run_probe(lane_probe());
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_EQ(r.message, fmt::format("connection refused by 127.0.0.1:{}", ports.at("lane")));
}

TEST_F(HttpProbeLab, NameThatDoesNotResolveIsADnsFailure) {
  auto r = run_probe("type = \"http\"\nurl = \"http://no-such-lane.invalid:8080/health\"");
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, HasSubstr("DNS: cannot resolve host no-such-lane.invalid"));
}

TEST_F(HttpProbeLab, HeadAndPostAreAnswered) {
  auto head = run_probe(lane_probe("method = \"HEAD\""));
  EXPECT_EQ(status_of(head), "ok") << head.message;
  EXPECT_EQ(head.metrics.at("body_bytes"), 0);
  auto post = run_probe(lane_probe("method = \"POST\"\nexpect_body = \"lane\""));
  EXPECT_EQ(status_of(post), "ok") << post.message;
  EXPECT_GT(post.metrics.at("body_bytes"), 0);
}

TEST_F(HttpProbeLab, HttpsWithTheLabCaIsOkAndReportsTheCertificate) {
  auto r = run_probe(gw_probe("good"));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  ASSERT_EQ(r.metrics.count("cert_days_left"), 1u);
  EXPECT_GE(r.metrics.at("cert_days_left"), 363);
  EXPECT_LE(r.metrics.at("cert_days_left"), 365);
  ASSERT_EQ(r.metrics.count("tls_ms"), 1u);
  EXPECT_GT(r.metrics.at("tls_ms"), 0);
  EXPECT_THAT(r.message, HasSubstr("certificate valid"));
}

TEST_F(HttpProbeLab, HttpsVerifiesByDefault) {
  // Without ca_file the system's CAs are trusted, and they never signed the lab's.
  auto r = run_probe(gw_probe("good", "", false));
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, HasSubstr("unknown CA"));
}

TEST_F(HttpProbeLab, EachTlsFailureSaysWhichItIs) {
  const std::map<std::string, std::string> expected = {
      {"expired", "has expired"},
      {"not_yet_valid", "is not yet valid"},
      {"wrong_host", "wrong host"},
      {"unknown_ca", "unknown CA"},
  };
  std::set<std::string> messages;
  for (const auto& [cert, words] : expected) {
    auto r = run_probe(gw_probe(cert));
    EXPECT_EQ(status_of(r), "fail") << cert << ": " << r.message;
    EXPECT_THAT(r.message, HasSubstr(words)) << cert;
    EXPECT_THAT(r.message, HasSubstr("TLS")) << cert;
    for (const auto& [other, other_words] : expected) {
      if (other != cert) {
        EXPECT_THAT(r.message, Not(HasSubstr(other_words))) << cert;
      }
    }
    messages.insert(r.message);
  }
  EXPECT_EQ(messages.size(), expected.size());
}

TEST_F(HttpProbeLab, CertificateNearExpiryWarns) {
  auto r = run_probe(gw_probe("expiring"));
  EXPECT_EQ(status_of(r), "warn") << r.message;
  EXPECT_EQ(r.metrics.at("cert_days_left"), 10);
  EXPECT_THAT(r.message, HasSubstr("certificate expires in 10 days"));

  auto lower_threshold = run_probe(gw_probe("expiring", "cert_warn_days = 7"));
  EXPECT_EQ(status_of(lower_threshold), "ok") << lower_threshold.message;
}

TEST_F(HttpProbeLab, InsecureAcceptsAWrongHost) {
  auto r = run_probe(gw_probe("wrong_host", "insecure = true", false));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_EQ(r.metrics.count("cert_days_left"), 1u);
}

TEST_F(HttpProbeLab, ProbeRunPrintsTheDesignShape) {
  TempDir dir;
  auto r = run_probe_cli(dir, gw_probe("expiring"));
  ASSERT_TRUE(r.result.is_object()) << r.err;
  EXPECT_EQ(r.result["name"], "p");
  EXPECT_EQ(r.result["type"], "http");
  EXPECT_EQ(r.result["status"], "warn");
  EXPECT_TRUE(r.result["latency_ms"].is_number());
  EXPECT_THAT(r.result["message"].get<std::string>(), HasSubstr("expires in 10 days"));
  EXPECT_EQ(r.result["metrics"]["cert_days_left"], 10);
  EXPECT_EQ(r.result["metrics"]["status_code"], 200);

  lab->fault("lane", "http500");
  auto failed = run_probe_cli(dir, lane_probe());
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_EQ(failed.result["status"], "fail");
  EXPECT_EQ(failed.result["message"], "HTTP 500, expected 200");
}

// 200 probes on one io_context share one multi handle and all complete.
TEST_F(HttpProbeLab, ManyProbesRunConcurrentlyOnOneLoop) {
  constexpr int kProbes = 200;
  const auto before = lab->stats("lane")["connections"].get<int>();
  boost::asio::io_context io;
  auto config = probe_config(lane_probe("expect_body = \"ok\"", "30s"));
  std::vector<std::unique_ptr<probes::Probe>> running;
  std::vector<std::optional<probes::ProbeResult>> results(kProbes);
  for (int i = 0; i < kProbes; ++i) {
    config.name = fmt::format("lane-{}", i);
    running.push_back(probes::create(config, io.get_executor()));
  }
  for (int i = 0; i < kProbes; ++i) {
    running[i]->start([&results, i](probes::ProbeResult r) { results[i] = std::move(r); });
  }
  auto& multi = os::CurlMulti::of(io.get_executor());
  EXPECT_EQ(multi.active(), static_cast<std::size_t>(kProbes));
  const auto deadline = Clock::now() + 60s;
  auto all_done = [&] {
    return std::all_of(results.begin(), results.end(), [](const auto& r) { return r.has_value(); });
  };
  while (!all_done() && Clock::now() < deadline) run_for(io, 100ms);
  ASSERT_TRUE(all_done());
  for (int i = 0; i < kProbes; ++i) {
    EXPECT_EQ(status_of(*results[i]), "ok") << i << ": " << results[i]->message;
  }
  EXPECT_EQ(multi.active(), 0u);
  EXPECT_EQ(lab->stats("lane")["connections"].get<int>() - before, kProbes);
}

// Once the checks are done nothing of curl's is left pending: the loop runs
// out of work by itself (how the agent shuts down).
TEST_F(HttpProbeLab, LoopRunsOutOfWorkWhenTheCheckEnds) {
  boost::asio::io_context io;
  auto probe = probes::create(probe_config(lane_probe()), io.get_executor());
  std::optional<probes::ProbeResult> result;
  probe->start([&result](probes::ProbeResult r) { result = std::move(r); });
  const auto started = Clock::now();
  io.run_for(20s);
  EXPECT_TRUE(io.stopped());
  EXPECT_LT(elapsed_s(started), 10.0);
  ASSERT_TRUE(result);
  EXPECT_EQ(status_of(*result), "ok") << result->message;
}

// cancel() (what the scheduler does on timeout) closes the connection and
// no result comes afterwards.
TEST_F(HttpProbeLab, CancelClosesTheConnectionAndReportsNothing) {
  lab->fault("lane", "hang");
  boost::asio::io_context io;
  auto config = probe_config(lane_probe("", "30s"));
  std::vector<std::unique_ptr<probes::Probe>> running;
  int results = 0;
  for (int i = 0; i < 5; ++i) {
    running.push_back(probes::create(config, io.get_executor()));
    running.back()->start([&results](probes::ProbeResult) { ++results; });
  }
  ASSERT_TRUE(wait_until(
      [&] {
        run_for(io, 20ms);
        return lab->stats("lane")["open_connections"].get<int>() == 5;
      },
      20s));
  for (auto& p : running) p->cancel();
  EXPECT_EQ(os::CurlMulti::of(io.get_executor()).active(), 0u);
  EXPECT_TRUE(wait_until(
      [&] {
        run_for(io, 20ms);
        return lab->stats("lane")["open_connections"].get<int>() == 0;
      },
      20s));
  run_for(io, 200ms);
  EXPECT_EQ(results, 0);
  running.clear();
  io.restart();
  io.poll();
  EXPECT_EQ(results, 0);
}

}  // namespace
}  // namespace storewatch::test
