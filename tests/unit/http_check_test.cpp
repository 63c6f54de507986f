// The http probe's certificate dates and failure messages.

#include "os/http_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>

#include "config/config.h"
#include "probes/registry.h"

namespace storewatch::os::http {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

std::int64_t unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

TEST(CertTime, ReadsOpenSslsPrintedForm) {
  auto t = parse_cert_time("Mar  5 12:00:01 2026 GMT");
  ASSERT_TRUE(t);
  EXPECT_EQ(unix_seconds(*t), 1772712001);  // date -u -d '2026-03-05 12:00:01' +%s
}

TEST(CertTime, ReadsTwoDigitDaysFractionsAndLeadingSpace) {
  auto t = parse_cert_time(" Dec 31 23:59:59.250 2049 GMT");
  ASSERT_TRUE(t);
  EXPECT_EQ(unix_seconds(*t), 2524607999);
  auto leap = parse_cert_time("Feb 29 00:00:00 2028 GMT");
  ASSERT_TRUE(leap);
  EXPECT_EQ(unix_seconds(*leap), 1835395200);
  auto epoch = parse_cert_time("Jan  1 00:00:00 1970 GMT");
  ASSERT_TRUE(epoch);
  EXPECT_EQ(unix_seconds(*epoch), 0);
}

TEST(CertTime, RejectsWhatIsNotADate) {
  for (const char* text :
       {"", "GMT", "Foo  5 12:00:00 2026 GMT", "Mar 32 12:00:00 2026 GMT",
        "Feb 29 00:00:00 2027 GMT", "Mar  5 24:00:00 2026 GMT", "Mar  5 12:00 2026 GMT",
        "Mar  5 12:00:00 26 GMT", "Mar  5 12:00:00 2026 CET", "2026-03-05T12:00:00Z",
        "Mar  5 12:00:00 2026 GMT trailing"}) {
    EXPECT_FALSE(parse_cert_time(text)) << text;
  }
}

TEST(CertTime, DaysLeftRoundDown) {
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  EXPECT_EQ(days_left(now + 24h * 10 + 6h, now), 10);
  EXPECT_EQ(days_left(now + 24h * 10 - 1s, now), 9);
  EXPECT_EQ(days_left(now + 1h, now), 0);
  EXPECT_EQ(days_left(now - 1h, now), -1);
  EXPECT_EQ(days_left(now - 24h * 30, now), -30);
}

TEST(TlsFailure, VerifyResultCodesPickTheProblem) {
  EXPECT_EQ(classify_tls_failure(10, ""), TlsProblem::expired);
  EXPECT_EQ(classify_tls_failure(9, ""), TlsProblem::not_yet_valid);
  EXPECT_EQ(classify_tls_failure(62, ""), TlsProblem::wrong_host);
  for (long code : {2L, 18L, 19L, 20L, 21L}) {
    EXPECT_EQ(classify_tls_failure(code, ""), TlsProblem::unknown_ca) << code;
  }
  EXPECT_EQ(classify_tls_failure(0, "SSL connect error"), TlsProblem::other);
}

TEST(TlsFailure, CurlsTextPicksTheProblemWithoutAVerifyResult) {
  // curl's own host name check leaves the verify result at 0 or 1.
  EXPECT_EQ(classify_tls_failure(
                1, "SSL: no alternative certificate subject name matches target host name 'x'"),
            TlsProblem::wrong_host);
  EXPECT_EQ(classify_tls_failure(0, "SSL certificate problem: certificate has expired"),
            TlsProblem::expired);
  EXPECT_EQ(classify_tls_failure(0, "SSL certificate problem: certificate is not yet valid"),
            TlsProblem::not_yet_valid);
  EXPECT_EQ(classify_tls_failure(0, "SSL certificate problem: self-signed certificate"),
            TlsProblem::unknown_ca);
  EXPECT_EQ(
      classify_tls_failure(0, "SSL certificate problem: unable to get local issuer certificate"),
      TlsProblem::unknown_ca);
}

TransferFailure failure(CURLcode code) {
  TransferFailure f;
  f.code = code;
  f.host = "127.0.0.1";
  f.port = 8443;
  f.timeout = 2s;
  return f;
}

TEST(FailureMessage, EachTlsProblemSaysWhichItIs) {
  auto f = failure(CURLE_PEER_FAILED_VERIFICATION);
  f.verify_result = 10;
  const auto expired = failure_message(f);
  f.verify_result = 9;
  const auto not_yet = failure_message(f);
  f.verify_result = 20;
  const auto unknown_ca = failure_message(f);
  f.verify_result = 1;
  f.error_text = "SSL: no alternative certificate subject name matches target host name";
  const auto wrong_host = failure_message(f);
  EXPECT_THAT(expired, HasSubstr("expired"));
  EXPECT_THAT(not_yet, HasSubstr("not yet valid"));
  EXPECT_THAT(unknown_ca, HasSubstr("unknown CA"));
  EXPECT_THAT(wrong_host, HasSubstr("wrong host"));
  for (const auto& m : {expired, not_yet, unknown_ca, wrong_host}) {
    EXPECT_THAT(m, HasSubstr("127.0.0.1:8443")) << m;
  }
  EXPECT_THAT(expired, Not(HasSubstr("not yet")));
  EXPECT_THAT(not_yet, Not(HasSubstr("expired")));
}

TEST(FailureMessage, ConnectTimeoutAndDnsFailuresDiffer) {
  auto refused = failure(CURLE_COULDNT_CONNECT);
  refused.os_errno = ECONNREFUSED;
  EXPECT_EQ(failure_message(refused), "connection refused by 127.0.0.1:8443");
  auto unreachable = failure(CURLE_COULDNT_CONNECT);
  unreachable.os_errno = ENETUNREACH;
  EXPECT_THAT(failure_message(unreachable), HasSubstr("unreachable"));
  EXPECT_THAT(failure_message(failure(CURLE_OPERATION_TIMEDOUT)), HasSubstr("timed out after 2s"));
  auto dns = failure(CURLE_COULDNT_RESOLVE_HOST);
  dns.host = "lane-01.invalid";
  EXPECT_THAT(failure_message(dns), HasSubstr("DNS: cannot resolve host lane-01.invalid"));
  EXPECT_THAT(failure_message(failure(CURLE_GOT_NOTHING)), HasSubstr("without answering"));
}

TEST(FailureMessage, OtherErrorsKeepCurlsWords) {
  auto f = failure(CURLE_WEIRD_SERVER_REPLY);
  f.error_text = "Unsupported HTTP version in response";
  EXPECT_THAT(failure_message(f), HasSubstr("Unsupported HTTP version"));
}

// The loader runs the type's validator: errors for the whole config text.
std::string config_errors(const std::string& probe_keys) {
  auto loaded = config::load_string(
      "[store]\nid = \"s\"\n[[probe]]\nname = \"p\"\ntype = \"http\"\n" + probe_keys, "t.toml",
      probes::schemas());
  std::string out;
  for (const auto& d : loaded.diagnostics) {
    if (d.kind == config::Diagnostic::Kind::error) out += config::to_string(d) + "\n";
  }
  return out;
}

TEST(HttpConfig, AcceptsHttpAndHttpsWithDefaults) {
  EXPECT_EQ(config_errors("url = \"http://10.20.1.11:8080/health\""), "");
  EXPECT_EQ(config_errors("url = \"https://[::1]/health\"\nmethod = \"HEAD\""), "");
  auto loaded = config::load_string(
      "[store]\nid = \"s\"\n[[probe]]\nname = \"p\"\ntype = \"http\"\nurl = \"http://x/\"\n",
      "t.toml", probes::schemas());
  ASSERT_TRUE(loaded.ok());
  const auto& p = loaded.config->probes.at(0);
  EXPECT_EQ(p.str("method"), "GET");
  EXPECT_EQ(p.integer("expect_status"), 200);
  EXPECT_FALSE(p.boolean("insecure"));
  EXPECT_EQ(p.integer("cert_warn_days"), 21);
  EXPECT_EQ(p.integer("max_body"), 64 * 1024);
}

TEST(HttpConfig, MaxBodyIsASizeFrom1KBTo64MB) {
  EXPECT_EQ(config_errors("url = \"http://x/\"\nmax_body = \"1KB\""), "");
  EXPECT_EQ(config_errors("url = \"http://x/\"\nmax_body = \"64MB\""), "");
  EXPECT_THAT(config_errors("url = \"http://x/\"\nmax_body = \"65MB\""),
              HasSubstr("max_body 65MB is above 64MB"));
  EXPECT_THAT(config_errors("url = \"http://x/\"\nmax_body = 65536"),
              HasSubstr("max_body: expected a size string like \"256MB\""));
  EXPECT_THAT(config_errors("url = \"http://x/\"\nmax_body = \"64k\""),
              HasSubstr("\"64k\" is not a size"));
  EXPECT_THAT(config_errors("url = \"http://x/\"\nmax_body = \"0KB\""),
              HasSubstr("max_body: must be at least 1KB, got \"0KB\""));
}

TEST(HttpConfig, RejectsOtherSchemesAndBadValues) {
  EXPECT_THAT(config_errors("url = \"ftp://10.20.1.11/x\""), HasSubstr("not http or https"));
  EXPECT_THAT(config_errors("url = \"10.20.1.11/health\""), HasSubstr("needs a scheme"));
  EXPECT_THAT(config_errors("url = \"http://\""), HasSubstr("not a URL"));
  EXPECT_THAT(config_errors("url = \"http://x/\"\nmethod = \"PUT\""), HasSubstr("method"));
  EXPECT_THAT(config_errors("url = \"http://x/\"\nexpect_status = 42"), HasSubstr("100..599"));
  EXPECT_THAT(config_errors("url = \"http://x/\"\ncert_warn_days = -1"),
              HasSubstr("cert_warn_days"));
  EXPECT_THAT(config_errors("url = \"http://x/\"\nverify = false"), HasSubstr("verify"));
  EXPECT_THAT(config_errors("url = \"http://x/\"\nmethod = \"HEAD\"\nexpect_body = \"ok\""),
              HasSubstr("HEAD"));
  EXPECT_THAT(config_errors(""), HasSubstr("url"));
}

}  // namespace
}  // namespace storewatch::os::http
