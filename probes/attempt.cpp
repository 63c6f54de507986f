#include "probes/attempt.h"

#include <boost/asio/connect.hpp>

namespace storewatch::probes {

namespace asio = boost::asio;
using asio::ip::tcp;

Attempt::Attempt(Probe::Done done) : done_(std::move(done)), started_(Clock::now()) {}

std::chrono::microseconds Attempt::elapsed() const {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_);
}

void Attempt::finish(ProbeResult r, std::chrono::microseconds latency) {
  // Freed before the report: the device is free again (a printer serves one
  // connection at a time) before `done` may start the next check.
  release();
  if (cancelled_) return;
  r.latency = latency;
  deliver_once(done_, std::move(r));
}

void Attempt::finish(ProbeStatus status, std::string message) {
  ProbeResult r;
  r.status = status;
  r.message = std::move(message);
  finish(std::move(r));
}

void Attempt::cancel() {
  cancelled_ = true;
  release();
}

void CurrentAttempt::cancel() {
  if (auto attempt = attempt_.lock()) attempt->cancel();
}

void connect_tcp(const std::shared_ptr<Attempt>& attempt, tcp::resolver& resolver,
                 tcp::socket& socket, const std::string& host, std::uint16_t port,
                 std::function<void(const boost::system::error_code&, ConnectStep)> connected) {
  resolve_host<tcp>(
      attempt, resolver, host, port,
      [attempt, &socket, connected = std::move(connected)](
          const boost::system::error_code& ec, std::vector<tcp::endpoint> endpoints) mutable {
        if (ec) {
          connected(ec, ConnectStep::resolve);
          return;
        }
        // async_connect keeps its own copy of the endpoints.
        asio::async_connect(socket, endpoints,
                            [attempt, connected = std::move(connected)](
                                const boost::system::error_code& e, const tcp::endpoint&) {
                              if (attempt->over()) return;
                              connected(e, ConnectStep::connect);
                            });
      });
}

}  // namespace storewatch::probes
