// ICMP echo packets and what ICMP sockets hand back (probes/icmp_packet.h).

#include "probes/icmp_packet.h"

#include <gtest/gtest.h>

#include <vector>

namespace storewatch::probes::icmp {
namespace {

using Bytes = std::vector<std::uint8_t>;

TEST(IcmpChecksum, Rfc1071Example) {
  // RFC 1071 §3's example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
  const Bytes data = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(checksum(data), static_cast<std::uint16_t>(~0xddf2));
  // Odd length pads with a zero byte.
  EXPECT_EQ(checksum(Bytes{0xff}), static_cast<std::uint16_t>(~0xff00));
}

TEST(IcmpEcho, V4RequestChecksumsToZero) {
  const Bytes payload = {1, 2, 3, 4, 5};
  auto p = echo_request(Family::v4, 0xBEEF, 0x0102, payload);
  ASSERT_EQ(p.size(), 13u);
  EXPECT_EQ(p[0], 8);
  EXPECT_EQ(p[1], 0);
  EXPECT_EQ(p[4], 0xBE);
  EXPECT_EQ(p[5], 0xEF);
  EXPECT_EQ(p[6], 0x01);
  EXPECT_EQ(p[7], 0x02);
  EXPECT_EQ(p[8], 1);
  // A packet with its checksum in place sums to 0xffff, whose complement is 0.
  EXPECT_EQ(checksum(p), 0);
}

TEST(IcmpEcho, V6RequestLeavesTheChecksumToTheKernel) {
  auto p = echo_request(Family::v6, 1, 2, Bytes{});
  ASSERT_EQ(p.size(), 8u);
  EXPECT_EQ(p[0], 128);
  EXPECT_EQ(p[2], 0);
  EXPECT_EQ(p[3], 0);
}

Bytes ipv4_header(std::uint8_t protocol, std::array<std::uint8_t, 4> src,
                  std::array<std::uint8_t, 4> dst) {
  Bytes h(20, 0);
  h[0] = 0x45;
  h[8] = 64;
  h[9] = protocol;
  std::copy(src.begin(), src.end(), h.begin() + 12);
  std::copy(dst.begin(), dst.end(), h.begin() + 16);
  return h;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(IcmpDecode, ReplyFromADatagramSocket) {
  Bytes reply = echo_request(Family::v4, 7, 9, Bytes{0xaa});
  reply[0] = 0;
  auto m = decode(Family::v4, reply, false);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->kind, Message::Kind::echo_reply);
  EXPECT_EQ(m->id, 7);
  EXPECT_EQ(m->seq, 9);
}

TEST(IcmpDecode, ReplyFromARawV4SocketHasAnIpHeaderToSkip) {
  Bytes reply = echo_request(Family::v4, 7, 9, Bytes{});
  reply[0] = 0;
  auto data = concat({ipv4_header(1, {127, 0, 0, 5}, {127, 0, 0, 1}), reply});
  auto m = decode(Family::v4, data, true);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->kind, Message::Kind::echo_reply);
  EXPECT_EQ(m->seq, 9);
  // With options: IHL 6.
  Bytes with_options = ipv4_header(1, {1, 2, 3, 4}, {5, 6, 7, 8});
  with_options[0] = 0x46;
  with_options.insert(with_options.end(), {1, 1, 1, 0});
  auto m2 = decode(Family::v4, concat({with_options, reply}), true);
  ASSERT_TRUE(m2.has_value());
  EXPECT_EQ(m2->id, 7);
}

TEST(IcmpDecode, OurOwnRequestsAndOtherTrafficAreIgnored) {
  auto request = echo_request(Family::v4, 7, 9, Bytes{});
  EXPECT_FALSE(decode(Family::v4, request, false).has_value());
  Bytes redirect = {5, 1, 0, 0, 0, 0, 0, 0};
  EXPECT_FALSE(decode(Family::v4, redirect, false).has_value());
  EXPECT_FALSE(decode(Family::v4, Bytes{0, 0, 0}, false).has_value());
  // A raw datagram that is not IPv4/ICMP.
  auto udp = concat({ipv4_header(17, {1, 1, 1, 1}, {2, 2, 2, 2}), Bytes(8, 0)});
  EXPECT_FALSE(decode(Family::v4, udp, true).has_value());
  EXPECT_FALSE(decode(Family::v4, Bytes{0x45, 0, 0}, true).has_value());
  auto v6request = echo_request(Family::v6, 1, 1, Bytes{});
  EXPECT_FALSE(decode(Family::v6, v6request, false).has_value());
}

TEST(IcmpDecode, HostUnreachableQuotingOurEcho) {
  const Bytes error_header = {3, 1, 0, 0, 0, 0, 0, 0};
  auto quoted = concat({ipv4_header(1, {10, 0, 0, 2}, {10, 99, 0, 1}),
                        echo_request(Family::v4, 0x1234, 42, Bytes(8, 0))});
  auto data = concat({ipv4_header(1, {10, 0, 0, 1}, {10, 0, 0, 2}), error_header, quoted});
  auto m = decode(Family::v4, data, true);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->kind, Message::Kind::unreachable);
  EXPECT_EQ(m->id, 0x1234);
  EXPECT_EQ(m->seq, 42);
  EXPECT_EQ(m->quoted_destination, (Bytes{10, 99, 0, 1}));
  EXPECT_EQ(describe_error(Family::v4, m->type, m->code), "host unreachable");
  // Quoting somebody's UDP packet: not about our echoes.
  auto udp_quote = concat({ipv4_header(17, {10, 0, 0, 2}, {10, 99, 0, 1}), Bytes(8, 0)});
  EXPECT_FALSE(decode(Family::v4, concat({error_header, udp_quote}), false).has_value());
}

TEST(IcmpDecode, V6ReplyAndAddressUnreachable) {
  Bytes reply = echo_request(Family::v6, 3, 4, Bytes{});
  reply[0] = 129;
  auto m = decode(Family::v6, reply, false);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->kind, Message::Kind::echo_reply);
  EXPECT_EQ(m->seq, 4);

  Bytes ip6(40, 0);
  ip6[0] = 0x60;
  ip6[6] = 58;
  ip6[39] = 1;  // destination ...::1
  auto error = concat({Bytes{1, 3, 0, 0, 0, 0, 0, 0}, ip6, echo_request(Family::v6, 3, 5, {})});
  auto e = decode(Family::v6, error, false);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->kind, Message::Kind::unreachable);
  EXPECT_EQ(e->seq, 5);
  EXPECT_EQ(e->quoted_destination.size(), 16u);
  EXPECT_EQ(describe_error(Family::v6, e->type, e->code), "address unreachable");
}

}  // namespace
}  // namespace storewatch::probes::icmp
