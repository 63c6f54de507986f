#include "sync/client_cert.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>

#include "sync/publisher.h"

namespace storewatch::sync {

namespace {

/// The oldest OpenSSL error queued, as text, and the queue cleared.
std::string openssl_error(const std::string& fallback) {
  unsigned long code = ERR_get_error();
  std::string out = fallback;
  if (code != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    out = buf;
  }
  ERR_clear_error();
  return out;
}

/// Whether `file` can be opened for reading, and why not.
Status readable(std::string_view key, const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return Error{fmt::format("{} {}: {}", key, file.string(), std::strerror(errno))};
  return {};
}

/// Never prompt on a terminal for a key's passphrase: an encrypted key is an
/// error (the agent has no passphrase to give).
int no_passphrase(char*, int, int, void*) {
  return 0;
}

}  // namespace

Result<CertInfo> read_cert(const std::filesystem::path& file) {
  if (auto st = readable("cert_file", file); !st) return st.error();
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(file.c_str(), "r"), BIO_free);
  if (!bio)
    return Error{fmt::format("cert_file {}: {}", file.string(), openssl_error("unreadable"))};
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr), X509_free);
  if (!cert) {
    return Error{fmt::format("cert_file {}: not a PEM certificate ({})", file.string(),
                             openssl_error("no certificate found"))};
  }
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &tm) != 1) {
    return Error{fmt::format("cert_file {}: unreadable notAfter ({})", file.string(),
                             openssl_error("bad time"))};
  }
  CertInfo info;
  info.file = file;
  info.not_after = WallTime(std::chrono::seconds(::timegm(&tm)));
  std::unique_ptr<BIO, decltype(&BIO_free)> mem(BIO_new(BIO_s_mem()), BIO_free);
  if (mem &&
      X509_NAME_print_ex(mem.get(), X509_get_subject_name(cert.get()), 0, XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    long n = BIO_get_mem_data(mem.get(), &data);
    if (n > 0 && data != nullptr) info.subject.assign(data, static_cast<std::size_t>(n));
  }
  return info;
}

std::int64_t days_left(WallTime not_after, WallTime now) {
  return std::chrono::floor<std::chrono::days>(not_after - now).count();
}

std::optional<std::string> expiry_problem(const CertInfo& info, int warn_days, WallTime now) {
  if (warn_days <= 0) return std::nullopt;
  const std::int64_t days = days_left(info.not_after, now);
  const std::string at = format_rfc3339(info.not_after);
  if (info.not_after <= now) {
    return fmt::format("the client certificate {} ({}) expired at {}; the broker will refuse it",
                       info.file.string(), info.subject, at);
  }
  if (days >= warn_days) return std::nullopt;
  return fmt::format(
      "the client certificate {} ({}) expires at {}, in {} days (cert_warn_days = {}); renew it "
      "and send SIGHUP",
      info.file.string(), info.subject, at, days, warn_days);
}

Status check_tls_files(const config::BrokerConfig& b) {
  if (!b.password_file.empty()) {
    if (auto pw = config::read_secret(b.password_file); !pw) {
      return Error{"password_file: " + pw.error().message};
    }
  }
  if (b.ca_file.empty() && b.cert_file.empty() && b.key_file.empty()) return {};
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  if (!ctx) return Error{"TLS: " + openssl_error("cannot create a context")};
  SSL_CTX_set_default_passwd_cb(ctx.get(), no_passphrase);
  ERR_clear_error();
  if (!b.ca_file.empty()) {
    if (auto st = readable("ca_file", b.ca_file); !st) return st;
    if (SSL_CTX_load_verify_locations(ctx.get(), b.ca_file.c_str(), nullptr) != 1) {
      return Error{fmt::format("ca_file {}: no usable CA certificate ({})", b.ca_file.string(),
                               openssl_error("not PEM"))};
    }
  }
  if (!b.cert_file.empty()) {
    if (auto st = readable("cert_file", b.cert_file); !st) return st;
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), b.cert_file.c_str()) != 1) {
      return Error{fmt::format("cert_file {}: not a PEM certificate ({})", b.cert_file.string(),
                               openssl_error("unusable"))};
    }
    // Paho reads the key from cert_file when key_file is unset.
    const std::filesystem::path key = b.key_file.empty() ? b.cert_file : b.key_file;
    const char* key_name = b.key_file.empty() ? "cert_file" : "key_file";
    if (auto st = readable(key_name, key); !st) return st;
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(key.c_str(), "r"), BIO_free);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(
        bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr,
        EVP_PKEY_free);
    if (!pkey) {
      return Error{fmt::format("{} {}: not an unencrypted PEM private key ({})", key_name,
                               key.string(), openssl_error("unusable"))};
    }
    if (SSL_CTX_use_PrivateKey(ctx.get(), pkey.get()) != 1 ||
        SSL_CTX_check_private_key(ctx.get()) != 1) {
      return Error{fmt::format("{} {} does not belong to the certificate in {} ({})", key_name,
                               key.string(), b.cert_file.string(), openssl_error("key mismatch"))};
    }
  } else if (!b.key_file.empty()) {
    return Error{fmt::format("key_file {} is set without cert_file", b.key_file.string())};
  }
  return {};
}

std::string tls_files_digest(const config::BrokerConfig& b) {
  std::vector<std::filesystem::path> files;
  for (const auto* f : {&b.ca_file, &b.cert_file, &b.key_file, &b.password_file}) {
    if (!f->empty()) files.push_back(*f);
  }
  return config_digest(files);
}

}  // namespace storewatch::sync
