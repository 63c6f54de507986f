#include "probes/tcp_probe.h"

#include <boost/asio/ip/tcp.hpp>

#include <fmt/format.h>

#include "probes/attempt.h"

namespace storewatch::probes {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

constexpr config::KeySpec kKeys[] = {
    {"host", config::KeyKind::host, true, "", "host name or IP address of the device"},
    {"port", config::KeyKind::port, true, "", "TCP port to connect to"},
};

struct TcpAttempt final : Attempt {
  TcpAttempt(const asio::any_io_executor& ex, Probe::Done done)
      : Attempt(std::move(done)), resolver(ex), socket(ex) {}
  tcp::resolver resolver;
  tcp::socket socket;

  void release() override {
    resolver.cancel();
    boost::system::error_code ignored;
    socket.close(ignored);
  }
};

class TcpProbe final : public Probe {
 public:
  TcpProbe(std::string host, std::uint16_t port, asio::any_io_executor ex)
      : host_(std::move(host)), port_(port), ex_(std::move(ex)) {}

  void start(Done done) override {
    auto a = std::make_shared<TcpAttempt>(ex_, std::move(done));
    current_.track(a);
    connect_tcp(a, a->resolver, a->socket, host_, port_,
                [a, target = fmt::format("{}:{}", host_, port_)](
                    const boost::system::error_code& ec, ConnectStep) { finish(*a, target, ec); });
  }

  void cancel() override { current_.cancel(); }

 private:
  static void finish(Attempt& a, const std::string& target, const boost::system::error_code& ec) {
    ProbeResult r;
    const auto elapsed = a.elapsed();
    if (ec) {
      r.status = ProbeStatus::fail;
      r.message = fmt::format("connect {}: {}", target, ec.message());
    } else {
      r.status = ProbeStatus::ok;
      r.message = fmt::format("connected to {} in {:.1f} ms", target,
                              static_cast<double>(elapsed.count()) / 1000.0);
      r.metrics["connect_ms"] = static_cast<double>(elapsed.count()) / 1000.0;
    }
    a.finish(std::move(r), elapsed);
  }

  std::string host_;
  std::uint16_t port_;
  asio::any_io_executor ex_;
  CurrentAttempt current_;
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
