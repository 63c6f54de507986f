#pragma once
/// \file
/// ICMP and ICMPv6 echo packets: building a request and reading what an ICMP
/// socket hands back (an echo reply, or an error about one of our echoes).
/// Pure functions over bytes so they can be tested without a socket.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace storewatch::probes::icmp {

enum class Family { v4, v6 };

/// The Internet checksum (RFC 1071) of `data`.
std::uint16_t checksum(std::span<const std::uint8_t> data);

/// An echo request (type 8, or 128 for ICMPv6) with `payload`. The v4
/// checksum is filled in; for ICMPv6 the kernel computes it (it needs the
/// pseudo-header), so it is left 0.
std::vector<std::uint8_t> echo_request(Family family, std::uint16_t id, std::uint16_t seq,
                                       std::span<const std::uint8_t> payload);

/// What one datagram from an ICMP socket is about.
struct Message {
  enum class Kind {
    echo_reply,     ///< an answer to an echo (id, seq)
    unreachable,    ///< destination unreachable for the echo (id, seq)
    time_exceeded,  ///< TTL / hop limit exceeded for the echo (id, seq)
  };
  Kind kind = Kind::echo_reply;
  std::uint16_t id = 0;
  std::uint16_t seq = 0;
  std::uint8_t type = 0;  ///< the ICMP type and code of the message itself
  std::uint8_t code = 0;
  /// For errors: the destination the quoted echo was sent to (4 or 16
  /// bytes), when the quote holds the IP header.
  std::vector<std::uint8_t> quoted_destination;
};

/// Decodes a datagram read from an ICMP socket of `family`. `ip_header`
/// says whether it starts with an IPv4 header (raw IPv4 sockets hand one
/// over; datagram sockets and ICMPv6 sockets do not). Anything that is not
/// an echo reply or an error quoting an echo request (our own requests seen
/// on loopback, other ICMP traffic, truncated junk) gives nullopt.
std::optional<Message> decode(Family family, std::span<const std::uint8_t> data, bool ip_header);

/// Words for an ICMP destination-unreachable / time-exceeded type and code
/// ("host unreachable", "administratively prohibited", ...).
std::string describe_error(Family family, std::uint8_t type, std::uint8_t code);

}  // namespace storewatch::probes::icmp
