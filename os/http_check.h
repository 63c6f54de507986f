#pragma once
/// \file
/// What an HTTP transfer's outcome means, for the `http` probe and `http`
/// remediations alike, with no network here: the certificate's expiry date
/// as libcurl reports it, and a failed transfer as a message that says which
/// failure it was.

#include <curl/curl.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "base/duration.h"

namespace storewatch::os::http {

/// Parses a certificate time as OpenSSL prints it (ASN1_TIME_print), which
/// is what libcurl's CERTINFO "Expire date" holds with the OpenSSL backend:
/// "Mar  5 12:00:00 2026 GMT", fractional seconds allowed. nullopt if the
/// text is not in that form.
std::optional<std::chrono::system_clock::time_point> parse_cert_time(std::string_view text);

/// Whole days from `now` until `expiry`, rounded down: 0 on the last day,
/// negative once it has passed.
int days_left(std::chrono::system_clock::time_point expiry,
              std::chrono::system_clock::time_point now);

/// Why a certificate was refused.
enum class TlsProblem { expired, not_yet_valid, wrong_host, unknown_ca, other };

/// Classifies a CURLE_PEER_FAILED_VERIFICATION (or CURLE_SSL_CACERT): by
/// the X509_V_ERR_* code from CURLINFO_SSL_VERIFYRESULT when there is one,
/// else by curl's error text (the host name check is curl's own and leaves
/// the verify result at X509_V_OK).
TlsProblem classify_tls_failure(long verify_result, std::string_view error_text);

/// What a failed transfer tells us.
struct TransferFailure {
  CURLcode code = CURLE_OK;
  long verify_result = 0;  ///< CURLINFO_SSL_VERIFYRESULT
  long os_errno = 0;       ///< CURLINFO_OS_ERRNO
  std::string error_text;  ///< CURLOPT_ERRORBUFFER (may be empty)
  std::string host;        ///< from the url
  long port = 0;           ///< from the url (scheme default filled in)
  Millis timeout{0};
};

/// One line saying which failure it was: refused, timed out, DNS, each TLS
/// problem, or curl's own words for the rest.
std::string failure_message(const TransferFailure& f);

}  // namespace storewatch::os::http
