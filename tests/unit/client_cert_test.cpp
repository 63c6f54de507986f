// The client certificate's expiry and the checks a TLS reload makes, with
// certificates made by openssl in the test.

#include "sync/client_cert.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/support/support.h"

namespace storewatch::sync {
namespace {

using namespace std::chrono_literals;
using test::TempDir;

/// A self-signed certificate and its key, valid for `days` from now.
struct SelfSigned {
  std::filesystem::path cert;
  std::filesystem::path key;
};

SelfSigned make_cert(const TempDir& dir, const std::string& name, int days) {
  SelfSigned out{dir / (name + ".pem"), dir / (name + ".key")};
  auto r = test::run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", out.key.string(), "-out",
                      out.cert.string(), "-days", std::to_string(days), "-subj", "/CN=" + name});
  if (r.exit_code != 0) throw std::runtime_error("openssl: " + r.err);
  return out;
}

TEST(ClientCert, ReadsNotAfterAndTheSubject) {
  TempDir dir;
  const WallTime before = SystemClock().wall_now();
  auto c = make_cert(dir, "store-0042", 5);
  const WallTime after = SystemClock().wall_now();
  auto info = read_cert(c.cert);
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->subject, "CN=store-0042");
  EXPECT_EQ(info->file, c.cert);
  // openssl sets notAfter to now + 5 days, in whole seconds.
  EXPECT_GE(info->not_after, std::chrono::floor<std::chrono::seconds>(before) + 24h * 5);
  EXPECT_LE(info->not_after, after + 24h * 5 + 1s);
  // Read a moment after it was made, it has 4 whole days and most of a fifth.
  EXPECT_EQ(days_left(info->not_after, after), 4);
}

TEST(ClientCert, DaysLeftCountsWholeDaysAndGoesNegativeOnceExpired) {
  TempDir dir;
  auto info = read_cert(make_cert(dir, "a", 30).cert);
  ASSERT_TRUE(info) << info.error().message;
  const WallTime end = info->not_after;
  EXPECT_EQ(days_left(end, end - 24h * 21), 21);
  EXPECT_EQ(days_left(end, end - 24h * 21 + 1s), 20);
  EXPECT_EQ(days_left(end, end - 1s), 0);
  EXPECT_EQ(days_left(end, end), 0);
  EXPECT_EQ(days_left(end, end + 1s), -1);
  EXPECT_EQ(days_left(end, end + 24h * 3), -3);
}

TEST(ClientCert, WarnsInsideTheWindowAndOnceExpired) {
  TempDir dir;
  auto info = read_cert(make_cert(dir, "store-7", 30).cert);
  ASSERT_TRUE(info) << info.error().message;
  const WallTime end = info->not_after;
  // 22 days left with a 21-day window: quiet.
  EXPECT_EQ(expiry_problem(*info, 21, end - 24h * 22), std::nullopt);
  EXPECT_EQ(expiry_problem(*info, 21, end - 24h * 21), std::nullopt);
  auto soon = expiry_problem(*info, 21, end - 24h * 20 - 1h);
  ASSERT_TRUE(soon);
  EXPECT_NE(soon->find("in 20 days"), std::string::npos) << *soon;
  EXPECT_NE(soon->find("CN=store-7"), std::string::npos) << *soon;
  auto gone = expiry_problem(*info, 21, end + 1s);
  ASSERT_TRUE(gone);
  EXPECT_NE(gone->find("expired"), std::string::npos) << *gone;
  // 0 turns the warning off.
  EXPECT_EQ(expiry_problem(*info, 0, end + 1s), std::nullopt);
}

TEST(ClientCert, ReadingABadFileSaysWhy) {
  TempDir dir;
  auto missing = read_cert(dir / "nope.pem");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nope.pem"), std::string::npos);
  test::write_file(dir / "junk.pem", "not a certificate\n");
  auto junk = read_cert(dir / "junk.pem");
  ASSERT_FALSE(junk);
  EXPECT_NE(junk.error().message.find("not a PEM certificate"), std::string::npos)
      << junk.error().message;
}

TEST(TlsFiles, AMatchingSetPassesAndEachBrokenFileIsNamed) {
  TempDir dir;
  auto ca = make_cert(dir, "ca", 10);
  auto mine = make_cert(dir, "store-1", 10);
  auto other = make_cert(dir, "store-2", 10);
  config::BrokerConfig b;
  b.broker = "ssl://127.0.0.1:8883";
  b.ca_file = ca.cert;
  b.cert_file = mine.cert;
  b.key_file = mine.key;
  EXPECT_TRUE(check_tls_files(b));

  auto expect_refused = [](const config::BrokerConfig& files, const std::string& words) {
    auto st = check_tls_files(files);
    ASSERT_FALSE(st) << "accepted, expected: " << words;
    EXPECT_NE(st.error().message.find(words), std::string::npos) << st.error().message;
  };
  auto wrong_key = b;
  wrong_key.key_file = other.key;
  expect_refused(wrong_key, "does not belong to the certificate");
  auto missing = b;
  missing.cert_file = dir / "gone.pem";
  expect_refused(missing, "cert_file");
  test::write_file(dir / "junk.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
  auto junk = b;
  junk.cert_file = dir / "junk.pem";
  expect_refused(junk, "not a PEM certificate");
  auto junk_ca = b;
  junk_ca.ca_file = dir / "junk.pem";
  expect_refused(junk_ca, "ca_file");
  auto key_as_cert = b;
  key_as_cert.key_file = mine.cert;  // a certificate where the key belongs
  expect_refused(key_as_cert, "key_file");
  auto no_password = b;
  no_password.password_file = dir / "password";
  expect_refused(no_password, "password_file");
  test::write_file(dir / "password", "secret\n");
  EXPECT_TRUE(check_tls_files(no_password));
}

TEST(TlsFiles, TheDigestFollowsTheContents) {
  TempDir dir;
  auto a = make_cert(dir, "a", 10);
  config::BrokerConfig b;
  b.cert_file = dir / "client.pem";
  b.key_file = dir / "client.key";
  std::filesystem::copy_file(a.cert, b.cert_file);
  std::filesystem::copy_file(a.key, b.key_file);
  const std::string first = tls_files_digest(b);
  EXPECT_EQ(tls_files_digest(b), first);
  auto c = make_cert(dir, "c", 10);
  std::filesystem::copy_file(c.cert, b.cert_file,
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_NE(tls_files_digest(b), first);
}

}  // namespace
}  // namespace storewatch::sync
