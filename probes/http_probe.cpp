#include "probes/http_probe.h"

#include <curl/curl.h>

#include <fmt/format.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <variant>

#include "os/curl_multi.h"
#include "os/http_check.h"

namespace storewatch::probes {
namespace {

namespace asio = boost::asio;

/// The largest max_body: a health check reads a status, not a download.
constexpr std::int64_t kMaxBodyLimit = std::int64_t{64} << 20;

constexpr config::KeySpec kKeys[] = {
    {"url", config::KeyKind::string, true, "", "http:// or https:// URL to request"},
    {"method", config::KeyKind::choice, false, "GET", "request method (POST sends an empty body)",
     "GET|HEAD|POST"},
    {"expect_status", config::KeyKind::integer, false, "200", "HTTP status the answer must have"},
    {"expect_body", config::KeyKind::string, false, "",
     "text the body must contain, within its first max_body bytes (empty: not checked)"},
    {"max_body", config::KeyKind::size, false, "64KB",
     "bytes of the body read at most; the transfer stops there and the check is made on what "
     "was read (1KB to 64MB)"},
    {"ca_file", config::KeyKind::file, false, "",
     "PEM file of the CAs to trust for https (default: the system's)"},
    {"insecure", config::KeyKind::boolean, false, "false",
     "https without verifying the certificate or host name"},
    {"cert_warn_days", config::KeyKind::integer, false, "21",
     "warn when the certificate expires in fewer days than this"},
};

struct UrlParts {
  std::string scheme;
  std::string host;
  long port = 0;
};

/// The url's scheme, host and port (default port filled in), or why not.
std::variant<UrlParts, std::string> parse_url(const std::string& url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), &curl_url_cleanup);
  if (!u) return std::string("out of memory");
  if (CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0); rc != CURLUE_OK) {
    return fmt::format("url \"{}\" is not a URL ({})", url, curl_url_strerror(rc));
  }
  UrlParts parts;
  auto get = [&](CURLUPart part, std::string& out, unsigned flags) {
    char* value = nullptr;
    if (curl_url_get(u.get(), part, &value, flags) != CURLUE_OK) return false;
    out = value;
    curl_free(value);
    return true;
  };
  std::string port;
  if (!get(CURLUPART_SCHEME, parts.scheme, 0)) return fmt::format("url \"{}\" has no scheme", url);
  if (!get(CURLUPART_HOST, parts.host, 0)) return fmt::format("url \"{}\" has no host", url);
  if (get(CURLUPART_PORT, port, CURLU_DEFAULT_PORT)) parts.port = std::atol(port.c_str());
  if (parts.host.size() > 2 && parts.host.front() == '[') {
    parts.host = parts.host.substr(1, parts.host.size() - 2);
  }
  return parts;
}

std::vector<std::string> validate(const config::ProbeConfig& p) {
  std::vector<std::string> problems;
  const std::string& url = p.str("url");
  if (url.find("://") == std::string::npos) {
    problems.push_back(fmt::format("url \"{}\" needs a scheme: http:// or https://", url));
  } else {
    auto parsed = parse_url(url);
    if (auto* why = std::get_if<std::string>(&parsed)) {
      problems.push_back(*why);
    } else if (auto& parts = std::get<UrlParts>(parsed);
               parts.scheme != "http" && parts.scheme != "https") {
      problems.push_back(
          fmt::format("url \"{}\": scheme \"{}\" is not http or https", url, parts.scheme));
    }
  }
  if (const auto s = p.integer("expect_status"); s < 100 || s > 599) {
    problems.push_back(fmt::format("expect_status {} is not an HTTP status (100..599)", s));
  }
  if (p.integer("cert_warn_days") < 0) problems.push_back("cert_warn_days must not be negative");
  if (p.integer("max_body") > kMaxBodyLimit) {
    problems.push_back(fmt::format(
        "max_body {} is above {}: a health check reads a status, not "
        "a download",
        config::format_size(p.integer("max_body")), config::format_size(kMaxBodyLimit)));
  }
  if (p.str("method") == "HEAD" && p.has("expect_body") && !p.str("expect_body").empty()) {
    problems.push_back("expect_body cannot be checked with method HEAD: the answer has no body");
  }
  return problems;
}

struct EasyDeleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};

// One check's state, shared with the multi handle's completion so the
// buffers curl writes into outlive the probe if need be.
struct Attempt {
  std::unique_ptr<CURL, EasyDeleter> easy;
  char error[CURL_ERROR_SIZE] = {};
  std::size_t max_body = 0;
  std::string body;  ///< what was read: at most max_body bytes
  /// The body went on past max_body: the transfer was stopped there (curl
  /// then reports CURLE_WRITE_ERROR, which is not a failure of the device).
  bool truncated = false;
  Probe::Done done;
};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* a = static_cast<Attempt*>(user);
  const std::size_t n = size * count;
  const std::size_t room = a->max_body - std::min(a->max_body, a->body.size());
  if (n <= room) {
    a->body.append(data, n);
    return n;
  }
  // An endless (or just long) body: reading it until the timeout would
  // cost a core. Keep what fits and stop the transfer.
  a->body.append(data, room);
  a->truncated = true;
  return 0;
}

double info_ms(CURL* easy, CURLINFO info) {
  curl_off_t us = 0;
  curl_easy_getinfo(easy, info, &us);
  return static_cast<double>(us) / 1000.0;
}

/// The leaf certificate's "Expire date" from CURLINFO_CERTINFO.
std::optional<std::chrono::system_clock::time_point> leaf_expiry(CURL* easy) {
  curl_certinfo* info = nullptr;
  if (curl_easy_getinfo(easy, CURLINFO_CERTINFO, &info) != CURLE_OK || info == nullptr ||
      info->num_of_certs < 1) {
    return std::nullopt;
  }
  constexpr std::string_view kField = "Expire date:";
  for (curl_slist* f = info->certinfo[0]; f != nullptr; f = f->next) {
    std::string_view line(f->data);
    if (line.substr(0, kField.size()) == kField) {
      return os::http::parse_cert_time(line.substr(kField.size()));
    }
  }
  return std::nullopt;
}

class HttpProbe final : public Probe {
 public:
  HttpProbe(const config::ProbeConfig& c, asio::any_io_executor ex)
      : url_(c.str("url")),
        method_(c.str("method")),
        expect_status_(c.integer("expect_status")),
        expect_body_(c.has("expect_body") ? c.str("expect_body") : std::string()),
        ca_file_(c.has("ca_file") ? c.str("ca_file") : std::string()),
        insecure_(c.boolean("insecure")),
        cert_warn_days_(c.integer("cert_warn_days")),
        max_body_(static_cast<std::size_t>(c.integer("max_body"))),
        timeout_(c.timeout),
        multi_(os::CurlMulti::of(ex)),
        ex_(std::move(ex)),
        parsed_(parse_url(url_)) {
    if (auto* parts = std::get_if<UrlParts>(&parsed_)) https_ = parts->scheme == "https";
  }

  ~HttpProbe() override { cancel(); }

  void start(Done done) override {
    auto a = std::make_shared<Attempt>();
    a->done = std::move(done);
    a->max_body = max_body_;
    attempt_ = a;
    if (auto* why = std::get_if<std::string>(&parsed_)) {
      fail_soon(a, *why);
      return;
    }
    a->easy.reset(curl_easy_init());
    if (!a->easy || !configure(*a)) {
      fail_soon(a, "cannot set up the request (libcurl)");
      return;
    }
    CURL* easy = a->easy.get();
    auto complete = [a, parts = std::get<UrlParts>(parsed_), s = settings()](CURLcode code) {
      finish(*a, code, parts, s);
    };
    if (!multi_.add(easy, std::move(complete))) {
      fail_soon(a, "libcurl refused the request");
    }
  }

  void cancel() override {
    if (auto a = attempt_.lock()) {
      a->done = nullptr;
      if (a->easy) multi_.remove(a->easy.get());
      a->easy.reset();
    }
  }

 private:
  /// What finish() needs of the probe, copied so it never touches `this`.
  struct Settings {
    std::string method;
    std::int64_t expect_status;
    std::string expect_body;
    bool https;
    bool insecure;
    std::int64_t cert_warn_days;
    Millis timeout;
    std::size_t max_body;
  };
  Settings settings() const {
    return {method_,   expect_status_,  expect_body_, https_,
            insecure_, cert_warn_days_, timeout_,     max_body_};
  }

  bool configure(Attempt& a) {
    CURL* e = a.easy.get();
    bool ok = os::set_request_options(e, url_, timeout_, a.error, &on_body, &a);
    // Every check opens its own connection: connect time is part of what
    // we measure, and a dead device must not hide behind a cached socket.
    ok = ok && curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L) == CURLE_OK;
    if (method_ == "HEAD") {
      ok = ok && curl_easy_setopt(e, CURLOPT_NOBODY, 1L) == CURLE_OK;
    } else if (method_ == "POST") {
      ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L) == CURLE_OK;
      ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDS, "") == CURLE_OK;
    }
    if (https_) {
      ok = ok && curl_easy_setopt(e, CURLOPT_CERTINFO, 1L) == CURLE_OK;
      ok = ok && curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, insecure_ ? 0L : 1L) == CURLE_OK;
      ok = ok && curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, insecure_ ? 0L : 2L) == CURLE_OK;
      if (!ca_file_.empty()) {
        ok = ok && curl_easy_setopt(e, CURLOPT_CAINFO, ca_file_.c_str()) == CURLE_OK;
      }
    }
    return ok;
  }

  // Reports a failure found before the transfer started, through the loop
  // as every result is.
  void fail_soon(const std::shared_ptr<Attempt>& a, std::string message) {
    a->easy.reset();
    asio::post(ex_, [a, message = std::move(message)] {
      if (!a->done) return;
      ProbeResult r;
      r.status = ProbeStatus::unknown;
      r.message = message;
      deliver_once(a->done, std::move(r));
    });
  }

  static void finish(Attempt& a, CURLcode code, const UrlParts& parts, const Settings& s) {
    if (!a.done || !a.easy) return;
    CURL* e = a.easy.get();
    ProbeResult r;
    const double total_ms = info_ms(e, CURLINFO_TOTAL_TIME_T);
    r.latency = std::chrono::microseconds(static_cast<std::int64_t>(total_ms * 1000.0));
    // Stopped by on_body at max_body: the answer is there, what was read of it.
    if (code == CURLE_WRITE_ERROR && a.truncated) code = CURLE_OK;
    if (code != CURLE_OK) {
      os::http::TransferFailure f;
      f.code = code;
      curl_easy_getinfo(e, CURLINFO_SSL_VERIFYRESULT, &f.verify_result);
      curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &f.os_errno);
      f.error_text = a.error;
      f.host = parts.host;
      f.port = parts.port;
      f.timeout = s.timeout;
      r.status = ProbeStatus::fail;
      r.message = os::http::failure_message(f);
    } else {
      long status = 0;
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
      const double connect_ms = info_ms(e, CURLINFO_CONNECT_TIME_T);
      r.metrics["status_code"] = static_cast<double>(status);
      r.metrics["total_ms"] = total_ms;
      r.metrics["connect_ms"] = connect_ms;
      r.metrics["ttfb_ms"] = info_ms(e, CURLINFO_STARTTRANSFER_TIME_T);
      r.metrics["body_bytes"] = static_cast<double>(a.body.size());
      if (a.truncated) r.metrics["body_truncated"] = 1;
      bool cut_said = !a.truncated;
      if (s.https) r.metrics["tls_ms"] = info_ms(e, CURLINFO_APPCONNECT_TIME_T) - connect_ms;
      std::optional<int> days;
      if (s.https) {
        if (auto expiry = leaf_expiry(e)) {
          days = os::http::days_left(*expiry, std::chrono::system_clock::now());
          r.metrics["cert_days_left"] = *days;
        }
      }
      if (status != s.expect_status) {
        r.status = ProbeStatus::fail;
        r.message = fmt::format("HTTP {}, expected {}", status, s.expect_status);
      } else if (!s.expect_body.empty() && a.body.find(s.expect_body) == std::string::npos) {
        r.status = ProbeStatus::fail;
        cut_said = true;
        r.message =
            a.truncated
                ? fmt::format("HTTP {} but the body's first {} (max_body) do not contain \"{}\"",
                              status, config::format_size(s.max_body), s.expect_body)
                : fmt::format("HTTP {} but the body does not contain \"{}\"", status,
                              s.expect_body);
      } else if (days && *days < 0) {
        // Only reachable with insecure = true: verification would refuse it.
        r.status = ProbeStatus::warn;
        r.message =
            fmt::format("HTTP {}; certificate expired {} days ago (not verified)", status, -*days);
      } else if (days && *days < s.cert_warn_days) {
        r.status = ProbeStatus::warn;
        r.message = fmt::format("HTTP {}; certificate expires in {} days (warn below {})", status,
                                *days, s.cert_warn_days);
      } else {
        r.status = ProbeStatus::ok;
        r.message = fmt::format("HTTP {} in {:.1f} ms", status, total_ms);
        if (days) r.message += fmt::format(", certificate valid {} more days", *days);
      }
      if (!cut_said)
        r.message += fmt::format("; body cut at {} (max_body)", config::format_size(s.max_body));
    }
    a.easy.reset();
    deliver_once(a.done, std::move(r));
  }

  std::string url_;
  std::string method_;
  std::int64_t expect_status_;
  std::string expect_body_;
  std::string ca_file_;
  bool insecure_;
  std::int64_t cert_warn_days_;
  std::size_t max_body_;
  Millis timeout_;
  os::CurlMulti& multi_;
  asio::any_io_executor ex_;
  std::variant<UrlParts, std::string> parsed_;
  bool https_ = false;
  std::weak_ptr<Attempt> attempt_;
};

std::unique_ptr<Probe> create_http(const config::ProbeConfig& c, asio::any_io_executor ex) {
  return std::make_unique<HttpProbe>(c, std::move(ex));
}

}  // namespace

ProbeType http_probe_type() {
  return {{"http", kKeys, &validate}, &create_http};
}

}  // namespace storewatch::probes
