#include "probes/icmp_probe.h"

#include <boost/asio/ip/icmp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "probes/attempt.h"
#include "probes/icmp_channel.h"

namespace storewatch::probes {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kMaxCount = 20;
constexpr Millis kMinEchoInterval{10};
constexpr Millis kMaxEchoInterval{10'000};
// Replies are awaited until this share of the timeout, so the check ends with
// its own "no reply" result before the scheduler's timeout cuts it off.
constexpr double kBudgetShare = 0.9;
// The least time the last echo may be given to come back.
constexpr Millis kMinWait{50};

constexpr config::KeySpec kKeys[] = {
    {"host", config::KeyKind::host, true, "", "host name or IP address (IPv4 or IPv6) to ping"},
    {"count", config::KeyKind::integer, false, "3", "echo requests per check, 1..20"},
    {"echo_interval", config::KeyKind::duration, false, "200ms",
     "time between the echo requests of one check, 10ms..10s"},
};

Millis budget_of(Millis timeout) {
  return Millis(static_cast<Millis::rep>(static_cast<double>(timeout.count()) * kBudgetShare));
}

std::vector<std::string> validate(const config::ProbeConfig& p) {
  std::vector<std::string> problems;
  const auto count = p.integer("count");
  const Millis spacing = p.duration("echo_interval");
  if (count < 1 || count > kMaxCount) {
    problems.push_back(fmt::format("count: {} is out of range 1..{}", count, kMaxCount));
  }
  if (spacing < kMinEchoInterval || spacing > kMaxEchoInterval) {
    problems.push_back(fmt::format("echo_interval: {} is out of range {}..{}",
                                   format_duration(spacing), format_duration(kMinEchoInterval),
                                   format_duration(kMaxEchoInterval)));
  }
  if (problems.empty() && (count - 1) * spacing + kMinWait > budget_of(p.timeout)) {
    problems.push_back(fmt::format(
        "{} echoes {} apart leave no time for replies within the timeout {}; raise timeout "
        "or lower count or echo_interval",
        count, format_duration(spacing), format_duration(p.timeout)));
  }
  return problems;
}

struct EchoAttempt final : Attempt {
  EchoAttempt(const asio::any_io_executor& ex, Probe::Done done)
      : Attempt(std::move(done)), resolver(ex), next_echo(ex), deadline(ex) {}
  asio::ip::icmp::resolver resolver;
  asio::steady_timer next_echo;
  asio::steady_timer deadline;
  std::shared_ptr<icmp::EchoChannel> channel;
  asio::ip::address target;
  int to_send = 0;
  int sent = 0;
  int received = 0;
  std::map<std::uint16_t, Clock::time_point> outstanding;  // seq -> when sent
  std::vector<double> rtts_ms;
  std::string error;  // the first unreachable or send error

  void forget_all() {
    if (channel) {
      for (const auto& [seq, at] : outstanding) channel->forget(seq);
    }
    outstanding.clear();
  }

  void release() override {
    resolver.cancel();
    next_echo.cancel();
    deadline.cancel();
    forget_all();
    channel.reset();
  }
};

using AttemptPtr = std::shared_ptr<EchoAttempt>;

class IcmpProbe final : public Probe {
 public:
  IcmpProbe(std::string host, int count, Millis spacing, Millis timeout, asio::any_io_executor ex)
      : host_(std::move(host)),
        count_(count),
        spacing_(spacing),
        budget_(budget_of(timeout)),
        ex_(std::move(ex)) {}

  void start(Done done) override {
    auto a = std::make_shared<EchoAttempt>(ex_, std::move(done));
    current_.track(a);
    a->to_send = count_;
    a->deadline.expires_at(a->started() + budget_);
    a->deadline.async_wait([a, this_probe = params()](const boost::system::error_code& ec) {
      if (!ec) finish(*a, this_probe);
    });
    resolve_host<asio::ip::icmp>(
        a, a->resolver, host_, 0,
        [a, p = params()](const boost::system::error_code& e,
                          const std::vector<asio::ip::icmp::endpoint>& endpoints) {
          if (e || endpoints.empty()) {
            a->finish(ProbeStatus::fail, fmt::format("cannot resolve {}: {}", p.host,
                                                     e ? e.message() : "no addresses"));
            return;
          }
          begin(a, endpoints.front().address(), p);
        });
  }

  void cancel() override { current_.cancel(); }

 private:
  struct Params {
    std::string host;
    Millis spacing;
    Millis budget;
  };
  Params params() const { return {host_, spacing_, budget_}; }

  static void begin(const AttemptPtr& a, const asio::ip::address& target, const Params& p) {
    a->target = target;
    auto channel = icmp::EchoChannel::acquire(a->next_echo.get_executor(),
                                              target.is_v4() ? icmp::Family::v4 : icmp::Family::v6);
    if (!channel) {
      a->finish(ProbeStatus::unknown, channel.error().message);
      return;
    }
    a->channel = std::move(*channel);
    send_echo(a, p);
  }

  static void send_echo(const AttemptPtr& a, const Params& p) {
    if (a->over()) return;
    --a->to_send;
    ++a->sent;
    const auto at = Clock::now();
    std::weak_ptr<EchoAttempt> weak = a;
    auto seq = a->channel->send(a->target, [weak, p](const icmp::EchoEvent& event) {
      if (auto locked = weak.lock()) on_event(*locked, p, event);
    });
    if (seq) {
      a->outstanding[*seq] = at;
    } else if (a->error.empty()) {
      a->error = seq.error().message;
    }
    if (a->to_send > 0) {
      a->next_echo.expires_at(at + p.spacing);
      a->next_echo.async_wait([a, p](const boost::system::error_code& ec) {
        if (!ec) send_echo(a, p);
      });
    } else if (a->outstanding.empty()) {
      finish(*a, p);
    }
  }

  static void on_event(EchoAttempt& a, const Params& p, const icmp::EchoEvent& event) {
    if (a.over()) return;
    auto it = a.outstanding.find(event.seq);
    if (it == a.outstanding.end()) return;
    if (event.kind == icmp::EchoEvent::Kind::reply) {
      ++a.received;
      a.rtts_ms.push_back(std::chrono::duration<double, std::milli>(event.at - it->second).count());
    } else if (a.error.empty()) {
      a.error = event.error;
    }
    a.channel->forget(event.seq);
    a.outstanding.erase(it);
    if (a.to_send == 0 && a.outstanding.empty()) finish(a, p);
  }

  // Sums up the echoes sent so far: all are in, or the budget ran out.
  static void finish(EchoAttempt& a, const Params& p) {
    if (a.over()) return;
    ProbeResult r;
    const bool raw = a.channel && a.channel->socket_kind() == icmp::EchoChannel::SocketKind::raw;
    const std::string socket_kind = raw ? "raw socket" : "datagram socket";
    const std::string target = a.target.is_unspecified() ? p.host : a.target.to_string();
    const double loss =
        a.sent == 0 ? 100.0 : 100.0 * static_cast<double>(a.sent - a.received) / a.sent;
    r.metrics["sent"] = a.sent;
    r.metrics["received"] = a.received;
    r.metrics["loss_pct"] = loss;
    r.metrics["raw_socket"] = raw ? 1 : 0;
    if (a.received > 0) {
      const auto [min, max] = std::minmax_element(a.rtts_ms.begin(), a.rtts_ms.end());
      double sum = 0;
      for (double v : a.rtts_ms) sum += v;
      const double avg = sum / static_cast<double>(a.rtts_ms.size());
      r.metrics["rtt_min_ms"] = *min;
      r.metrics["rtt_avg_ms"] = avg;
      r.metrics["rtt_max_ms"] = *max;
      if (a.received == a.sent) {
        r.status = ProbeStatus::ok;
        r.message = fmt::format("{}/{} replies from {}, avg {:.2f} ms ({})", a.received, a.sent,
                                target, avg, socket_kind);
      } else {
        r.status = ProbeStatus::warn;
        r.message = fmt::format("{}/{} replies from {} ({:.0f}% loss{}), avg {:.2f} ms ({})",
                                a.received, a.sent, target, loss,
                                a.error.empty() ? "" : "; " + a.error, avg, socket_kind);
      }
    } else {
      r.status = ProbeStatus::fail;
      // Nothing came back: a resolver that did not answer in time, or
      // echoes that all went unanswered.
      r.no_answer = true;
      if (a.sent == 0 && a.error.empty()) {
        r.message =
            fmt::format("resolving {} took longer than {}", p.host, format_duration(p.budget));
      } else if (a.error.empty()) {
        r.message =
            fmt::format("no reply from {}: 100% loss, {} sent ({})", target, a.sent, socket_kind);
      } else {
        r.message =
            fmt::format("{}: {}: 100% loss, {} sent ({})", target, a.error, a.sent, socket_kind);
      }
    }
    a.finish(std::move(r));
  }

  std::string host_;
  int count_;
  Millis spacing_;
  Millis budget_;
  asio::any_io_executor ex_;
  CurrentAttempt current_;
};

std::unique_ptr<Probe> create_icmp(const config::ProbeConfig& c, asio::any_io_executor ex) {
  return std::make_unique<IcmpProbe>(c.str("host"), static_cast<int>(c.integer("count")),
                                     c.duration("echo_interval"), c.timeout, std::move(ex));
}

}  // namespace

ProbeType icmp_probe_type() {
  return {{"icmp", kKeys, &validate}, &create_icmp};
}

}  // namespace storewatch::probes
