#include "agent/remediation_runner.h"

#include <curl/curl.h>
#include <systemd/sd-bus.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string_view>
#include <utility>

#include "base/duration.h"
#include "os/curl_multi.h"
#include "os/http_check.h"
#include "os/process.h"
#include "os/system_bus.h"
#include "probes/systemd_unit.h"

namespace storewatch::agent {
namespace {

namespace asio = boost::asio;
using std::chrono::steady_clock;

/// Output an exec action may write, kept or not, before its group is killed. Far above what a
/// chatty repair tool prints (killing a repair half-way is worse than reading its log), low
/// enough that `yes` as a command costs the loop a fraction of a second.
constexpr std::size_t kExecDrainLimit = 64 * 1024 * 1024;

/// JobRemoved signals remembered while RestartUnit's reply is still on its way.
constexpr std::size_t kEarlyJobsKept = 256;

constexpr const char* kSystemd = "org.freedesktop.systemd1";
constexpr const char* kManagerPath = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";
constexpr const char* kJobRemovedRule =
    "type='signal',sender='org.freedesktop.systemd1',path='/org/freedesktop/systemd1',"
    "interface='org.freedesktop.systemd1.Manager',member='JobRemoved'";

/// sd-bus's own deadline for RestartUnit's reply, a backstop past the action's timeout.
constexpr std::chrono::microseconds kReplyGrace = std::chrono::seconds(1);

struct EasyDeleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};

/// One running action. Shared by the runner and the completions of what it waits on, so a
/// completion that outlives the runner finds it (and sees `finished`).
struct Action {
  std::uint64_t id = 0;
  std::function<void(ActionOutcome)> done;
  steady_clock::time_point started;
  bool finished = false;

  // exec
  os::Process process;

  // systemd-restart
  os::BusSlot match;
  os::BusSlot call;
  std::optional<asio::steady_timer> deadline;
  std::string job;                                   ///< the job's path, once systemd replied
  std::map<std::string, std::string> early_results;  ///< JobRemoved before the reply: path → result

  // http
  std::unique_ptr<CURL, EasyDeleter> easy;
  char error[CURL_ERROR_SIZE] = {};
  std::string body;
  bool body_truncated = false;
};

ActionOutcome failed(std::string detail) {
  ActionOutcome o;
  o.ok = false;
  o.detail = std::move(detail);
  return o;
}

/// stdout, then stderr, cut at kActionOutputKept.
void keep_output(const os::ProcessResult& r, ActionOutcome& o) {
  o.output = r.out;
  o.output += r.err;
  o.output_truncated = r.out_truncated || r.err_truncated || o.output.size() > kActionOutputKept;
  if (o.output.size() > kActionOutputKept) o.output.resize(kActionOutputKept);
}

ActionOutcome exec_outcome(const config::RemediationConfig& c, const os::ProcessResult& r) {
  using Outcome = os::ProcessResult::Outcome;
  using SpawnError = os::ProcessResult::SpawnError;
  ActionOutcome o;
  switch (r.outcome) {
    case Outcome::exited:
      o.exit_code = r.exit_code;
      o.ok = r.exit_code == 0;
      o.detail = fmt::format("exit {}", r.exit_code);
      break;
    case Outcome::signalled: o.detail = r.describe(); break;
    case Outcome::timed_out:
      o.detail = fmt::format("timed out after {}, killed", format_duration(c.timeout));
      break;
    case Outcome::flooded:
      o.detail = fmt::format("output over {} MB, killed", kExecDrainLimit / (1024 * 1024));
      break;
    case Outcome::spawn_failed: {
      const std::string& name = c.command.empty() ? std::string() : c.command.front();
      if (name.empty()) {
        o.detail = "empty command";
      } else if (r.spawn_error == SpawnError::not_found &&
                 r.error.find("interpreter") == std::string::npos) {
        o.detail = fmt::format("not found: {}", name);
      } else if (r.spawn_error == SpawnError::not_executable) {
        o.detail = fmt::format("not executable: {}", r.error);
      } else {
        o.detail = r.error;
      }
      return o;
    }
  }
  keep_output(r, o);
  return o;
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* a = static_cast<Action*>(user);
  const std::size_t n = size * count;
  const std::size_t room = kActionOutputKept - std::min(kActionOutputKept, a->body.size());
  if (n <= room) {
    a->body.append(data, n);
    return n;
  }
  // The answer's status is in; reading an endless body on would only cost
  // the loop until the timeout. Keep what is kept and stop the transfer.
  a->body.append(data, room);
  a->body_truncated = true;
  return 0;
}

bool is_method(std::string_view m) {
  return !m.empty() && m.size() <= 16 &&
         std::all_of(m.begin(), m.end(), [](char ch) { return ch >= 'A' && ch <= 'Z'; });
}

class Runner final : public RemediationRunner {
 public:
  explicit Runner(asio::io_context& io) : io_(io) {}

  ~Runner() override {
    for (auto& [id, a] : running_) {
      a->done = nullptr;
      a->finished = true;
      release(*a);
      a->match.reset();
      a->call.reset();
    }
  }

  void run(const config::RemediationConfig& r, std::function<void(ActionOutcome)> done) override {
    auto a = std::make_shared<Action>();
    a->id = ++next_id_;
    a->done = std::move(done);
    a->started = steady_clock::now();
    running_[a->id] = a;
    switch (r.type) {
      case config::RemediationType::exec: return run_exec(a, r);
      case config::RemediationType::systemd_restart: return run_systemd(a, r);
      case config::RemediationType::http: return run_http(a, r);
    }
    finish(a, failed("unknown remediation type"));
  }

  void stop() override {
    auto running = running_;
    for (auto& [id, a] : running) finish(a, failed("cancelled"));
  }

 private:
  using ActionPtr = std::shared_ptr<Action>;

  // --- exec -------------------------------------------------------------------------------

  void run_exec(const ActionPtr& a, const config::RemediationConfig& c) {
    os::ProcessSpec spec;
    spec.argv = c.command;
    spec.timeout = c.timeout;
    spec.output_cap = kActionOutputKept;
    spec.drain_limit = kExecDrainLimit;
    a->process =
        os::Process::start(io_.get_executor(), std::move(spec),
                           [this, a, c](os::ProcessResult r) { finish(a, exec_outcome(c, r)); });
  }

  // --- systemd-restart --------------------------------------------------------------------

  void run_systemd(const ActionPtr& a, const config::RemediationConfig& c) {
    auto unit = probes::unit_name(c.unit);
    if (!unit) return finish(a, failed(unit.error().message));
    auto& service = os::SystemBus::of(io_.get_executor());
    auto bus = service.bus();
    if (!bus)
      return finish(a, failed(fmt::format("system bus unavailable: {}", bus.error().message)));

    a->deadline.emplace(io_);
    a->deadline->expires_after(c.timeout);
    a->deadline->async_wait([this, weak = std::weak_ptr<Action>(a),
                             timeout = c.timeout](const boost::system::error_code& ec) {
      auto a = weak.lock();
      if (ec || !a || a->finished) return;
      finish(a, failed(a->job.empty()
                           ? fmt::format("timed out after {} waiting for systemd to take the job",
                                         format_duration(timeout))
                           : fmt::format("timed out after {} waiting for job {} to finish",
                                         format_duration(timeout), a->job)));
    });

    // The match goes first: JobRemoved may come before RestartUnit's reply.
    std::weak_ptr<Action> weak = a;
    auto match = service.match(
        *bus, kJobRemovedRule, [this, weak](sd_bus_message* signal, const sd_bus_error* error) {
          auto a = weak.lock();
          if (!a || a->finished) return;
          if (error != nullptr) {
            return finish(a, failed(fmt::format("cannot watch systemd's jobs: {}",
                                                error->message ? error->message : error->name)));
          }
          std::uint32_t id = 0;
          const char* path = nullptr;
          const char* unit = nullptr;
          const char* result = nullptr;
          if (sd_bus_message_read(signal, "uoss", &id, &path, &unit, &result) < 0) return;
          if (a->job.empty()) {
            if (a->early_results.size() < kEarlyJobsKept) a->early_results[path] = result;
          } else if (a->job == path) {
            finish_job(a, result);
          }
        });
    if (!match) {
      return finish(a, failed(fmt::format("system bus unavailable: {}", match.error().message)));
    }
    a->match = std::move(*match);

    sd_bus_message* raw = nullptr;
    int r =
        sd_bus_message_new_method_call(*bus, &raw, kSystemd, kManagerPath, kManager, "RestartUnit");
    os::BusMessage m(raw);
    if (r >= 0) r = sd_bus_message_append(m.get(), "ss", unit->c_str(), "replace");
    if (r < 0) {
      return finish(a, failed(fmt::format("system bus unavailable: {}", std::strerror(-r))));
    }
    const auto reply_timeout =
        std::chrono::duration_cast<std::chrono::microseconds>(c.timeout) + kReplyGrace;
    auto call = service.call(
        m.get(), reply_timeout,
        [this, weak, bus = *bus, unit = *unit](sd_bus_message* reply, const sd_bus_error* error) {
          auto a = weak.lock();
          if (!a || a->finished) return;
          if (error != nullptr) return finish(a, failed(bus_error(bus, unit, *error)));
          const char* path = nullptr;
          if (int r = sd_bus_message_read(reply, "o", &path); r < 0) {
            return finish(a, failed(fmt::format("malformed RestartUnit reply from systemd: {}",
                                                std::strerror(-r))));
          }
          a->job = path;
          auto early = a->early_results.find(a->job);
          if (early != a->early_results.end()) return finish_job(a, early->second);
          a->early_results.clear();
        });
    if (!call) {
      return finish(a, failed(fmt::format("system bus unavailable: {}", call.error().message)));
    }
    a->call = std::move(*call);
  }

  void finish_job(const ActionPtr& a, const std::string& result) {
    ActionOutcome o;
    o.ok = result == "done";
    o.detail = fmt::format("job {}", result);
    finish(a, std::move(o));
  }

  std::string bus_error(sd_bus* bus, const std::string& unit, const sd_bus_error& e) {
    const std::string_view name = e.name != nullptr ? e.name : "";
    const std::string_view message = e.message != nullptr ? e.message : "";
    if (!os::SystemBus::of(io_.get_executor()).connected(bus)) {
      return fmt::format("system bus unavailable: {}", message.empty() ? name : message);
    }
    if (name == "org.freedesktop.systemd1.NoSuchUnit") {
      return fmt::format("unit not found: {}: {}", unit, message);
    }
    if (name == SD_BUS_ERROR_ACCESS_DENIED ||
        name == SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED) {
      return fmt::format("access denied: {}", message.empty() ? name : message);
    }
    return fmt::format("{}: {}", name, message);
  }

  // --- http -------------------------------------------------------------------------------

  void run_http(const ActionPtr& a, const config::RemediationConfig& c) {
    std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), &curl_url_cleanup);
    std::string host;
    long port = 0;
    if (!u) return finish(a, failed("out of memory"));
    if (CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, c.url.c_str(), 0); rc != CURLUE_OK) {
      return finish(
          a, failed(fmt::format("url \"{}\" is not a URL ({})", c.url, curl_url_strerror(rc))));
    }
    char* part = nullptr;
    if (curl_url_get(u.get(), CURLUPART_HOST, &part, 0) == CURLUE_OK) {
      host = part;
      curl_free(part);
    }
    if (curl_url_get(u.get(), CURLUPART_PORT, &part, CURLU_DEFAULT_PORT) == CURLUE_OK) {
      port = std::atol(part);
      curl_free(part);
    }
    if (!is_method(c.method)) {
      return finish(a, failed(fmt::format("method \"{}\" is not an HTTP method", c.method)));
    }

    a->easy.reset(curl_easy_init());
    if (!a->easy || !configure(*a, c)) {
      return finish(a, failed("cannot set up the request (libcurl)"));
    }
    os::http::TransferFailure where;
    where.host = host;
    where.port = port;
    where.timeout = c.timeout;
    const int expect = c.expect_status;
    if (!os::CurlMulti::of(io_.get_executor())
             .add(a->easy.get(), [this, a, where, expect](CURLcode code) mutable {
               if (a->finished) return;
               finish(a, http_outcome(*a, code, std::move(where), expect));
             })) {
      finish(a, failed("libcurl refused the request"));
    }
  }

  static bool configure(Action& a, const config::RemediationConfig& c) {
    CURL* e = a.easy.get();
    bool ok = os::set_request_options(e, c.url, c.timeout, a.error, &on_body, &a);
    if (c.method == "HEAD") {
      ok = ok && curl_easy_setopt(e, CURLOPT_NOBODY, 1L) == CURLE_OK;
    } else if (c.method == "GET") {
      ok = ok && curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
    } else {
      // Any other method sends an empty body, so a server gets Content-Length: 0.
      ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L) == CURLE_OK;
      ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDS, "") == CURLE_OK;
      if (c.method != "POST") {
        ok = ok && curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c.method.c_str()) == CURLE_OK;
      }
    }
    return ok;
  }

  static ActionOutcome http_outcome(Action& a, CURLcode code, os::http::TransferFailure f,
                                    int expect) {
    CURL* e = a.easy.get();
    // Stopped by on_body past kActionOutputKept: the answer is complete enough.
    if (code == CURLE_WRITE_ERROR && a.body_truncated) code = CURLE_OK;
    if (code != CURLE_OK) {
      f.code = code;
      curl_easy_getinfo(e, CURLINFO_SSL_VERIFYRESULT, &f.verify_result);
      curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &f.os_errno);
      f.error_text = a.error;
      return failed(os::http::failure_message(f));
    }
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    ActionOutcome o;
    o.ok = status == expect;
    o.detail =
        o.ok ? fmt::format("HTTP {}", status) : fmt::format("HTTP {}, expected {}", status, expect);
    o.output = std::move(a.body);
    o.output_truncated = a.body_truncated;
    return o;
  }

  // --- common -----------------------------------------------------------------------------

  /// Frees what the action holds, except its bus slots: those may be the very slot whose
  /// handler is running now, so they go with the posted completion.
  void release(Action& a) {
    a.process.cancel();
    if (a.easy) {
      os::CurlMulti::of(io_.get_executor()).remove(a.easy.get());
      a.easy.reset();
    }
    if (a.deadline) a.deadline->cancel();
  }

  /// Ends the action once: frees what it holds and posts `done`.
  void finish(const ActionPtr& a, ActionOutcome o) {
    if (a->finished) return;
    a->finished = true;
    release(*a);
    running_.erase(a->id);
    o.took =
        std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - a->started);
    asio::post(io_, [a, o = std::move(o)]() mutable {
      a->match.reset();
      a->call.reset();
      auto done = std::move(a->done);
      a->done = nullptr;
      if (done) done(std::move(o));
    });
  }

  asio::io_context& io_;
  std::uint64_t next_id_ = 0;
  std::map<std::uint64_t, ActionPtr> running_;
};

}  // namespace

std::unique_ptr<RemediationRunner> make_remediation_runner(boost::asio::io_context& io) {
  return std::make_unique<Runner>(io);
}

}  // namespace storewatch::agent
