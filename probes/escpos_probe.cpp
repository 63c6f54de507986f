#include "probes/escpos_probe.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <vector>

#include "probes/attempt.h"
#include "probes/escpos_status.h"

namespace storewatch::probes {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr config::KeySpec kKeys[] = {
    {"host", config::KeyKind::host, true, "", "host name or IP address of the printer"},
    {"port", config::KeyKind::port, false, "9100", "the printer's raw TCP port"},
};

double ms_since(Clock::time_point t) {
  return static_cast<double>(
             std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count()) /
         1000.0;
}

double flag(bool b) {
  return b ? 1.0 : 0.0;
}

struct EscposAttempt final : Attempt {
  EscposAttempt(const asio::any_io_executor& ex, Probe::Done done, std::string target)
      : Attempt(std::move(done)), resolver(ex), socket(ex), target(std::move(target)) {}
  tcp::resolver resolver;
  tcp::socket socket;
  std::string target;
  double connect_ms = 0;
  std::array<std::uint8_t, 3> request{0x10, 0x04, 0};  // DLE EOT n
  std::uint8_t reply = 0;
  std::vector<std::uint8_t> replies;

  // The socket closes before the result is reported: the printer is free
  // again before anyone hears about it.
  void release() override {
    resolver.cancel();
    boost::system::error_code ignored;
    socket.close(ignored);
  }
};

using AttemptPtr = std::shared_ptr<EscposAttempt>;

void fail(EscposAttempt& a, ProbeStatus status, std::string message) {
  ProbeResult r;
  r.status = status;
  r.message = std::move(message);
  if (a.connect_ms > 0) r.metrics["connect_ms"] = a.connect_ms;
  a.finish(std::move(r));
}

void report(EscposAttempt& a, const escpos::PrinterStatus& s) {
  const auto assessment = escpos::assess(s);
  ProbeResult r;
  switch (assessment.level) {
    case escpos::Assessment::Level::ok: r.status = ProbeStatus::ok; break;
    case escpos::Assessment::Level::warn: r.status = ProbeStatus::warn; break;
    case escpos::Assessment::Level::fail: r.status = ProbeStatus::fail; break;
  }
  r.message = assessment.conditions.empty()
                  ? fmt::format("printer {} ready", a.target)
                  : fmt::format("{}", fmt::join(assessment.conditions, "; "));
  r.metrics["connect_ms"] = a.connect_ms;
  r.metrics["offline"] = flag(s.offline);
  r.metrics["cover_open"] = flag(s.cover_open);
  r.metrics["paper_near_end"] = flag(s.paper_near_end);
  r.metrics["paper_end"] = flag(s.paper_end);
  r.metrics["autocutter_error"] = flag(s.autocutter_error);
  r.metrics["unrecoverable_error"] = flag(s.unrecoverable_error);
  r.metrics["auto_recoverable_error"] = flag(s.auto_recoverable_error);
  r.metrics["drawer_pin_high"] = flag(s.drawer_pin_high);
  a.finish(std::move(r));
}

// Asks DLE EOT n for the next n, or decodes once all four are in.
void ask_next(const AttemptPtr& a) {
  if (a->replies.size() == escpos::kStatusRequests) {
    auto decoded = escpos::decode(a->replies);
    // Four bytes that each passed the pattern always decode.
    if (!decoded) {
      fail(*a, ProbeStatus::unknown, fmt::format("{}: {}", a->target, decoded.error().message));
    } else {
      report(*a, *decoded);
    }
    return;
  }
  a->request[2] = static_cast<std::uint8_t>(a->replies.size() + 1);
  asio::async_write(
      a->socket, asio::buffer(a->request), [a](const boost::system::error_code& ec, std::size_t) {
        if (a->over()) return;
        if (ec) {
          fail(*a, ProbeStatus::fail,
               fmt::format("send DLE EOT {} to {}: {}", a->request[2], a->target, ec.message()));
          return;
        }
        asio::async_read(
            a->socket, asio::buffer(&a->reply, 1),
            [a](const boost::system::error_code& ec2, std::size_t) {
              if (a->over()) return;
              if (ec2 == asio::error::eof) {
                auto partial = escpos::decode(a->replies);
                fail(*a, ProbeStatus::unknown,
                     fmt::format("{}: {} (the printer closed the connection)", a->target,
                                 partial ? "no status" : partial.error().message));
                return;
              }
              if (ec2) {
                fail(*a, ProbeStatus::fail,
                     fmt::format("read status from {}: {}", a->target, ec2.message()));
                return;
              }
              a->replies.push_back(a->reply);
              if (!escpos::is_status_byte(a->reply)) {
                fail(*a, ProbeStatus::unknown,
                     fmt::format("{}: {}", a->target, escpos::decode(a->replies).error().message));
                return;
              }
              ask_next(a);
            });
      });
}

void connected(const AttemptPtr& a, const boost::system::error_code& ec, ConnectStep step,
               const std::string& host) {
  if (ec) {
    fail(*a, ProbeStatus::fail,
         step == ConnectStep::resolve ? fmt::format("resolve {}: {}", host, ec.message())
                                      : fmt::format("connect {}: {}", a->target, ec.message()));
    return;
  }
  a->connect_ms = ms_since(a->started());
  boost::system::error_code ignored;
  a->socket.set_option(tcp::no_delay(true), ignored);
  ask_next(a);
}

class EscposProbe final : public Probe {
 public:
  EscposProbe(std::string host, std::uint16_t port, asio::any_io_executor ex)
      : host_(std::move(host)), port_(port), ex_(std::move(ex)) {}

  void start(Done done) override {
    auto a =
        std::make_shared<EscposAttempt>(ex_, std::move(done), fmt::format("{}:{}", host_, port_));
    current_.track(a);
    connect_tcp(a, a->resolver, a->socket, host_, port_,
                [a, host = host_](const boost::system::error_code& ec, ConnectStep step) {
                  connected(a, ec, step, host);
                });
  }

  void cancel() override { current_.cancel(); }

 private:
  std::string host_;
  std::uint16_t port_;
  asio::any_io_executor ex_;
  CurrentAttempt current_;
};

std::unique_ptr<Probe> create_escpos(const config::ProbeConfig& c, asio::any_io_executor ex) {
  return std::make_unique<EscposProbe>(c.str("host"), static_cast<std::uint16_t>(c.integer("port")),
                                       std::move(ex));
}

}  // namespace

ProbeType escpos_probe_type() {
  return {{"escpos", kKeys}, &create_escpos};
}

}  // namespace storewatch::probes
