#include "probes/tcp_probe.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <fmt/format.h>

namespace storewatch::probes {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr config::KeySpec kKeys[] = {
    {"host", config::KeyKind::host, true, "", "host name or IP address of the device"},
    {"port", config::KeyKind::port, true, "", "TCP port to connect to"},
};

// The sockets live in shared state so a handler that completes after the
// probe is destroyed still has something valid to touch.
struct Attempt {
  explicit Attempt(const asio::any_io_executor& ex) : resolver(ex), socket(ex) {}
  tcp::resolver resolver;
  tcp::socket socket;
  std::chrono::steady_clock::time_point started;
  Probe::Done done;
  bool cancelled = false;
};

class TcpProbe final : public Probe {
 public:
  TcpProbe(std::string host, std::uint16_t port, asio::any_io_executor ex)
      : host_(std::move(host)), port_(port), ex_(std::move(ex)) {}

  ~TcpProbe() override { cancel(); }

  void start(Done done) override {
    auto a = std::make_shared<Attempt>(ex_);
    attempt_ = a;
    a->done = std::move(done);
    a->started = std::chrono::steady_clock::now();
    boost::system::error_code ec;
    auto address = asio::ip::make_address(host_, ec);
    if (!ec) {
      tcp::endpoint ep(address, port_);
      a->socket.async_connect(ep, [this_host = target(), a](const boost::system::error_code& e) {
        finish(*a, this_host, e);
      });
      return;
    }
    a->resolver.async_resolve(
        host_, std::to_string(port_),
        [a, this_host = target()](const boost::system::error_code& e,
                                  const tcp::resolver::results_type& results) {
          if (a->cancelled) return;
          if (e) {
            finish(*a, this_host, e);
            return;
          }
          asio::async_connect(a->socket, results,
                              [a, this_host](const boost::system::error_code& e2,
                                             const tcp::endpoint&) { finish(*a, this_host, e2); });
        });
  }

  void cancel() override {
    if (auto a = attempt_.lock()) {
      a->cancelled = true;
      a->resolver.cancel();
      boost::system::error_code ignored;
      a->socket.close(ignored);
    }
  }

 private:
  std::string target() const { return fmt::format("{}:{}", host_, port_); }

  static void finish(Attempt& a, const std::string& target, const boost::system::error_code& ec) {
    if (a.cancelled || !a.done) return;
    ProbeResult r;
    r.latency = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - a.started);
    if (ec) {
      r.status = ProbeStatus::fail;
      r.message = fmt::format("connect {}: {}", target, ec.message());
    } else {
      r.status = ProbeStatus::ok;
      r.message = fmt::format("connected to {} in {:.1f} ms", target,
                              static_cast<double>(r.latency.count()) / 1000.0);
      r.metrics["connect_ms"] = static_cast<double>(r.latency.count()) / 1000.0;
    }
    boost::system::error_code ignored;
    a.socket.close(ignored);
    deliver_once(a.done, std::move(r));
  }

  std::string host_;
  std::uint16_t port_;
  asio::any_io_executor ex_;
  std::weak_ptr<Attempt> attempt_;
};

std::unique_ptr<Probe> create_tcp(const config::ProbeConfig& c, asio::any_io_executor ex) {
  return std::make_unique<TcpProbe>(c.str("host"), static_cast<std::uint16_t>(c.integer("port")),
                                    std::move(ex));
}

}  // namespace

ProbeType tcp_probe_type() {
  return {{"tcp", kKeys}, &create_tcp};
}

}  // namespace storewatch::probes
