#pragma once
/// \file
/// What the network probes (tcp, escpos, dns, icmp) share for one check in
/// flight: `Attempt`, the state a probe shares with its handlers, which
/// reports at most once and frees its sockets and timers when it finishes or
/// is cancelled; `CurrentAttempt`, the probe's weak hold on it; and
/// `resolve_host` and `connect_tcp`, a host (a name or an address) to
/// endpoints and to a connected socket. Each probe keeps only what is its
/// own: what it sends, what it reads and what the reply means.

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "probes/probe.h"

namespace storewatch::probes {

/// One check in flight. A probe derives its own attempt from this (adding
/// its sockets, timers and buffers) and shares it with every handler it
/// starts, so a handler that completes after the probe is gone still touches
/// valid memory; handlers return at once when they find the attempt over().
class Attempt {
 public:
  using Clock = std::chrono::steady_clock;

  /// The check starts now; `done` hears its result.
  explicit Attempt(Probe::Done done);
  virtual ~Attempt() = default;
  Attempt(const Attempt&) = delete;
  Attempt& operator=(const Attempt&) = delete;

  /// True once the check has reported or was cancelled.
  bool over() const { return cancelled_ || !done_; }

  Clock::time_point started() const { return started_; }
  /// The time since the start.
  std::chrono::microseconds elapsed() const;

  /// Frees the attempt's sockets and timers, then reports `r` with elapsed()
  /// as its latency, unless the check is over.
  void finish(ProbeResult r) { finish(std::move(r), elapsed()); }
  /// finish() with the latency the result already quotes (tcp's connect time).
  void finish(ProbeResult r, std::chrono::microseconds latency);
  /// finish() with a result that has only a status and a message.
  void finish(ProbeStatus status, std::string message);

  /// Ends the check without a report and frees its sockets and timers.
  void cancel();

 protected:
  /// Closes the sockets and cancels the timers and resolvers. Runs on
  /// finish() and cancel(), so possibly more than once.
  virtual void release() = 0;

 private:
  Probe::Done done_;
  Clock::time_point started_;
  bool cancelled_ = false;
};

/// A probe's hold on its running attempt: weak, so the attempt lives as long
/// as some handler holds it and no longer. Cancels it when the probe goes.
class CurrentAttempt {
 public:
  CurrentAttempt() = default;
  ~CurrentAttempt() { cancel(); }
  CurrentAttempt(const CurrentAttempt&) = delete;
  CurrentAttempt& operator=(const CurrentAttempt&) = delete;

  /// The attempt a later cancel() ends (one check at a time).
  void track(const std::shared_ptr<Attempt>& attempt) { attempt_ = attempt; }
  /// Cancels the tracked attempt if it is still in flight.
  void cancel();

 private:
  std::weak_ptr<Attempt> attempt_;
};

/// Resolves `host` to endpoints of `Protocol` with `port` (0: no service):
/// an IP address directly, a name through `resolver`. `resolved` gets the
/// resolver's error or the endpoints (which may be none), never inside this
/// call, and not at all once `attempt` is over. `resolver` belongs to
/// `attempt`.
template <class Protocol, class Handler>
void resolve_host(const std::shared_ptr<Attempt>& attempt, typename Protocol::resolver& resolver,
                  const std::string& host, std::uint16_t port, Handler resolved) {
  using Endpoints = std::vector<typename Protocol::endpoint>;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(host, ec);
  if (!ec) {
    // Posted, so `done` never runs inside a probe's start().
    boost::asio::post(resolver.get_executor(),
                      [attempt, address, port, resolved = std::move(resolved)]() mutable {
                        if (attempt->over()) return;
                        resolved(boost::system::error_code(), Endpoints{{address, port}});
                      });
    return;
  }
  resolver.async_resolve(host, port == 0 ? std::string() : std::to_string(port),
                         [attempt, resolved = std::move(resolved)](
                             const boost::system::error_code& e,
                             const typename Protocol::resolver::results_type& results) mutable {
                           if (attempt->over()) return;
                           Endpoints endpoints;
                           if (!e) {
                             for (const auto& entry : results)
                               endpoints.push_back(entry.endpoint());
                           }
                           resolved(e, std::move(endpoints));
                         });
}

/// Which step of connect_tcp failed.
enum class ConnectStep { resolve, connect };

/// Connects `socket` to host:port, trying each address the host resolves to
/// in turn (localhost may be ::1 first). `connected` gets the outcome, and on
/// an error the step that failed, unless `attempt` is over first. `resolver`
/// and `socket` belong to `attempt`.
void connect_tcp(const std::shared_ptr<Attempt>& attempt, boost::asio::ip::tcp::resolver& resolver,
                 boost::asio::ip::tcp::socket& socket, const std::string& host, std::uint16_t port,
                 std::function<void(const boost::system::error_code&, ConnectStep)> connected);

}  // namespace storewatch::probes
