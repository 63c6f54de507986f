#include "os/http_check.h"

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

namespace storewatch::os::http {
namespace {

// X509_V_ERR_* codes (openssl/x509_vfy.h), spelled out so this file needs
// no OpenSSL headers.
constexpr long kUnableToGetIssuerCert = 2;
constexpr long kCertNotYetValid = 9;
constexpr long kCertHasExpired = 10;
constexpr long kDepthZeroSelfSigned = 18;
constexpr long kSelfSignedInChain = 19;
constexpr long kUnableToGetIssuerCertLocally = 20;
constexpr long kUnableToVerifyLeafSignature = 21;
constexpr long kHostnameMismatch = 62;

bool contains(std::string_view text, std::string_view needle) {
  return text.find(needle) != std::string_view::npos;
}

// Days since 1970-01-01 of a proleptic Gregorian date (month 1..12).
long days_from_civil(long y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const long era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<long>(doe) - 719468;
}

// Reads an unsigned decimal of 1..max_digits digits at `pos`.
std::optional<unsigned> number_at(std::string_view text, std::size_t& pos, std::size_t min_digits,
                                  std::size_t max_digits) {
  std::size_t end = pos;
  while (end < text.size() && end - pos < max_digits && text[end] >= '0' && text[end] <= '9') ++end;
  if (end - pos < min_digits) return std::nullopt;
  unsigned value = 0;
  std::from_chars(text.data() + pos, text.data() + end, value);
  pos = end;
  return value;
}

bool skip_spaces(std::string_view text, std::size_t& pos) {
  const std::size_t start = pos;
  while (pos < text.size() && text[pos] == ' ') ++pos;
  return pos > start;
}

bool expect_char(std::string_view text, std::size_t& pos, char c) {
  if (pos >= text.size() || text[pos] != c) return false;
  ++pos;
  return true;
}

std::string tls_detail(std::string_view error_text) {
  return error_text.empty() ? std::string() : fmt::format(" ({})", error_text);
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> parse_cert_time(std::string_view text) {
  static constexpr std::array<std::string_view, 12> kMonths = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::size_t pos = 0;
  skip_spaces(text, pos);
  if (text.size() < pos + 3) return std::nullopt;
  unsigned month = 0;
  for (unsigned i = 0; i < kMonths.size(); ++i) {
    if (text.substr(pos, 3) == kMonths[i]) month = i + 1;
  }
  if (month == 0) return std::nullopt;
  pos += 3;
  if (!skip_spaces(text, pos)) return std::nullopt;
  const auto day = number_at(text, pos, 1, 2);
  if (!day || !skip_spaces(text, pos)) return std::nullopt;
  const auto hour = number_at(text, pos, 2, 2);
  if (!hour || !expect_char(text, pos, ':')) return std::nullopt;
  const auto minute = number_at(text, pos, 2, 2);
  if (!minute || !expect_char(text, pos, ':')) return std::nullopt;
  const auto second = number_at(text, pos, 2, 2);
  if (!second) return std::nullopt;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    if (!number_at(text, pos, 1, 9)) return std::nullopt;  // fraction: below our resolution
  }
  if (!skip_spaces(text, pos)) return std::nullopt;
  const auto year = number_at(text, pos, 4, 4);
  if (!year) return std::nullopt;
  skip_spaces(text, pos);
  if (text.substr(pos) != "GMT" && text.substr(pos) != "") return std::nullopt;
  static constexpr std::array<unsigned, 12> kDaysIn = {31, 29, 31, 30, 31, 30,
                                                       31, 31, 30, 31, 30, 31};
  const bool leap = (*year % 4 == 0 && *year % 100 != 0) || *year % 400 == 0;
  if (*day < 1 || *day > kDaysIn[month - 1] || (month == 2 && *day == 29 && !leap) || *hour > 23 ||
      *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  const long days = days_from_civil(*year, month, *day);
  const auto seconds =
      std::chrono::seconds(days * 86400L + *hour * 3600L + *minute * 60L + *second);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(seconds));
}

int days_left(std::chrono::system_clock::time_point expiry,
              std::chrono::system_clock::time_point now) {
  const auto left = std::chrono::duration_cast<std::chrono::seconds>(expiry - now).count();
  return static_cast<int>(std::floor(static_cast<double>(left) / 86400.0));
}

TlsProblem classify_tls_failure(long verify_result, std::string_view error_text) {
  switch (verify_result) {
    case kCertHasExpired: return TlsProblem::expired;
    case kCertNotYetValid: return TlsProblem::not_yet_valid;
    case kHostnameMismatch: return TlsProblem::wrong_host;
    case kUnableToGetIssuerCert:
    case kDepthZeroSelfSigned:
    case kSelfSignedInChain:
    case kUnableToGetIssuerCertLocally:
    case kUnableToVerifyLeafSignature: return TlsProblem::unknown_ca;
    default: break;
  }
  // curl checks the host name itself after the handshake; OpenSSL's texts
  // are matched too for backends that report no verify result.
  if (contains(error_text, "subject name") || contains(error_text, "does not match target host") ||
      contains(error_text, "hostname mismatch")) {
    return TlsProblem::wrong_host;
  }
  if (contains(error_text, "certificate has expired")) return TlsProblem::expired;
  if (contains(error_text, "not yet valid")) return TlsProblem::not_yet_valid;
  if (contains(error_text, "self-signed") || contains(error_text, "self signed") ||
      contains(error_text, "local issuer") || contains(error_text, "unable to get issuer")) {
    return TlsProblem::unknown_ca;
  }
  return TlsProblem::other;
}

std::string failure_message(const TransferFailure& f) {
  const std::string target = fmt::format("{}:{}", f.host, f.port);
  switch (f.code) {
    case CURLE_COULDNT_CONNECT:
      if (f.os_errno == ECONNREFUSED) return fmt::format("connection refused by {}", target);
      if (f.os_errno != 0) {
        return fmt::format("connect {}: {}", target, std::strerror(static_cast<int>(f.os_errno)));
      }
      return fmt::format("cannot connect to {}{}", target, tls_detail(f.error_text));
    case CURLE_OPERATION_TIMEDOUT:
      return fmt::format("timed out after {}{}", format_duration(f.timeout),
                         tls_detail(f.error_text));
    case CURLE_COULDNT_RESOLVE_HOST:
      return fmt::format("DNS: cannot resolve host {}{}", f.host, tls_detail(f.error_text));
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CONNECT_ERROR:
      if (f.code == CURLE_SSL_CACERT_BADFILE) {
        return fmt::format("TLS: cannot use the CA file{}", tls_detail(f.error_text));
      }
      switch (classify_tls_failure(f.verify_result, f.error_text)) {
        case TlsProblem::expired: return fmt::format("TLS: certificate of {} has expired", target);
        case TlsProblem::not_yet_valid:
          return fmt::format("TLS: certificate of {} is not yet valid", target);
        case TlsProblem::wrong_host:
          return fmt::format("TLS: wrong host: the certificate of {} is for another name{}", target,
                             tls_detail(f.error_text));
        case TlsProblem::unknown_ca:
          return fmt::format("TLS: unknown CA: the certificate of {} is not from a trusted CA{}",
                             target, tls_detail(f.error_text));
        case TlsProblem::other: break;
      }
      return fmt::format("TLS handshake with {} failed{}", target, tls_detail(f.error_text));
    case CURLE_GOT_NOTHING:
      return fmt::format("{} closed the connection without answering", target);
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
      return fmt::format("connection to {} broken{}", target, tls_detail(f.error_text));
    default: break;
  }
  return fmt::format("{}: {}", curl_easy_strerror(f.code),
                     f.error_text.empty() ? target : f.error_text);
}

}  // namespace storewatch::os::http
