// TLS material at run time, against the real `storewatch run`, `storewatch
// hq run` and a real mosquitto TLS listener that takes each store's identity
// from its client certificate: new certificates re-read on SIGHUP (and bad
// ones refused, the old connection kept), the warning and incident before
// the client certificate expires, and MQTT over secure websockets (wss://).

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <csignal>
#include <filesystem>

#include "tests/integration/sync_lab.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

/// mosquitto with a TLS listener that requires a client certificate, takes
/// its CN as the user name and lets each store write only under its own id
/// (the broker of SyncTls.AStoreCanPublishOnlyUnderItsOwnId).
class IdentityBroker {
 public:
  explicit IdentityBroker(const TestPki& pki)
      : port_(free_port()),
        broker_(fmt::format("listener {} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n"
                            "require_certificate true\nuse_identity_as_username true\n"
                            "acl_file {}\nuser root",
                            port_, pki.ca(), pki.cert("server"), pki.key("server"), acl()),
                port_) {}
  std::string uri() const { return fmt::format("ssl://127.0.0.1:{}", port_); }
  std::string log() const { return broker_.log(); }

 private:
  std::string acl() {
    write_file(conf_ / "acl",
               "user hq\ntopic readwrite storewatch/v1/#\n\n"
               "pattern readwrite storewatch/v1/stores/%u/#\n");
    return (conf_ / "acl").string();
  }
  int port_;
  TempDir conf_;
  OwnBroker broker_;
};

/// The agent's client certificate and key live in the lab's own files, so a
/// test can replace them the way an operator (or a renewal job) would.
struct ClientFiles {
  fs::path cert;
  fs::path key;

  explicit ClientFiles(const SyncLab& lab)
      : cert(lab.dir / "client.pem"), key(lab.dir / "client.key") {}
  /// Installs the certificate and key of `name` from the PKI.
  void install(const TestPki& pki, const std::string& name) const {
    fs::copy_file(pki.cert(name), cert, fs::copy_options::overwrite_existing);
    fs::copy_file(pki.key(name), key, fs::copy_options::overwrite_existing);
  }
  std::string keys(const TestPki& pki) const {
    return fmt::format("ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n", pki.ca(),
                       cert.string(), key.string());
  }
};

int tls_count_of(const std::string& text, const std::string& needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

/// The agent's incident about its own client certificate, or null.
json cert_incident(SyncLab& lab) {
  auto r = lab.agent({"incidents", "--all", "--json"});
  auto list = json::parse(r.out, nullptr, false);
  if (!list.is_array()) return nullptr;
  for (const auto& i : list) {
    if (i.value("probe", "") == "storewatch" && i.value("condition", "") == "client_cert") return i;
  }
  return nullptr;
}

// --- SIGHUP ---------------------------------------------------------------------

// A store presents another store's certificate: the broker refuses its
// publishes (0x87) and its events wait. The right certificate is put in
// place and the daemon gets SIGHUP: it reconnects with the new identity and
// the backlog reaches HQ, each event once.
TEST(SyncTlsReload, SighupLoadsTheNewCertificateAndTheBacklogReachesHqOnce) {
  TestPki pki({"store-a", "hq"});
  IdentityBroker broker(pki);
  SyncLab lab;
  lab.store = "store-b";
  lab.hq_extra = pki.keys("hq");
  ClientFiles files(lab);
  files.install(pki, "store-a");  // the wrong identity
  lab.configure(broker.uri(), broker.uri(), files.keys(pki));
  auto hq = lab.start_hq();
  auto agent = lab.start_agent();
  lab.device.down();
  json s;
  ASSERT_TRUE(wait_until([&] {
    s = lab.sync_status();
    return s.is_object() && s["connected"] == true && s["queued"] == 1 &&
           s["last_error"].get<std::string>().find("0x87") != std::string::npos;
  })) << s.dump()
      << logs_of(*agent);
  EXPECT_TRUE(lab.hq_events().empty());
  EXPECT_EQ(s["client_cert"]["subject"], "CN=store-a") << s.dump();

  // The renewal: store-b's own certificate, under the same file names.
  pki.issue_client("store-b", "store-b", 365);
  files.install(pki, "store-b");
  ASSERT_EQ(::kill(agent->pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_until([&] { return lab.hq_acked() == 1; }))
      << logs_of(*agent) << logs_of(*hq) << broker.log();
  ASSERT_TRUE(wait_until([&] {
    s = lab.sync_status();
    return s.is_object() && s["connected"] == true && s["queued"] == 0 && s["last_error"] == "";
  })) << s.dump()
      << logs_of(*agent);
  EXPECT_EQ(s["client_cert"]["subject"], "CN=store-b") << s.dump();
  EXPECT_EQ(s["connects"], 2) << s.dump();
  EXPECT_TRUE(wait_until([&] {
    const std::string log = agent->err();
    return log.find("SIGHUP: TLS files reloaded") != std::string::npos &&
           log.find("SIGHUP: config reloaded") != std::string::npos &&
           log.find("nothing changed") != std::string::npos;
  })) << logs_of(*agent);

  // The link keeps working under the new identity; HQ has every event once.
  lab.device.up();
  ASSERT_TRUE(wait_until([&] { return lab.hq_acked() == 2; })) << logs_of(*agent);
  EXPECT_EQ(lab.hq_difference(), "");
  EXPECT_EQ(lab.hq_events().size(), 2u);

  // A SIGHUP with nothing changed keeps the connection.
  ASSERT_EQ(::kill(agent->pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_until([&] {
    return agent->err().find("TLS files unchanged") != std::string::npos;
  })) << logs_of(*agent);
  s = lab.sync_status();
  EXPECT_EQ(s["connects"], 2) << s.dump();
  EXPECT_EQ(s["connected"], true) << s.dump();

  // A second renewal replaces the client again (the first one retired is
  // destroyed now), and events still get through once.
  pki.issue_client("store-b", "store-b", 365);
  files.install(pki, "store-b");
  ASSERT_EQ(::kill(agent->pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_until([&] {
    s = lab.sync_status();
    return s.is_object() && s["connects"] == 3 && s["connected"] == true;
  })) << s.dump()
      << logs_of(*agent);
  lab.device.down();
  ASSERT_TRUE(wait_until([&] { return lab.hq_acked() == 3; })) << logs_of(*agent);
  EXPECT_EQ(lab.hq_difference(), "");
}

// Broken files on SIGHUP — not a certificate, a key of another certificate,
// a missing file — are refused one by one with the reason in the log and in
// `sync status`, and the connection made with the old files goes on
// delivering.
TEST(SyncTlsReload, BrokenFilesOnSighupAreRefusedAndTheOldConnectionKeepsWorking) {
  TestPki pki({"store-a", "hq"});
  IdentityBroker broker(pki);
  SyncLab lab;
  lab.store = "store-a";
  lab.hq_extra = pki.keys("hq");
  ClientFiles files(lab);
  files.install(pki, "store-a");
  lab.configure(broker.uri(), broker.uri(), files.keys(pki));
  auto hq = lab.start_hq();
  auto agent = lab.start_agent();
  lab.device.down();
  ASSERT_TRUE(wait_until([&] { return lab.hq_acked() == 1; })) << logs_of(*agent);

  pki.issue_client("other", "store-a", 365);
  struct Breakage {
    std::string what;
    std::function<void()> apply;
    std::string reason;
  };
  const std::vector<Breakage> breakages{
      {"not a certificate", [&] { write_file(files.cert, "this is not a certificate\n"); },
       "not a PEM certificate"},
      {"a certificate of another key",
       [&] { fs::copy_file(pki.cert("other"), files.cert, fs::copy_options::overwrite_existing); },
       "does not belong to the certificate"},
      {"a missing key", [&] { fs::remove(files.key); }, "key_file"},
  };
  int refusals = 0;
  for (const auto& b : breakages) {
    SCOPED_TRACE(b.what);
    b.apply();
    ASSERT_EQ(::kill(agent->pid(), SIGHUP), 0);
    ++refusals;
    json s;
    ASSERT_TRUE(wait_until([&] {
      s = lab.sync_status();
      return tls_count_of(agent->err(), "SIGHUP: new TLS files refused") == refusals &&
             s.is_object() &&
             s["last_error"].get<std::string>().find(b.reason) != std::string::npos;
    })) << s.dump()
        << logs_of(*agent);
    EXPECT_EQ(s["connected"], true) << s.dump();
    EXPECT_EQ(s["connects"], 1) << s.dump();
    EXPECT_EQ(s["client_cert"]["subject"], "CN=store-a") << s.dump();
    files.install(pki, "store-a");  // repaired for the next breakage
  }
  // Still the first connection, and it still delivers.
  lab.device.up();
  ASSERT_TRUE(wait_until([&] { return lab.hq_acked() == 2; })) << logs_of(*agent);
  EXPECT_EQ(lab.hq_difference(), "");
  json s = lab.sync_status();
  EXPECT_EQ(s["connects"], 1) << s.dump();
  EXPECT_EQ(s["last_error"], "") << s.dump();
}

// --- the client certificate's expiry -------------------------------------------------

// A client certificate 5 days from its end: a warning in the log and in
// `sync status`, and an incident of the agent itself that reaches HQ like
// any other. A 365-day certificate and SIGHUP resolve it.
TEST(SyncCertExpiry, AnExpiringCertificateOpensAnIncidentAndAFreshOneResolvesIt) {
  TestPki pki({"hq"});
  pki.issue_client("store-a", "store-a", 5);
  IdentityBroker broker(pki);
  SyncLab lab;
  lab.store = "store-a";
  lab.hq_extra = pki.keys("hq");
  ClientFiles files(lab);
  files.install(pki, "store-a");
  lab.configure(broker.uri(), broker.uri(), files.keys(pki));
  auto hq = lab.start_hq();
  auto agent = lab.start_agent();

  json s;
  ASSERT_TRUE(wait_until([&] {
    s = lab.sync_status();
    return s.is_object() && s["client_cert"].is_object() && s["client_cert"]["warning"].is_string();
  })) << s.dump()
      << logs_of(*agent);
  const json cert = s["client_cert"];
  EXPECT_EQ(cert["file"], files.cert.string());
  EXPECT_EQ(cert["subject"], "CN=store-a");
  EXPECT_EQ(cert["days_left"], 4) << cert.dump();  // 4 whole days and most of a fifth
  EXPECT_EQ(cert["warn_days"], 21);
  EXPECT_EQ(cert["error"], "");
  // The log is written by its own thread: wait for the line.
  EXPECT_TRUE(wait_until([&] { return agent->err().find("expires at") != std::string::npos; }))
      << logs_of(*agent);
  json inc = cert_incident(lab);
  ASSERT_TRUE(inc.is_object()) << logs_of(*agent);
  EXPECT_EQ(inc["state"], "open");
  EXPECT_EQ(inc["severity"], "high");
  // The text view says it too.
  auto text = lab.agent({"sync", "status"});
  EXPECT_NE(text.out.find("client cert"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("4 days left"), std::string::npos) << text.out;
  // HQ gets the incident like any other.
  ASSERT_TRUE(wait_until([&] { return lab.hq_acked() >= 1; })) << logs_of(*agent);
  EXPECT_EQ(lab.hq_difference(), "");

  // Renewed for a year.
  pki.issue_client("store-a", "store-a", 365);
  files.install(pki, "store-a");
  ASSERT_EQ(::kill(agent->pid(), SIGHUP), 0);
  ASSERT_TRUE(wait_until([&] {
    inc = cert_incident(lab);
    return inc.is_object() && inc["state"] == "resolved";
  })) << inc.dump()
      << logs_of(*agent);
  s = lab.sync_status();
  EXPECT_TRUE(s["client_cert"]["warning"].is_null()) << s.dump();
  EXPECT_GE(s["client_cert"]["days_left"].get<int>(), 364) << s.dump();
  // The open and the resolve both reach HQ, once each.
  ASSERT_TRUE(wait_until([&] { return lab.hq_acked() >= 2 && lab.sync_status()["queued"] == 0; }))
      << logs_of(*agent);
  EXPECT_EQ(lab.hq_difference(), "");
  // The daemon stopped, `sync status` reads the file itself.
  ASSERT_EQ(agent->stop(SIGTERM), 0) << logs_of(*agent);
  s = lab.sync_status();
  EXPECT_EQ(s["daemon_running"], false);
  EXPECT_EQ(s["client_cert"]["subject"], "CN=store-a") << s.dump();
  EXPECT_GE(s["client_cert"]["days_left"].get<int>(), 364) << s.dump();
}

// --- secure websockets --------------------------------------------------------------

// wss://: mosquitto's websockets listener with a certificate; the agent
// verifies the broker with ca_file (and does not connect without it).
TEST(SyncTransport, AgentReachesHqOverSecureWebsockets) {
  TestPki pki({});
  const int tcp_port = free_port();
  const int wss_port = free_port();
  // `user root`: started as root, mosquitto would drop to the mosquitto
  // user before its websockets listener reads the test's private key.
  OwnBroker broker(fmt::format("listener {} 127.0.0.1\nlistener {} 127.0.0.1\n"
                               "protocol websockets\ncafile {}\ncertfile {}\nkeyfile {}\nuser root",
                               tcp_port, wss_port, pki.ca(), pki.cert("server"), pki.key("server")),
                   wss_port);
  SyncLab lab;
  lab.configure(fmt::format("wss://127.0.0.1:{}", wss_port),
                fmt::format("tcp://127.0.0.1:{}", tcp_port),
                fmt::format("ca_file = \"{}\"\n", pki.ca()));
  ASSERT_EQ(lab.one_incident_reaches_hq(broker), "");

  // Without the CA the broker's certificate is not trusted: no connection.
  SyncLab unverified;
  unverified.configure(fmt::format("wss://127.0.0.1:{}", wss_port),
                       fmt::format("tcp://127.0.0.1:{}", tcp_port));
  auto agent2 = unverified.start_agent();
  json s;
  ASSERT_TRUE(wait_until([&] {
    s = unverified.sync_status();
    return s.is_object() && s["reconnect_attempts"] >= 1;
  })) << s.dump()
      << logs_of(*agent2);
  EXPECT_EQ(s["connected"], false);
  EXPECT_NE(s["last_error"], "");
}

}  // namespace
}  // namespace storewatch::test
