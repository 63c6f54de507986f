// SNTP packets and the offset arithmetic (probes/sntp.h).

#include "probes/sntp.h"

#include <gtest/gtest.h>

namespace storewatch::probes::sntp {
namespace {

constexpr UnixNanos kSecond = 1'000'000'000;

TEST(Sntp, TimestampsRoundTripThroughUnixTime) {
  for (UnixNanos t : {UnixNanos{0}, UnixNanos{1'700'000'000} * kSecond + 123'456'789,
                      UnixNanos{2'085'978'496} * kSecond + 5,  // 2036-02-07, NTP era 1
                      UnixNanos{2'100'000'000} * kSecond + 999'999'999}) {
    EXPECT_EQ(to_unix_nanos(to_ntp(t)), t) << t;
  }
}

TEST(Sntp, KnownTimestamp) {
  // 1970-01-01 is 2208988800 s after NTP's epoch; half a second is 2^31.
  const Timestamp t = to_ntp(kSecond / 2);
  EXPECT_EQ(t.seconds, 2'208'988'800u);
  EXPECT_EQ(t.fraction, 0x8000'0000u);
}

TEST(Sntp, Era1AfterThe2036Wrap) {
  // Seconds 0 in era 1 is 2036-02-07T06:28:16Z = 2085978496 Unix seconds.
  EXPECT_EQ(to_unix_nanos(Timestamp{0, 0}), UnixNanos{2'085'978'496} * kSecond);
  EXPECT_EQ(to_ntp(UnixNanos{2'085'978'496} * kSecond).seconds, 0u);
}

TEST(Sntp, ClientRequestIsVersion4Mode3WithOurTransmitTime) {
  const Timestamp sent{0xE000'0001, 0x1234'5678};
  const auto bytes = client_request(sent);
  EXPECT_EQ(bytes[0], 0x23);  // LI 0, VN 4, mode 3
  for (std::size_t i = 1; i < 40; ++i) EXPECT_EQ(bytes[i], 0) << i;
  EXPECT_EQ(bytes[40], 0xE0);
  EXPECT_EQ(bytes[43], 0x01);
  EXPECT_EQ(bytes[44], 0x12);
  EXPECT_EQ(bytes[47], 0x78);
}

Packet server_reply(Timestamp originate) {
  Packet p;
  p.leap = 0;
  p.version = 4;
  p.mode = 4;
  p.stratum = 2;
  p.poll = 6;
  p.precision = -20;
  p.root_delay = 0x0000'0100;
  p.reference_id = {'G', 'P', 'S', 0};
  p.originate = originate;
  p.receive = {0xE000'0002, 0};
  p.transmit = {0xE000'0002, 0x8000'0000};
  return p;
}

TEST(Sntp, EncodeDecodeRoundTrip) {
  const Packet p = server_reply({0xE000'0001, 7});
  const auto bytes = encode(p);
  auto back = decode(bytes);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->leap, 0);
  EXPECT_EQ(back->version, 4);
  EXPECT_EQ(back->mode, 4);
  EXPECT_EQ(back->stratum, 2);
  EXPECT_EQ(back->poll, 6);
  EXPECT_EQ(back->precision, -20);
  EXPECT_EQ(back->root_delay, 0x100u);
  EXPECT_EQ(back->reference_id, p.reference_id);
  EXPECT_EQ(back->originate, p.originate);
  EXPECT_EQ(back->receive, p.receive);
  EXPECT_EQ(back->transmit, p.transmit);
}

TEST(Sntp, ShortPacketsDoNotDecode) {
  std::vector<std::uint8_t> garbage(47, 0x24);
  EXPECT_FALSE(decode(garbage).has_value());
  EXPECT_FALSE(decode({}).has_value());
  // Longer (extension fields, a MAC) is fine.
  std::vector<std::uint8_t> longer(68, 0);
  longer[0] = 0x24;
  EXPECT_TRUE(decode(longer).has_value());
}

TEST(Sntp, AcceptsAServerAnswerToOurRequest) {
  const Timestamp sent{0xE000'0001, 7};
  EXPECT_EQ(check_reply(server_reply(sent), sent).kind, Verdict::Kind::usable);
}

TEST(Sntp, RejectsWhatIsNotAnAnswerToUs) {
  const Timestamp sent{0xE000'0001, 7};
  Packet p = server_reply({0xE000'0001, 8});
  auto v = check_reply(p, sent);
  EXPECT_EQ(v.kind, Verdict::Kind::invalid);
  EXPECT_NE(v.message.find("origin"), std::string::npos);

  p = server_reply(sent);
  p.mode = 3;
  EXPECT_EQ(check_reply(p, sent).kind, Verdict::Kind::invalid);
  p = server_reply(sent);
  p.version = 0;
  EXPECT_EQ(check_reply(p, sent).kind, Verdict::Kind::invalid);
  p = server_reply(sent);
  p.transmit = {};
  EXPECT_EQ(check_reply(p, sent).kind, Verdict::Kind::invalid);
}

TEST(Sntp, KissOfDeathGivesItsCode) {
  const Timestamp sent{0xE000'0001, 7};
  Packet p = server_reply(sent);
  p.leap = 3;
  p.stratum = 0;
  p.reference_id = {'R', 'A', 'T', 'E'};
  auto v = check_reply(p, sent);
  EXPECT_EQ(v.kind, Verdict::Kind::kiss_o_death);
  EXPECT_EQ(v.message, "RATE");
}

TEST(Sntp, UnsynchronizedServers) {
  const Timestamp sent{0xE000'0001, 7};
  Packet p = server_reply(sent);
  p.stratum = 16;
  EXPECT_EQ(check_reply(p, sent).kind, Verdict::Kind::unsynchronized);
  p = server_reply(sent);
  p.leap = 3;
  EXPECT_EQ(check_reply(p, sent).kind, Verdict::Kind::unsynchronized);
}

TEST(Sntp, OffsetAndDelay) {
  const UnixNanos t0 = UnixNanos{1'700'000'000} * kSecond;
  // The server is 5 s ahead; 10 ms each way; it takes 1 ms to answer.
  const UnixNanos ms = 1'000'000;
  const UnixNanos t1 = t0;
  const UnixNanos t2 = t0 + 10 * ms + 5 * kSecond;
  const UnixNanos t3 = t2 + ms;
  const UnixNanos t4 = t0 + 21 * ms;
  const auto m = measure(t1, t2, t3, t4);
  EXPECT_NEAR(m.offset_ms, 5000.0, 1e-6);
  EXPECT_NEAR(m.delay_ms, 20.0, 1e-6);

  // Behind by 1.5 s, asymmetric path: offset error is half the asymmetry.
  const auto behind = measure(t0, t0 + 30 * ms - 1500 * ms, t0 + 30 * ms - 1500 * ms, t0 + 40 * ms);
  EXPECT_NEAR(behind.offset_ms, -1500.0 + 10.0, 1e-6);
  EXPECT_NEAR(behind.delay_ms, 40.0, 1e-6);
}

}  // namespace
}  // namespace storewatch::probes::sntp
