#include "sync/notifier.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "base/log.h"
#include "os/curl_multi.h"

namespace storewatch::sync {

namespace asio = boost::asio;
using json = nlohmann::json;

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {

constexpr int kDueBatch = 64;
constexpr std::int64_t kPollMs = 60'000;  // look again at least this often
constexpr std::int64_t kHourMs = 3'600'000;
constexpr std::size_t kMaxResponse = 64 * 1024;

/// One transfer: the easy handle and everything it points at.
struct Transfer {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  curl_slist* recipients = nullptr;
  std::string request;
  std::size_t read_at = 0;  // email upload position
  std::string response;
  bool response_cut = false;  ///< the answer went past kMaxResponse: the rest is not read
  std::string retry_after;
  char error[CURL_ERROR_SIZE] = {};
  bool email = false;
  bool active = false;
  asio::io_context* io = nullptr;

  ~Transfer() {
    // A transfer still active here is one the multi handle dropped at
    // shutdown: curl_easy_cleanup detaches it.
    if (easy != nullptr) curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    curl_slist_free_all(recipients);
  }
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* self) {
  auto* t = static_cast<Transfer*>(self);
  const std::size_t len = size * n;
  if (t->response.size() + len > kMaxResponse) {
    // An answer this long is not a receiver's: stop reading (an endless one
    // would take the transfer to its timeout); the status line decides.
    t->response.append(data, kMaxResponse - t->response.size());
    t->response_cut = true;
    return 0;
  }
  t->response.append(data, len);
  return len;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* self) {
  auto* t = static_cast<Transfer*>(self);
  const std::size_t len = size * n;
  std::string_view line(data, len);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    std::string head(line.substr(0, kName.size()));
    std::transform(head.begin(), head.end(), head.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (head == kName) t->retry_after = std::string(line.substr(kName.size()));
  }
  return len;
}

std::size_t on_read(char* buffer, std::size_t size, std::size_t n, void* self) {
  auto* t = static_cast<Transfer*>(self);
  const std::size_t len = std::min(size * n, t->request.size() - t->read_at);
  std::memcpy(buffer, t->request.data() + t->read_at, len);
  t->read_at += len;
  return len;
}

bool common_options(Transfer& t, const config::NotifyConfig& c, const std::string& url) {
  const long timeout_ms = std::max<long>(1, static_cast<long>(c.timeout.count()));
  CURL* e = t.easy;
  bool ok = curl_easy_setopt(e, CURLOPT_URL, url.c_str()) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
  curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);  // older libcurl lacks it: not an error
  ok = ok && curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_USERAGENT, "storewatch") == CURLE_OK;
  // A configured proxy, else libcurl's usual environment (https_proxy, no_proxy).
  if (!c.proxy.empty()) ok = ok && curl_easy_setopt(e, CURLOPT_PROXY, c.proxy.c_str()) == CURLE_OK;
  if (!c.ca_file.empty()) {
    ok = ok && curl_easy_setopt(e, CURLOPT_CAINFO, c.ca_file.c_str()) == CURLE_OK;
  }
  ok = ok && curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_WRITEDATA, &t) == CURLE_OK;
  return ok;
}

bool http_options(Transfer& t, const config::NotifyConfig& c, const ChannelSecrets& s,
                  const std::vector<json>& notices) {
  HttpRequest r = http_request(c, s, notices);
  t.request = std::move(r.body);
  for (const std::string& h : r.headers) t.headers = curl_slist_append(t.headers, h.c_str());
  CURL* e = t.easy;
  bool ok = common_options(t, c, s.url);
  ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDS, t.request.c_str()) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                              static_cast<curl_off_t>(t.request.size())) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.headers) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &on_header) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_HEADERDATA, &t) == CURLE_OK;
  return ok;
}

bool email_options(Transfer& t, const config::NotifyConfig& c, const ChannelSecrets& s,
                   const std::vector<json>& notices) {
  t.email = true;
  const std::int64_t now = wall_ms();
  t.request = email_message(c, notices, std::chrono::system_clock::now(),
                            fmt::format("{}.{}", now, reinterpret_cast<std::uintptr_t>(&t)));
  for (const std::string& to : c.to) {
    t.recipients = curl_slist_append(t.recipients, fmt::format("<{}>", to).c_str());
  }
  CURL* e = t.easy;
  bool ok = common_options(t, c, c.smtp_url);
  ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps") == CURLE_OK;
  const std::string from = fmt::format("<{}>", c.from);
  ok = ok && curl_easy_setopt(e, CURLOPT_MAIL_FROM, from.c_str()) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_MAIL_RCPT, t.recipients) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_UPLOAD, 1L) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_READFUNCTION, &on_read) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_READDATA, &t) == CURLE_OK;
  ok = ok && curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
                              static_cast<curl_off_t>(t.request.size())) == CURLE_OK;
  if (c.smtp_url.starts_with("smtp://")) {
    const long use_ssl = c.starttls == "required"   ? CURLUSESSL_ALL
                         : c.starttls == "optional" ? CURLUSESSL_TRY
                                                    : CURLUSESSL_NONE;
    ok = ok && curl_easy_setopt(e, CURLOPT_USE_SSL, use_ssl) == CURLE_OK;
  }
  if (!c.username.empty()) {
    ok = ok && curl_easy_setopt(e, CURLOPT_USERNAME, c.username.c_str()) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_PASSWORD, s.password.c_str()) == CURLE_OK;
  }
  return ok;
}

Outcome outcome_of(const Transfer& t, const config::NotifyConfig& c, const ChannelSecrets& s,
                   CURLcode rc) {
  long status = 0;
  curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
  Outcome o;
  if (t.email) {
    if (rc == CURLE_OK) {
      o.kind = Outcome::Kind::sent;
      o.detail = fmt::format("SMTP {}", status);
    } else {
      o.kind = status >= 500 ? Outcome::Kind::fatal : Outcome::Kind::retry;
      o.detail = scrub(fmt::format("{}{}", t.error[0] != 0 ? t.error : curl_easy_strerror(rc),
                                   status != 0 ? fmt::format(" (SMTP {})", status) : ""),
                       s);
    }
    return o;
  }
  if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && t.response_cut && status != 0)) {
    o.kind = Outcome::Kind::retry;
    o.detail = scrub(t.error[0] != 0 ? std::string(t.error) : curl_easy_strerror(rc), s);
    return o;
  }
  o = classify_http(c.type, status, t.response,
                    parse_retry_after(t.retry_after, std::chrono::system_clock::now()));
  o.detail = scrub(std::move(o.detail), s);
  return o;
}

}  // namespace

std::function<void()> send_notice(asio::io_context& io, const config::NotifyConfig& channel,
                                  const ChannelSecrets& secrets, const std::vector<json>& notices,
                                  std::function<void(Outcome)> done) {
  auto t = std::make_shared<Transfer>();
  t->io = &io;
  t->easy = curl_easy_init();
  const bool ok = t->easy != nullptr && (channel.type == config::NotifyType::email
                                             ? email_options(*t, channel, secrets, notices)
                                             : http_options(*t, channel, secrets, notices));
  const auto fail_soon = [&io, &done](std::string why) {
    asio::post(io, [done = std::move(done), why = std::move(why)] {
      done(Outcome{Outcome::Kind::retry, why, std::nullopt});
    });
    return [] {};
  };
  if (!ok) return fail_soon("libcurl refused the request options");
  // The completion owns the transfer; the cancel function only holds it weakly.
  std::weak_ptr<Transfer> weak = t;
  auto cfg = std::make_shared<const config::NotifyConfig>(channel);
  auto sec = std::make_shared<const ChannelSecrets>(secrets);
  t->active =
      os::CurlMulti::of(io.get_executor()).add(t->easy, [t, cfg, sec, done](CURLcode rc) mutable {
        t->active = false;
        Outcome o = outcome_of(*t, *cfg, *sec, rc);
        auto keep = std::move(t);  // freed after done, on this stack
        done(std::move(o));
      });
  if (!t->active) return fail_soon("libcurl refused the transfer");
  return [weak, &io] {
    if (auto t = weak.lock(); t && t->active) {
      os::CurlMulti::of(io.get_executor()).remove(t->easy);
      t->active = false;
    }
  };
}

std::string_view group_class(std::string_view kind) {
  if (kind == "opened" || kind == "escalated" || kind == "flapping_started") return "problem";
  if (kind == "resolved" || kind == "flapping_stopped") return "recovery";
  return kind;
}

std::vector<std::size_t> group_members(const std::vector<Notice>& queued, std::int64_t now_ms,
                                       std::int64_t ttl_ms, const std::set<std::int64_t>& skip) {
  std::vector<std::size_t> out;
  if (queued.empty()) return out;
  out.push_back(0);
  const std::string_view cls = group_class(queued.front().kind);
  std::set<std::string_view> left_out;  // incidents with an earlier notice not in the group
  for (std::size_t i = 1; i < queued.size() && out.size() < kMaxGroup; ++i) {
    const Notice& n = queued[i];
    if (skip.contains(n.id)) continue;  // sent or dropped: not in the queue any more
    if (group_class(n.kind) == cls && n.created_ms <= now_ms && now_ms - n.created_ms <= ttl_ms &&
        !left_out.contains(n.incident_uid)) {
      out.push_back(i);
    } else {
      left_out.insert(n.incident_uid);
    }
  }
  return out;
}

Notifier::Notifier(asio::io_context& io, const config::Config& config, NotifyOutbox& outbox)
    : io_(io), outbox_(outbox), timer_(io) {
  for (const config::NotifyConfig& n : config.notify) {
    Channel c;
    c.config = &n;
    if (auto s = load_secrets(n)) {
      c.secrets = std::move(*s);
    } else {
      c.secret_error = s.error().message;
      log::error("notify {}: {}; its notices stay queued", n.name, c.secret_error);
    }
    channels_.emplace(n.name, std::move(c));
  }
}

Notifier::~Notifier() {
  stop();
  *alive_ = false;
}

void Notifier::start() {
  // The rate_limit window survives restarts: the last hour's sends, from the outbox.
  const std::int64_t now = wall_ms();
  for (auto& [name, c] : channels_) {
    if (c.config->rate_limit <= 0) continue;
    if (auto sent = outbox_.sent_since(name, now - kHourMs)) {
      c.sent_ms.assign(sent->begin(), sent->end());
    } else {
      log::warn("notify {}: reading its last hour of sends: {}", name, sent.error().message);
    }
  }
  stopped_ = false;
  kick();
}

void Notifier::stop() {
  if (stopped_) return;
  stopped_ = true;
  timer_.cancel();
  for (auto& [name, c] : channels_) {
    if (c.cancel) c.cancel();
    c.cancel = nullptr;
    c.busy = false;
  }
}

void Notifier::kick() {
  if (stopped_ || pass_posted_) return;
  pass_posted_ = true;
  asio::post(io_, [this, alive = alive_] {
    if (!*alive) return;
    pass_posted_ = false;
    if (!stopped_) pass();
  });
}

void Notifier::pass() {
  const std::int64_t now = wall_ms();
  auto due = outbox_.due(now, kDueBatch);
  if (!due) {
    log::error("notify: reading the outbox: {}", due.error().message);
    arm(now + 5'000);
    return;
  }
  // A channel's oldest queued notice is returned when due: its older notices
  // in done_ are committed as sent or dropped.
  for (const Notice& n : *due) {
    std::erase_if(done_, [&](const auto& d) { return d.second == n.channel && d.first < n.id; });
  }
  for (const Notice& n : *due) {
    if (done_.contains(n.id)) continue;
    auto it = channels_.find(n.channel);
    if (it == channels_.end()) {
      drop(n, fmt::format("channel \"{}\" is no longer configured", n.channel));
      continue;
    }
    Channel& c = it->second;
    if (now - n.created_ms > c.config->notify_ttl.count()) {
      drop(n, fmt::format("not delivered within notify_ttl {} after {} attempts",
                          format_duration(c.config->notify_ttl), n.attempts));
      continue;
    }
    if (c.busy || now < c.blocked_until_ms) continue;
    if (c.config->rate_limit > 0) {
      while (!c.sent_ms.empty() && c.sent_ms.front() <= now - kHourMs) c.sent_ms.pop_front();
      if (c.sent_ms.size() >= static_cast<std::size_t>(c.config->rate_limit)) {
        c.blocked_until_ms = c.sent_ms.front() + kHourMs;
        continue;
      }
    }
    attempt(c, n, now);
  }
  // Next wake: the next queued notice, or a channel's backoff ending.
  std::int64_t wake = now + kPollMs;
  if (auto next = outbox_.next_due(); next && *next && **next > now) wake = std::min(wake, **next);
  for (const auto& [name, c] : channels_) {
    if (c.blocked_until_ms > now) wake = std::min(wake, c.blocked_until_ms);
  }
  arm(wake);
}

void Notifier::arm(std::int64_t wake_ms) {
  if (stopped_) return;
  timer_at_ms_ = wake_ms;
  timer_.expires_after(std::chrono::milliseconds(std::max<std::int64_t>(0, wake_ms - wall_ms())));
  timer_.async_wait([this, alive = alive_](const boost::system::error_code& e) {
    if (e || !*alive || stopped_) return;
    pass();
  });
}

void Notifier::attempt(Channel& c, const Notice& head, std::int64_t now) {
  std::vector<Notice> group{head};
  if (c.config->group_wait.count() > 0) {
    // Everything queued behind the head may join it (group_members says which).
    constexpr int kScan = 200;
    auto queued = outbox_.queued(c.config->name, kScan);
    if (!queued) {
      log::warn("notify {}: reading its queue: {}; sending one notice", c.config->name,
                queued.error().message);
    } else if (!queued->empty() && queued->front().id == head.id) {
      std::set<std::int64_t> queued_ids, skip;
      for (const Notice& n : *queued) queued_ids.insert(n.id);
      const bool whole = queued->size() < static_cast<std::size_t>(kScan);
      std::erase_if(done_, [&](const auto& d) {
        return d.second == c.config->name && whole && !queued_ids.contains(d.first);
      });
      for (const auto& [id, channel] : done_) {
        if (channel == c.config->name) skip.insert(id);
      }
      group.clear();
      for (std::size_t i : group_members(*queued, now, c.config->notify_ttl.count(), skip)) {
        group.push_back(std::move((*queued)[i]));
      }
    }
  }
  if (!c.secrets) {
    finished(c, group, Outcome{Outcome::Kind::retry, c.secret_error, std::nullopt});
    return;
  }
  std::vector<json> notices;
  std::vector<Notice> members;
  for (Notice& n : group) {
    json notice = json::parse(n.body, nullptr, /*allow_exceptions=*/false);
    if (notice.is_discarded()) {
      drop(n, "the stored notice is not valid JSON");
      continue;
    }
    notices.push_back(std::move(notice));
    members.push_back(std::move(n));
  }
  if (members.empty()) return;
  c.busy = true;
  const std::string name = c.config->name;
  c.cancel = send_notice(io_, *c.config, *c.secrets, notices,
                         [this, alive = alive_, name, members](Outcome o) {
                           if (!*alive) return;
                           auto it = channels_.find(name);
                           if (it == channels_.end()) return;
                           it->second.busy = false;
                           it->second.cancel = nullptr;
                           if (stopped_) return;  // stays queued, sent after a restart
                           finished(it->second, members, o);
                         });
}

void Notifier::finished(Channel& c, const std::vector<Notice>& group, const Outcome& o) {
  const std::int64_t now = wall_ms();
  const Notice& head = group.front();
  const std::string what =
      group.size() == 1 ? fmt::format("{} notice of incident {}", head.kind, head.incident_uid)
                        : fmt::format("group of {} notices (first: {} of incident {})",
                                      group.size(), head.kind, head.incident_uid);
  switch (o.kind) {
    case Outcome::Kind::sent:
      stats_.sent += group.size();
      c.sent_ms.push_back(now);  // one message, one rate_limit slot
      c.blocked_until_ms = 0;
      log::info("notify {}: {} sent ({})", c.config->name, what, o.detail);
      for (const Notice& n : group) {
        done_.emplace(n.id, n.channel);
        outbox_.update(
            NoticeUpdate{n.id, NoticeState::sent, n.attempts + 1, n.next_try_ms, {}, now});
      }
      break;
    case Outcome::Kind::retry: {
      ++stats_.failed_attempts;
      stats_.last_error = fmt::format("{}: {}", c.config->name, o.detail);
      const auto delay = retry_delay(head.attempts + 1, o.retry_after);
      c.blocked_until_ms = now + delay.count();
      log::warn("notify {}: {} failed (attempt {}): {}; next try in {}", c.config->name, what,
                head.attempts + 1, o.detail,
                format_duration(std::chrono::duration_cast<Millis>(delay)));
      for (const Notice& n : group) {
        outbox_.update(NoticeUpdate{n.id, NoticeState::queued, n.attempts + 1, c.blocked_until_ms,
                                    o.detail, now});
      }
      break;
    }
    case Outcome::Kind::fatal: {
      ++stats_.failed_attempts;
      stats_.last_error = fmt::format("{}: {}", c.config->name, o.detail);
      for (const Notice& n : group) {
        Notice tried = n;
        tried.attempts = n.attempts + 1;
        drop(tried, fmt::format("refused by the receiver: {}", o.detail));
      }
      break;
    }
  }
  kick();
}

void Notifier::drop(const Notice& n, const std::string& why) {
  ++stats_.dropped;
  done_.emplace(n.id, n.channel);
  log::error("notify {}: {} notice of incident {} dropped: {}", n.channel, n.kind, n.incident_uid,
             why);
  outbox_.dropped(n, why);
  outbox_.update(
      NoticeUpdate{n.id, NoticeState::dropped, n.attempts, n.next_try_ms, why, wall_ms()});
}

}  // namespace storewatch::sync
