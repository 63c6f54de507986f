// How notices travel (issue 8): email over STARTTLS (required, optional, off),
// SMTPS and AUTH against a local SMTP server (tests/support/smtp_receiver.py)
// with a throwaway certificate, and HTTP channels and mail through a local
// proxy (tests/support/http_proxy.py) named by the `proxy` key or by
// https_proxy in the environment. Each case runs `storewatch notify test`
// and reads what the server or the proxy recorded.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>

#include "tests/support/notify_receiver.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string support_script(const char* name) {
  return (std::filesystem::path(STOREWATCH_TEST_SOURCE_DIR) / "tests" / "support" / name).string();
}

std::vector<json> json_lines(const std::filesystem::path& file) {
  std::vector<json> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

/// A throwaway self-signed certificate for 127.0.0.1.
struct Cert {
  Cert() {
    auto r =
        run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key(), "-out", cert(), "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"});
    if (r.exit_code != 0) throw std::runtime_error("openssl: " + r.err);
  }
  std::string cert() const { return (dir / "cert.pem").string(); }
  std::string key() const { return (dir / "key.pem").string(); }
  TempDir dir;
};

/// tests/support/smtp_receiver.py on a free port: `tls` none|starttls|smtps,
/// `auth` "user:password" or empty.
class SmtpServer {
 public:
  SmtpServer(const std::string& tls, const Cert& cert, const std::string& auth = {})
      : port_(free_port()) {
    std::vector<std::string> argv = {"python3", support_script("smtp_receiver.py"),
                                     "--port",  std::to_string(port_),
                                     "--log",   (dir_ / "mail.jsonl").string(),
                                     "--tls",   tls,
                                     "--cert",  cert.cert(),
                                     "--key",   cert.key()};
    if (!auth.empty()) argv.insert(argv.end(), {"--auth", auth});
    child_ = std::make_unique<Child>(argv, dir_ / "logs");
    if (!wait_until([&] { return port_open(port_); }, 10s)) {
      throw std::runtime_error("smtp_receiver did not start: " + child_->err());
    }
  }
  int port() const { return port_; }
  /// The messages it accepted: {from, to, tls, user, data}.
  std::vector<json> mails() const {
    std::vector<json> out;
    for (auto& j : json_lines(dir_ / "mail.jsonl")) {
      if (!j.contains("event")) out.push_back(j);
    }
    return out;
  }
  /// What went wrong: {"event": "auth_failed" | "tls_failed", …}.
  std::vector<json> events() const {
    std::vector<json> out;
    for (auto& j : json_lines(dir_ / "mail.jsonl")) {
      if (j.contains("event")) out.push_back(j);
    }
    return out;
  }

 private:
  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<Child> child_;
};

/// tests/support/http_proxy.py on a free port; records each request.
class Proxy {
 public:
  Proxy() : port_(free_port()) {
    child_ = std::make_unique<Child>(
        std::vector<std::string>{"python3", support_script("http_proxy.py"), "--port",
                                 std::to_string(port_), "--log", (dir_ / "proxy.jsonl").string()},
        dir_ / "logs");
    if (!wait_until([&] { return port_open(port_); }, 10s)) {
      throw std::runtime_error("http_proxy did not start: " + child_->err());
    }
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }
  /// "METHOD target" of each request it handled.
  std::vector<std::string> requests() const {
    std::vector<std::string> out;
    for (const auto& j : json_lines(dir_ / "proxy.jsonl")) {
      out.push_back(j.value("method", "") + " " + j.value("target", ""));
    }
    return out;
  }

 private:
  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<Child> child_;
};

class NotifyTransport : public ::testing::Test {
 protected:
  /// `storewatch notify test NAME` with one [[notify]] table; `env` on top
  /// of a neutral proxy environment (no proxy unless the test sets one).
  RunResult notify_test(const std::string& channel_toml,
                        std::map<std::string, std::string> env = {}) {
    const auto config = dir / "storewatch.toml";
    write_file(config, fmt::format("[store]\nid = \"store-0042\"\nname = \"Springfield\"\n"
                                   "[agent]\ndata_dir = \"{}\"\n[[notify]]\nname = \"ch\"\n{}",
                                   (dir / "data").string(), channel_toml));
    std::map<std::string, std::string> full = {
        {"no_proxy", ""},    {"NO_PROXY", ""},  {"http_proxy", ""}, {"https_proxy", ""},
        {"HTTPS_PROXY", ""}, {"all_proxy", ""}, {"ALL_PROXY", ""}};
    for (auto& [k, v] : env) full[k] = v;
    return run(storewatch_command({"--config", config.string(), "notify", "test", "ch"}), full);
  }

  std::string mail_toml(const std::string& url, const std::string& starttls,
                        const std::string& extra = {}) {
    return fmt::format(
        "type = \"email\"\nsmtp_url = \"{}\"\nstarttls = \"{}\"\n"
        "from = \"storewatch@store-0042.example.com\"\nto = [\"manager@example.com\"]\n{}",
        url, starttls, extra);
  }

  std::string secret(const std::string& name, const std::string& text) {
    write_file(dir / "secrets" / name, text + "\n");
    return (dir / "secrets" / name).string();
  }

  TempDir dir;
  Cert cert;
};

TEST_F(NotifyTransport, StarttlsRequiredEncryptsBeforeAuthAndMail) {
  SmtpServer smtp("starttls", cert, "sw:pa55-word");
  auto r = notify_test(mail_toml(fmt::format("smtp://127.0.0.1:{}", smtp.port()), "required",
                                 fmt::format("ca_file = \"{}\"\nusername = \"sw\"\n"
                                             "password_file = \"{}\"\n",
                                             cert.cert(), secret("smtp", "pa55-word"))));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto mails = smtp.mails();
  ASSERT_EQ(mails.size(), 1u) << r.out;
  EXPECT_EQ(mails[0]["tls"], true);
  EXPECT_EQ(mails[0]["user"], "sw");
  EXPECT_NE(mails[0]["data"].get<std::string>().find("Subject: [Springfield (store-0042)]"),
            std::string::npos);
}

TEST_F(NotifyTransport, StarttlsRequiredNeverFallsBackToPlainText) {
  SmtpServer plain("none", cert, "sw:pa55-word");  // offers no STARTTLS
  auto r = notify_test(mail_toml(fmt::format("smtp://127.0.0.1:{}", plain.port()), "required",
                                 fmt::format("ca_file = \"{}\"\nusername = \"sw\"\n"
                                             "password_file = \"{}\"\n",
                                             cert.cert(), secret("smtp", "pa55-word"))));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("FAILED"), std::string::npos) << r.out;
  EXPECT_TRUE(plain.mails().empty());
  EXPECT_TRUE(plain.events().empty()) << plain.events()[0].dump();  // no AUTH tried either
  EXPECT_EQ(r.out.find("pa55-word"), std::string::npos) << r.out;
}

TEST_F(NotifyTransport, StarttlsOptionalUsesTlsWhenOfferedAndPlainTextOtherwise) {
  SmtpServer tls("starttls", cert);
  auto r = notify_test(mail_toml(fmt::format("smtp://127.0.0.1:{}", tls.port()), "optional",
                                 fmt::format("ca_file = \"{}\"\n", cert.cert())));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_EQ(tls.mails().size(), 1u);
  EXPECT_EQ(tls.mails()[0]["tls"], true);

  SmtpServer plain("none", cert);
  r = notify_test(mail_toml(fmt::format("smtp://127.0.0.1:{}", plain.port()), "optional"));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_EQ(plain.mails().size(), 1u);
  EXPECT_EQ(plain.mails()[0]["tls"], false);
}

TEST_F(NotifyTransport, StarttlsOffSendsInPlainTextEvenWhenOffered) {
  SmtpServer smtp("starttls", cert);
  auto r = notify_test(mail_toml(fmt::format("smtp://127.0.0.1:{}", smtp.port()), "off"));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_EQ(smtp.mails().size(), 1u);
  EXPECT_EQ(smtp.mails()[0]["tls"], false);
}

TEST_F(NotifyTransport, SmtpsSpeaksTlsFromTheFirstByte) {
  SmtpServer smtp("smtps", cert, "sw:pa55-word");
  auto r = notify_test(mail_toml(fmt::format("smtps://127.0.0.1:{}", smtp.port()), "required",
                                 fmt::format("ca_file = \"{}\"\nusername = \"sw\"\n"
                                             "password_file = \"{}\"\n",
                                             cert.cert(), secret("smtp", "pa55-word"))));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_EQ(smtp.mails().size(), 1u);
  EXPECT_EQ(smtp.mails()[0]["tls"], true);
  EXPECT_EQ(smtp.mails()[0]["user"], "sw");
}

TEST_F(NotifyTransport, AnUntrustedCertificateOrAWrongPasswordSendsNothing) {
  SmtpServer smtp("starttls", cert, "sw:pa55-word");
  // No ca_file: the system's CAs do not know the throwaway certificate.
  auto r = notify_test(mail_toml(
      fmt::format("smtp://127.0.0.1:{}", smtp.port()), "required",
      fmt::format("username = \"sw\"\npassword_file = \"{}\"\n", secret("smtp", "pa55-word"))));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(smtp.mails().empty());
  // The right CA, the wrong password: refused, and the password is not printed.
  r = notify_test(mail_toml(fmt::format("smtp://127.0.0.1:{}", smtp.port()), "required",
                            fmt::format("ca_file = \"{}\"\nusername = \"sw\"\n"
                                        "password_file = \"{}\"\n",
                                        cert.cert(), secret("smtp", "not-the-password"))));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(smtp.mails().empty());
  EXPECT_EQ(r.out.find("not-the-password"), std::string::npos) << r.out;
  bool auth_failed = false;
  for (const auto& e : smtp.events()) auth_failed |= e.value("event", "") == "auth_failed";
  EXPECT_TRUE(auth_failed);
}

TEST_F(NotifyTransport, TheProxyKeyCarriesWebhooksAndMail) {
  Proxy proxy;
  NotifyReceiver hook;
  auto r = notify_test(fmt::format("type = \"webhook\"\nurl_file = \"{}\"\nproxy = \"{}\"\n",
                                   secret("hook", hook.url("/hook")), proxy.url()));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // Plain http through the proxy: the request with its absolute URI.
  EXPECT_EQ(proxy.requests(), std::vector<std::string>{"POST " + hook.url("/hook")});
  ASSERT_EQ(hook.accepted_bodies().size(), 1u);
  EXPECT_EQ(hook.accepted_bodies()[0]["kind"], "test");

  // Mail through the proxy: a CONNECT tunnel to the SMTP server.
  SmtpServer smtp("starttls", cert);
  r = notify_test(
      mail_toml(fmt::format("smtp://127.0.0.1:{}", smtp.port()), "required",
                fmt::format("ca_file = \"{}\"\nproxy = \"{}\"\n", cert.cert(), proxy.url())));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_EQ(proxy.requests().size(), 2u);
  EXPECT_EQ(proxy.requests()[1], fmt::format("CONNECT 127.0.0.1:{}", smtp.port()));
  ASSERT_EQ(smtp.mails().size(), 1u);
  EXPECT_EQ(smtp.mails()[0]["tls"], true);  // TLS end to end, inside the tunnel
}

TEST_F(NotifyTransport, HttpsProxyFromTheEnvironmentWhenNoProxyKey) {
  Proxy proxy;
  NotifyReceiver hook(/*start_now=*/true, cert.cert(), cert.key());
  const std::string channel = fmt::format("type = \"slack\"\nurl_file = \"{}\"\nca_file = \"{}\"\n",
                                          secret("slack", hook.url("/slack")), cert.cert());
  // Without a proxy in the environment: straight to the receiver.
  auto r = notify_test(channel);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(proxy.requests().empty());
  ASSERT_EQ(hook.accepted_bodies().size(), 1u);
  // With https_proxy: tunnelled through it (CONNECT), TLS inside.
  r = notify_test(channel, {{"https_proxy", proxy.url()}});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto port = hook.url("").substr(std::string("https://").size());
  EXPECT_EQ(proxy.requests(), std::vector<std::string>{"CONNECT " + port});
  ASSERT_EQ(hook.accepted_bodies().size(), 2u);
  EXPECT_TRUE(hook.accepted_bodies()[1]["blocks"].is_array());
  // no_proxy still applies.
  r = notify_test(channel, {{"https_proxy", proxy.url()}, {"no_proxy", "127.0.0.1"}});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(proxy.requests().size(), 1u);
  EXPECT_EQ(hook.accepted_bodies().size(), 3u);
}

}  // namespace
}  // namespace storewatch::test
