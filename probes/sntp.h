#pragma once
/// \file
/// SNTP (RFC 4330): the 48-byte packet, a client request, the checks a
/// client makes on a server's reply, and the offset and delay arithmetic.
/// Pure functions so they can be tested without a network.

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace storewatch::probes::sntp {

inline constexpr std::size_t kPacketSize = 48;

/// An NTP timestamp: seconds since 1900-01-01 (modulo 2^32) and a binary
/// fraction of a second.
struct Timestamp {
  std::uint32_t seconds = 0;
  std::uint32_t fraction = 0;
  bool zero() const { return seconds == 0 && fraction == 0; }
  bool operator==(const Timestamp&) const = default;
};

/// Nanoseconds since the Unix epoch.
using UnixNanos = std::int64_t;

UnixNanos to_unix_nanos(std::chrono::system_clock::time_point t);
Timestamp to_ntp(UnixNanos t);
/// Back to Unix time. Seconds with the top bit clear are taken as era 1
/// (from 2036 on), as RFC 4330 §3 suggests, so the arithmetic keeps working
/// after the 2036 wrap.
UnixNanos to_unix_nanos(Timestamp t);

struct Packet {
  std::uint8_t leap = 0;     ///< 0..3; 3 = clock not synchronized
  std::uint8_t version = 4;  ///< 1..7
  std::uint8_t mode = 3;     ///< 3 client, 4 server
  std::uint8_t stratum = 0;  ///< 0 kiss-o'-death, 1..15, 16 unsynchronized
  std::int8_t poll = 0;
  std::int8_t precision = 0;
  std::uint32_t root_delay = 0;
  std::uint32_t root_dispersion = 0;
  std::array<std::uint8_t, 4> reference_id{};
  Timestamp reference, originate, receive, transmit;
};

std::array<std::uint8_t, kPacketSize> encode(const Packet& p);
/// nullopt when shorter than 48 bytes (extension fields and a MAC after the
/// 48 bytes are ignored).
std::optional<Packet> decode(std::span<const std::uint8_t> bytes);

/// A client request (version 4, mode 3) carrying `transmit`, which the
/// server echoes back as its originate timestamp.
std::array<std::uint8_t, kPacketSize> client_request(Timestamp transmit);

/// What a reply is worth.
struct Verdict {
  enum class Kind {
    usable,          ///< a synchronized server's answer to our request
    kiss_o_death,    ///< stratum 0: `message` has the kiss code ("RATE")
    unsynchronized,  ///< leap indicator 3 or stratum 16
    invalid,         ///< not a server's answer to our request
  };
  Kind kind = Kind::invalid;
  std::string message;  ///< why, for anything but usable
};

/// RFC 4330 §5's checks of a reply to a request that carried `sent`.
Verdict check_reply(const Packet& reply, Timestamp sent);

/// Clock offset (server minus us) and round-trip delay from the four times
/// of one exchange: t1 we sent, t2 the server received, t3 the server sent,
/// t4 we received.
struct Measurement {
  double offset_ms = 0;
  double delay_ms = 0;
};
Measurement measure(UnixNanos t1, UnixNanos t2, UnixNanos t3, UnixNanos t4);

}  // namespace storewatch::probes::sntp
