#include "probes/icmp_packet.h"

#include <fmt/format.h>

namespace storewatch::probes::icmp {
namespace {

constexpr std::uint8_t kEchoRequest4 = 8, kEchoReply4 = 0, kUnreachable4 = 3, kTimeExceeded4 = 11;
constexpr std::uint8_t kEchoRequest6 = 128, kEchoReply6 = 129, kUnreachable6 = 1,
                       kTimeExceeded6 = 3;
constexpr std::size_t kHeader = 8;  // type, code, checksum, id, seq
constexpr std::size_t kIpv6Header = 40;
constexpr std::uint8_t kProtoIcmp = 1, kProtoIcmp6 = 58;

std::uint16_t be16(std::span<const std::uint8_t> d, std::size_t at) {
  return static_cast<std::uint16_t>((d[at] << 8) | d[at + 1]);
}

/// Skips an IPv4 header at the start of `d`; empty if it is not one.
std::optional<std::span<const std::uint8_t>> strip_ipv4(std::span<const std::uint8_t> d,
                                                        std::uint8_t* protocol = nullptr,
                                                        std::vector<std::uint8_t>* dst = nullptr) {
  if (d.size() < 20 || (d[0] >> 4) != 4) return std::nullopt;
  const std::size_t ihl = static_cast<std::size_t>(d[0] & 0x0f) * 4;
  if (ihl < 20 || d.size() < ihl) return std::nullopt;
  if (protocol != nullptr) *protocol = d[9];
  if (dst != nullptr) dst->assign(d.begin() + 16, d.begin() + 20);
  return d.subspan(ihl);
}

}  // namespace

std::uint16_t checksum(std::span<const std::uint8_t> data) {
  std::uint32_t sum = 0;
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2)
    sum += static_cast<std::uint32_t>((data[i] << 8) | data[i + 1]);
  if (i < data.size()) sum += static_cast<std::uint32_t>(data[i] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

std::vector<std::uint8_t> echo_request(Family family, std::uint16_t id, std::uint16_t seq,
                                       std::span<const std::uint8_t> payload) {
  std::vector<std::uint8_t> p(kHeader + payload.size());
  p[0] = family == Family::v4 ? kEchoRequest4 : kEchoRequest6;
  p[4] = static_cast<std::uint8_t>(id >> 8);
  p[5] = static_cast<std::uint8_t>(id & 0xff);
  p[6] = static_cast<std::uint8_t>(seq >> 8);
  p[7] = static_cast<std::uint8_t>(seq & 0xff);
  std::copy(payload.begin(), payload.end(), p.begin() + kHeader);
  if (family == Family::v4) {
    const std::uint16_t sum = checksum(p);
    p[2] = static_cast<std::uint8_t>(sum >> 8);
    p[3] = static_cast<std::uint8_t>(sum & 0xff);
  }
  return p;
}

std::optional<Message> decode(Family family, std::span<const std::uint8_t> data, bool ip_header) {
  if (ip_header) {
    std::uint8_t protocol = 0;
    auto inner = strip_ipv4(data, &protocol);
    if (!inner || protocol != kProtoIcmp) return std::nullopt;
    data = *inner;
  }
  if (data.size() < kHeader) return std::nullopt;
  Message m;
  m.type = data[0];
  m.code = data[1];
  const bool v4 = family == Family::v4;
  if (m.type == (v4 ? kEchoReply4 : kEchoReply6)) {
    m.kind = Message::Kind::echo_reply;
    m.id = be16(data, 4);
    m.seq = be16(data, 6);
    return m;
  }
  if (m.type == (v4 ? kUnreachable4 : kUnreachable6)) {
    m.kind = Message::Kind::unreachable;
  } else if (m.type == (v4 ? kTimeExceeded4 : kTimeExceeded6)) {
    m.kind = Message::Kind::time_exceeded;
  } else {
    return std::nullopt;
  }
  // An error quotes the IP header of the packet it is about and at least the
  // first 8 bytes of that packet's payload: our echo request's header.
  auto quote = data.subspan(kHeader);
  std::span<const std::uint8_t> echo;
  if (v4) {
    std::uint8_t protocol = 0;
    auto inner = strip_ipv4(quote, &protocol, &m.quoted_destination);
    if (!inner || protocol != kProtoIcmp) return std::nullopt;
    echo = *inner;
  } else {
    // Extension headers are not expected on our own echo requests.
    if (quote.size() < kIpv6Header || (quote[0] >> 4) != 6 || quote[6] != kProtoIcmp6) {
      return std::nullopt;
    }
    m.quoted_destination.assign(quote.begin() + 24, quote.begin() + 40);
    echo = quote.subspan(kIpv6Header);
  }
  if (echo.size() < kHeader || echo[0] != (v4 ? kEchoRequest4 : kEchoRequest6)) {
    return std::nullopt;
  }
  m.id = be16(echo, 4);
  m.seq = be16(echo, 6);
  return m;
}

std::string describe_error(Family family, std::uint8_t type, std::uint8_t code) {
  if (family == Family::v4) {
    if (type == kTimeExceeded4) return "TTL exceeded in transit";
    if (type != kUnreachable4) return fmt::format("ICMP type {} code {}", type, code);
    switch (code) {
      case 0: return "network unreachable";
      case 1: return "host unreachable";
      case 2: return "protocol unreachable";
      case 3: return "port unreachable";
      case 4: return "fragmentation needed";
      case 6: return "destination network unknown";
      case 7: return "destination host unknown";
      case 9:
      case 10:
      case 13: return "administratively prohibited";
      default: return fmt::format("destination unreachable (code {})", code);
    }
  }
  if (type == kTimeExceeded6) return "hop limit exceeded in transit";
  if (type != kUnreachable6) return fmt::format("ICMPv6 type {} code {}", type, code);
  switch (code) {
    case 0: return "no route to destination";
    case 1: return "administratively prohibited";
    case 3: return "address unreachable";
    case 4: return "port unreachable";
    case 5: return "source address failed policy";
    case 6: return "reject route to destination";
    default: return fmt::format("destination unreachable (code {})", code);
  }
}

}  // namespace storewatch::probes::icmp
