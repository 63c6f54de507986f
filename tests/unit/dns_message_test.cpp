// The DNS wire codec: byte-exact queries and hand-built replies, the bad
// ones included.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "probes/dns_message.h"
#include "probes/dns_probe.h"
#include "tests/support/support.h"

namespace storewatch::probes::dns {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Bytes = std::vector<std::uint8_t>;

// A reply written by hand, section by section.
struct Wire {
  Bytes b;

  Wire& u8(int v) {
    b.push_back(static_cast<std::uint8_t>(v));
    return *this;
  }
  Wire& u16(int v) { return u8(v >> 8).u8(v & 0xFF); }
  Wire& u32(std::uint32_t v) { return u16(static_cast<int>(v >> 16)).u16(v & 0xFFFF); }
  Wire& label(std::string_view s) {
    u8(static_cast<int>(s.size()));
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  /// Labels of a dotted name, then the zero byte.
  Wire& name(std::string_view dotted) {
    while (!dotted.empty()) {
      const auto dot = dotted.find('.');
      label(dotted.substr(0, dot));
      dotted = dot == std::string_view::npos ? "" : dotted.substr(dot + 1);
    }
    return u8(0);
  }
  Wire& pointer(int offset) { return u8(0xC0 | (offset >> 8)).u8(offset & 0xFF); }
  Wire& header(int id, int flags, int qd, int an, int ns = 0, int ar = 0) {
    return u16(id).u16(flags).u16(qd).u16(an).u16(ns).u16(ar);
  }
  Wire& question(std::string_view n, int qtype) { return name(n).u16(qtype).u16(1); }
  /// Record header after its owner name: type, class IN, ttl, rdlength.
  Wire& rr(int rtype, int rdlength) { return u16(rtype).u16(1).u32(300).u16(rdlength); }
  std::size_t size() const { return b.size(); }
};

constexpr int kReply = 0x8180;  // QR, RD, RA, NOERROR
constexpr int kQname = 12;      // offset of the question name

TEST(DnsMessage, EncodesAQueryByteForByte) {
  auto q = encode_query(0xBEEF, "pos.store.lan", type::A);
  ASSERT_TRUE(q) << q.error().message;
  const Bytes expected{0xBE, 0xEF, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
                       0x00, 3,    'p',  'o',  's',  5,    's',  't',  'o',  'r',  'e',
                       3,    'l',  'a',  'n',  0,    0x00, 0x01, 0x00, 0x01};
  EXPECT_EQ(*q, expected);
  // A final dot changes nothing; MX is type 15.
  auto mx = encode_query(0x0102, "store.lan.", type::MX);
  ASSERT_TRUE(mx);
  const Bytes expected_mx{0x01, 0x02, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
                          0x00, 0x00, 0x00, 5,    's',  't',  'o',  'r',  'e',
                          3,    'l',  'a',  'n',  0,    0x00, 0x0F, 0x00, 0x01};
  EXPECT_EQ(*mx, expected_mx);
}

TEST(DnsMessage, RefusesNamesThatCannotBeEncoded) {
  EXPECT_THAT(encode_query(1, "a..b", type::A).error().message, HasSubstr("empty label"));
  EXPECT_THAT(encode_query(1, std::string(64, 'x') + ".lan", type::A).error().message,
              HasSubstr("longer than 63"));
  std::string long_name;
  for (int i = 0; i < 30; ++i) long_name += "abcdefghi.";
  EXPECT_THAT(encode_query(1, long_name, type::A).error().message, HasSubstr("255"));
  EXPECT_FALSE(encode_query(1, "", type::A));
  EXPECT_TRUE(encode_query(1, ".", type::NS));
}

TEST(DnsMessage, ParsesAnAReplyWithACompressedOwner) {
  Wire w;
  w.header(0x1234, kReply, 1, 2).question("pos.store.lan", type::A);
  w.pointer(kQname).rr(type::A, 4).u8(10).u8(20).u8(1).u8(11);
  w.pointer(kQname).rr(type::A, 4).u8(10).u8(20).u8(1).u8(12);
  auto m = parse_message(w.b);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->header.id, 0x1234);
  EXPECT_TRUE(m->header.qr);
  EXPECT_FALSE(m->header.tc);
  EXPECT_EQ(m->header.rcode, rcode::noerror);
  ASSERT_EQ(m->answers.size(), 2u);
  EXPECT_EQ(m->answers[0].name, "pos.store.lan");
  EXPECT_EQ(m->answers[0].ttl, 300u);
  EXPECT_TRUE(check_reply(*m, 0x1234, "POS.store.lan.", type::A));
  EXPECT_THAT(answer_for(*m, "pos.store.lan", type::A).values,
              ElementsAre("10.20.1.11", "10.20.1.12"));
}

TEST(DnsMessage, ParsesAaaa) {
  Wire w;
  w.header(7, kReply, 1, 1).question("gw.store.lan", type::AAAA);
  w.pointer(kQname).rr(type::AAAA, 16).u16(0x2001).u16(0x0db8);
  for (int i = 0; i < 5; ++i) w.u16(0);
  w.u16(1);
  auto m = parse_message(w.b);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_THAT(answer_for(*m, "gw.store.lan", type::AAAA).values, ElementsAre("2001:db8::1"));
}

TEST(DnsMessage, FollowsACnameChain) {
  // www.store.lan CNAME web.store.lan, web.store.lan CNAME pos.store.lan, A.
  Wire w;
  w.header(9, kReply, 1, 3).question("www.store.lan", type::A);
  const auto rdata1 = w.size() + 12;  // after the owner pointer and the rr header
  w.pointer(kQname).rr(type::CNAME, 6).label("web").pointer(kQname + 4);
  const auto rdata2 = w.size() + 12;
  w.pointer(static_cast<int>(rdata1)).rr(type::CNAME, 6).label("pos").pointer(kQname + 4);
  w.pointer(static_cast<int>(rdata2)).rr(type::A, 4).u8(10).u8(20).u8(1).u8(11);
  auto m = parse_message(w.b);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->answers[0].data, "web.store.lan");
  EXPECT_EQ(m->answers[1].name, "web.store.lan");
  EXPECT_EQ(m->answers[2].name, "pos.store.lan");
  const auto a = answer_for(*m, "www.store.lan", type::A);
  EXPECT_THAT(a.values, ElementsAre("10.20.1.11"));
  EXPECT_THAT(a.chain, ElementsAre("web.store.lan", "pos.store.lan"));
  // Asked for the CNAME itself, the first link is the answer.
  EXPECT_THAT(answer_for(*m, "www.store.lan", type::CNAME).values, ElementsAre("web.store.lan"));
}

TEST(DnsMessage, ACnameLoopInTheAnswersEnds) {
  Wire w;
  w.header(9, kReply, 1, 2).question("a.lan", type::A);
  w.pointer(kQname).rr(type::CNAME, 4).label("b").pointer(kQname + 2);
  w.name("b.lan").rr(type::CNAME, 2).pointer(kQname);
  auto m = parse_message(w.b);
  ASSERT_TRUE(m) << m.error().message;
  const auto a = answer_for(*m, "a.lan", type::A);
  EXPECT_TRUE(a.values.empty());
  // Each link once: a.lan -> b.lan -> a.lan, then the loop ends (the fuzz
  // target found the chain one longer than the answers: b, a, b).
  EXPECT_THAT(a.chain, ElementsAre("b.lan", "a.lan"));

  // A name that is its own CNAME, many times over (a hostile reply of
  // thousands): one link, however many records.
  Wire self;
  const int n = 2000;
  self.header(9, kReply, 1, n).question("a.lan", type::A);
  for (int i = 0; i < n; ++i) self.pointer(kQname).rr(type::CNAME, 2).pointer(kQname);
  m = parse_message(self.b);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_THAT(answer_for(*m, "a.lan", type::A).chain, ElementsAre("a.lan"));
}

TEST(DnsMessage, ACnameChainEndsAfterSixteenLinks) {
  // c0.lan CNAME c1.lan, ..., c19.lan CNAME c20.lan, c20.lan A 10.0.0.1.
  const int links = 20;
  Wire w;
  w.header(9, kReply, 1, links + 1).question("c0.lan", type::A);
  for (int i = 0; i < links; ++i) {
    const std::string target = "c" + std::to_string(i + 1) + ".lan";
    w.name("c" + std::to_string(i) + ".lan")
        .rr(type::CNAME, static_cast<int>(target.size() + 2))
        .name(target);
  }
  w.name("c20.lan").rr(type::A, 4).u8(10).u8(0).u8(0).u8(1);
  auto m = parse_message(w.b);
  ASSERT_TRUE(m) << m.error().message;
  const auto a = answer_for(*m, "c0.lan", type::A);
  EXPECT_TRUE(a.values.empty());
  ASSERT_EQ(a.chain.size(), kMaxCnameChain);
  EXPECT_EQ(a.chain.back(), "c16.lan");
}

TEST(DnsMessage, ParsesMxTxtSrvAndNs) {
  Wire w;
  w.header(3, kReply, 1, 4).question("store.lan", type::MX);
  w.pointer(kQname).rr(type::MX, 2 + 7).u16(10).label("mail").pointer(kQname);
  w.pointer(kQname).rr(type::TXT, 7 + 6).label("v=spf1").label(" -all");
  w.pointer(kQname).rr(type::SRV, 6 + 2).u16(1).u16(5).u16(8080).pointer(kQname);
  w.pointer(kQname).rr(type::NS, 5).label("ns").pointer(kQname);
  auto m = parse_message(w.b);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_THAT(answer_for(*m, "store.lan", type::MX).values, ElementsAre("10 mail.store.lan"));
  EXPECT_THAT(answer_for(*m, "store.lan", type::TXT).values, ElementsAre("v=spf1 -all"));
  EXPECT_THAT(answer_for(*m, "store.lan", type::SRV).values, ElementsAre("1 5 8080 store.lan"));
  EXPECT_THAT(answer_for(*m, "store.lan", type::NS).values, ElementsAre("ns.store.lan"));
}

TEST(DnsMessage, RejectsACompressionLoop) {
  Wire self;
  self.header(1, kReply, 1, 1).question("x.lan", type::A);
  const int at = static_cast<int>(self.size());
  self.pointer(at).rr(type::A, 4).u32(0);  // points at itself
  auto m = parse_message(self.b);
  ASSERT_FALSE(m);
  EXPECT_THAT(m.error().message, HasSubstr("compression loop"));

  // Two names pointing at each other: the second pointer goes forward.
  Wire pair;
  pair.header(1, kReply, 1, 1);
  const int first = static_cast<int>(pair.size());
  pair.label("a").pointer(first + 8).u16(type::A).u16(1);  // question name -> answer name
  pair.label("b").pointer(first).rr(type::A, 4).u32(0);
  auto m2 = parse_message(pair.b);
  ASSERT_FALSE(m2);
  EXPECT_THAT(m2.error().message, HasSubstr("compression loop"));
}

TEST(DnsMessage, RejectsTruncatedPacketsAtEveryLength) {
  Wire w;
  w.header(5, kReply, 1, 1).question("pos.store.lan", type::A);
  w.pointer(kQname).rr(type::A, 4).u8(10).u8(20).u8(1).u8(11);
  ASSERT_TRUE(parse_message(w.b));
  for (std::size_t n = 0; n < w.size(); ++n) {
    const std::span<const std::uint8_t> cut(w.b.data(), n);
    auto m = parse_message(cut);
    ASSERT_FALSE(m) << n;
    EXPECT_THAT(m.error().message, HasSubstr("truncated")) << n;
  }
}

TEST(DnsMessage, RejectsBadRecordData) {
  Wire w;
  w.header(5, kReply, 1, 1).question("pos.store.lan", type::A);
  w.pointer(kQname).rr(type::A, 3).u8(10).u8(20).u8(1);
  auto m = parse_message(w.b);
  ASSERT_FALSE(m);
  EXPECT_THAT(m.error().message, HasSubstr("expected 4"));

  Wire label_type;
  label_type.header(5, kReply, 1, 0).u8(0x40).u8(0).u16(1).u16(1);
  EXPECT_THAT(parse_message(label_type.b).error().message, HasSubstr("bad label type"));
}

TEST(DnsMessage, ChecksIdQrAndQuestion) {
  Wire w;
  w.header(0x1111, kReply, 1, 0).question("pos.store.lan", type::A);
  auto m = parse_message(w.b);
  ASSERT_TRUE(m);
  auto wrong_id = check_reply(*m, 0x2222, "pos.store.lan", type::A);
  ASSERT_FALSE(wrong_id);
  EXPECT_THAT(wrong_id.error().message, HasSubstr("0x1111"));
  EXPECT_THAT(wrong_id.error().message, HasSubstr("0x2222"));
  EXPECT_THAT(check_reply(*m, 0x1111, "other.store.lan", type::A).error().message,
              HasSubstr("not other.store.lan A"));
  EXPECT_FALSE(check_reply(*m, 0x1111, "pos.store.lan", type::AAAA));

  Wire query;
  query.header(0x1111, 0x0100, 1, 0).question("pos.store.lan", type::A);
  EXPECT_THAT(
      check_reply(*parse_message(query.b), 0x1111, "pos.store.lan", type::A).error().message,
      HasSubstr("QR"));
}

TEST(DnsMessage, ReadsRcodeAndTruncationFromTheHeader) {
  Wire nx;
  nx.header(1, 0x8183, 1, 0).question("nope.store.lan", type::A);
  auto m = parse_message(nx.b);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->header.rcode, rcode::nxdomain);
  EXPECT_EQ(rcode_name(m->header.rcode), "NXDOMAIN");
  EXPECT_EQ(rcode_name(rcode::servfail), "SERVFAIL");
  EXPECT_EQ(rcode_name(11), "RCODE 11");

  Wire tc;
  tc.header(1, 0x8380, 1, 0);  // TC set, the question cut off
  auto h = parse_header(tc.b);
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->tc);
  EXPECT_FALSE(parse_header(Bytes{1, 2, 3}));
}

TEST(DnsMessage, TypeNamesAndReverseNames) {
  EXPECT_EQ(type_code("aaaa"), type::AAAA);
  EXPECT_EQ(type_code("SRV"), type::SRV);
  EXPECT_FALSE(type_code("AXFR"));
  EXPECT_EQ(type_name(type::MX), "MX");
  EXPECT_EQ(type_name(65), "TYPE65");
  EXPECT_EQ(reverse_name("10.20.1.11"), "11.1.20.10.in-addr.arpa");
  EXPECT_EQ(reverse_name("2001:db8::1"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
  EXPECT_FALSE(reverse_name("pos.store.lan"));
}

TEST(DnsServer, ParsesTheFormsTheServerKeyTakes) {
  auto plain = probes::parse_dns_server("10.20.0.1");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->port(), 53);
  auto with_port = probes::parse_dns_server("127.0.0.1:5353");
  ASSERT_TRUE(with_port);
  EXPECT_EQ(with_port->address().to_string(), "127.0.0.1");
  EXPECT_EQ(with_port->port(), 5353);
  auto v6 = probes::parse_dns_server("[::1]:5353");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->address().is_v6());
  EXPECT_EQ(v6->port(), 5353);
  auto bare_v6 = probes::parse_dns_server("2001:db8::53");
  ASSERT_TRUE(bare_v6);
  EXPECT_EQ(bare_v6->port(), 53);
  EXPECT_FALSE(probes::parse_dns_server("dns.store.lan"));
  EXPECT_FALSE(probes::parse_dns_server("127.0.0.1:0"));
  EXPECT_FALSE(probes::parse_dns_server("127.0.0.1:70000"));
  EXPECT_FALSE(probes::parse_dns_server("[::1"));
  EXPECT_FALSE(probes::parse_dns_server("[::1]5353"));
}

TEST(DnsServer, TakesTheFirstNameserverOfResolvConf) {
  test::TempDir dir;
  test::write_file(dir / "resolv.conf",
                   "# generated\nsearch store.lan\nnameserver 10.20.0.53\nnameserver 1.1.1.1\n");
  auto first = probes::first_nameserver(dir / "resolv.conf");
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, "10.20.0.53");
  test::write_file(dir / "empty.conf", "search store.lan\n");
  EXPECT_THAT(probes::first_nameserver(dir / "empty.conf").error().message,
              HasSubstr("no nameserver"));
  EXPECT_FALSE(probes::first_nameserver(dir / "missing.conf"));
}

}  // namespace
}  // namespace storewatch::probes::dns
