#include "probes/sntp.h"

#include <fmt/format.h>

namespace storewatch::probes::sntp {
namespace {

// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
constexpr std::int64_t kUnixEpochInNtp = 2'208'988'800;
constexpr std::int64_t kNanos = 1'000'000'000;

void put32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}

std::uint32_t get32(const std::uint8_t* p) {
  return (static_cast<std::uint32_t>(p[0]) << 24) | (static_cast<std::uint32_t>(p[1]) << 16) |
         (static_cast<std::uint32_t>(p[2]) << 8) | p[3];
}

void put_ts(std::uint8_t* p, Timestamp t) {
  put32(p, t.seconds);
  put32(p + 4, t.fraction);
}

Timestamp get_ts(const std::uint8_t* p) {
  return {get32(p), get32(p + 4)};
}

}  // namespace

UnixNanos to_unix_nanos(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

Timestamp to_ntp(UnixNanos t) {
  std::int64_t seconds = t / kNanos;
  std::int64_t nanos = t % kNanos;
  if (nanos < 0) {
    nanos += kNanos;
    seconds -= 1;
  }
  Timestamp out;
  out.seconds = static_cast<std::uint32_t>(static_cast<std::uint64_t>(seconds + kUnixEpochInNtp));
  out.fraction = static_cast<std::uint32_t>((static_cast<std::uint64_t>(nanos) << 32) / kNanos);
  return out;
}

UnixNanos to_unix_nanos(Timestamp t) {
  std::int64_t seconds = t.seconds;
  if ((t.seconds & 0x8000'0000u) == 0) seconds += std::int64_t{1} << 32;
  // Rounded to the nearest nanosecond so to_ntp and back is exact.
  const auto nanos = static_cast<std::int64_t>(
      (static_cast<std::uint64_t>(t.fraction) * kNanos + (std::uint64_t{1} << 31)) >> 32);
  return (seconds - kUnixEpochInNtp) * kNanos + nanos;
}

std::array<std::uint8_t, kPacketSize> encode(const Packet& p) {
  std::array<std::uint8_t, kPacketSize> b{};
  b[0] = static_cast<std::uint8_t>(((p.leap & 3) << 6) | ((p.version & 7) << 3) | (p.mode & 7));
  b[1] = p.stratum;
  b[2] = static_cast<std::uint8_t>(p.poll);
  b[3] = static_cast<std::uint8_t>(p.precision);
  put32(&b[4], p.root_delay);
  put32(&b[8], p.root_dispersion);
  std::copy(p.reference_id.begin(), p.reference_id.end(), b.begin() + 12);
  put_ts(&b[16], p.reference);
  put_ts(&b[24], p.originate);
  put_ts(&b[32], p.receive);
  put_ts(&b[40], p.transmit);
  return b;
}

std::optional<Packet> decode(std::span<const std::uint8_t> b) {
  if (b.size() < kPacketSize) return std::nullopt;
  Packet p;
  p.leap = static_cast<std::uint8_t>(b[0] >> 6);
  p.version = static_cast<std::uint8_t>((b[0] >> 3) & 7);
  p.mode = static_cast<std::uint8_t>(b[0] & 7);
  p.stratum = b[1];
  p.poll = static_cast<std::int8_t>(b[2]);
  p.precision = static_cast<std::int8_t>(b[3]);
  p.root_delay = get32(&b[4]);
  p.root_dispersion = get32(&b[8]);
  std::copy(b.begin() + 12, b.begin() + 16, p.reference_id.begin());
  p.reference = get_ts(&b[16]);
  p.originate = get_ts(&b[24]);
  p.receive = get_ts(&b[32]);
  p.transmit = get_ts(&b[40]);
  return p;
}

std::array<std::uint8_t, kPacketSize> client_request(Timestamp transmit) {
  Packet p;
  p.leap = 0;
  p.version = 4;
  p.mode = 3;
  p.transmit = transmit;
  return encode(p);
}

Verdict check_reply(const Packet& reply, Timestamp sent) {
  using K = Verdict::Kind;
  if (reply.mode != 4) {
    return {K::invalid, fmt::format("mode {} is not a server reply (mode 4)", reply.mode)};
  }
  if (reply.version < 1 || reply.version > 4) {
    return {K::invalid, fmt::format("unsupported NTP version {}", reply.version)};
  }
  if (reply.originate != sent) {
    return {K::invalid, "its origin timestamp is not the one we sent (not an answer to our query)"};
  }
  if (reply.stratum == 0) {
    std::string code;
    for (std::uint8_t c : reply.reference_id) {
      if (c == 0) break;
      code += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
    }
    return {K::kiss_o_death, code.empty() ? "(no code)" : code};
  }
  if (reply.leap == 3 || reply.stratum >= 16) {
    return {K::unsynchronized,
            fmt::format("stratum {}, leap indicator {}", reply.stratum, reply.leap)};
  }
  if (reply.transmit.zero()) return {K::invalid, "its transmit timestamp is zero"};
  return {K::usable, {}};
}

Measurement measure(UnixNanos t1, UnixNanos t2, UnixNanos t3, UnixNanos t4) {
  // Differences first, in integers, so nothing is lost to double rounding of
  // absolute times.
  const std::int64_t there = t2 - t1;
  const std::int64_t back = t3 - t4;
  Measurement m;
  m.offset_ms = (static_cast<double>(there) + static_cast<double>(back)) / 2.0 / 1e6;
  m.delay_ms = static_cast<double>((t4 - t1) - (t3 - t2)) / 1e6;
  return m;
}

}  // namespace storewatch::probes::sntp
