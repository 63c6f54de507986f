#pragma once
/// \file
/// One ICMP socket per address family per io_context, shared by every icmp
/// check running on it. Replies are matched to checks by sequence number (and
/// identifier on raw sockets) and by source address.
///
/// Why shared: a raw ICMP socket receives a copy of every ICMP packet the
/// host gets, so N raw sockets open at once (a sweep of 254 lanes) would each
/// wake for every reply, N² wake-ups. One socket reads each reply once and
/// finds its check in a hash map. The socket is open only while some check
/// holds the channel; the last one to finish closes it.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "probes/icmp_packet.h"

namespace storewatch::probes::icmp {

/// What became of one echo.
struct EchoEvent {
  enum class Kind { reply, error };
  Kind kind = Kind::reply;
  std::uint16_t seq = 0;
  std::chrono::steady_clock::time_point at;
  std::string error;  ///< for errors: "host unreachable (from 10.0.0.1)"
};

class EchoChannel {
 public:
  enum class SocketKind { datagram, raw };
  using Listener = std::function<void(const EchoEvent&)>;

  /// The open channel of `family` on `executor`'s io_context, or a newly
  /// opened one: an unprivileged datagram ICMP socket where
  /// net.ipv4.ping_group_range allows our group, else a raw socket (needs
  /// CAP_NET_RAW). The error says how to fix permissions.
  static Result<std::shared_ptr<EchoChannel>> acquire(const boost::asio::any_io_executor& executor,
                                                      Family family);

  virtual ~EchoChannel() = default;

  /// Sends one echo request to `to`; `listener` hears of its reply or an
  /// error about it until forget(seq). The error is the send's (no route,
  /// network unreachable, ...).
  virtual Result<std::uint16_t> send(const boost::asio::ip::address& to, Listener listener) = 0;
  /// Stops listening for `seq`.
  virtual void forget(std::uint16_t seq) = 0;
  virtual SocketKind socket_kind() const = 0;
};

}  // namespace storewatch::probes::icmp
