#pragma once
/// \file
/// The DNS wire format (RFC 1035) as far as the `dns` probe needs it: build
/// a query, read a reply. Replies are outside input: every read is bounds-
/// checked, compressed names may only point backwards (so a pointer loop
/// cannot spin), and names are limited to 255 octets.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace storewatch::probes::dns {

inline constexpr std::size_t kHeaderSize = 12;
inline constexpr std::uint16_t kClassIn = 1;

namespace type {
inline constexpr std::uint16_t A = 1;
inline constexpr std::uint16_t NS = 2;
inline constexpr std::uint16_t CNAME = 5;
inline constexpr std::uint16_t SOA = 6;
inline constexpr std::uint16_t PTR = 12;
inline constexpr std::uint16_t MX = 15;
inline constexpr std::uint16_t TXT = 16;
inline constexpr std::uint16_t AAAA = 28;
inline constexpr std::uint16_t SRV = 33;
}  // namespace type

namespace rcode {
inline constexpr int noerror = 0;
inline constexpr int formerr = 1;
inline constexpr int servfail = 2;
inline constexpr int nxdomain = 3;
inline constexpr int notimp = 4;
inline constexpr int refused = 5;
}  // namespace rcode

/// The record type for a name the probe accepts ("A", "mx"), if known.
std::optional<std::uint16_t> type_code(std::string_view name);
/// "A", "MX", ... or "TYPE65" for a type without a name here.
std::string type_name(std::uint16_t code);
/// "NOERROR", "NXDOMAIN", ... or "RCODE 9".
std::string rcode_name(int rcode);

struct Header {
  std::uint16_t id = 0;
  bool qr = false;  ///< a reply
  int opcode = 0;
  bool aa = false;
  bool tc = false;  ///< truncated: ask again over TCP
  bool rd = false;
  bool ra = false;
  int rcode = 0;
  std::uint16_t qdcount = 0, ancount = 0, nscount = 0, arcount = 0;
};

struct Question {
  std::string name;  ///< presentation form without the final dot ("pos.store.lan"; root is ".")
  std::uint16_t type = 0;
  std::uint16_t klass = 0;
};

/// One resource record; `data` in presentation form: "10.20.1.11", "2001:db8::1",
/// a name, "10 mail.store.lan" (MX), the joined strings (TXT),
/// "priority weight port target" (SRV), or "\# N hex" for other types.
struct Record {
  std::string name;
  std::uint16_t type = 0;
  std::uint16_t klass = 0;
  std::uint32_t ttl = 0;
  std::string data;
};

/// A parsed message. Authority and additional records are read (and so
/// checked) but not kept.
struct Message {
  Header header;
  std::vector<Question> questions;
  std::vector<Record> answers;
};

/// A standard query for `name` and `qtype`, class IN, with the given id and
/// recursion desired. Fails on an empty label, a label over 63 octets or a
/// name over 255 octets.
Result<std::vector<std::uint8_t>> encode_query(std::uint16_t id, std::string_view name,
                                               std::uint16_t qtype);

/// Just the 12-byte header (enough to see TC or a wrong id).
Result<Header> parse_header(std::span<const std::uint8_t> wire);

/// The whole message; fails, saying where, on anything out of bounds or
/// malformed.
Result<Message> parse_message(std::span<const std::uint8_t> wire);

/// Whether `reply` answers the query (id, QR, opcode, and the one question
/// echoed); a reply with an error rcode may leave out the question.
Status check_reply(const Message& reply, std::uint16_t id, std::string_view name,
                   std::uint16_t qtype);

/// Names compare case-insensitively; a final dot does not matter.
bool same_name(std::string_view a, std::string_view b);

/// The most CNAME links answer_for follows (resolvers give up near there too):
/// the chain ends up in the probe's message.
inline constexpr std::size_t kMaxCnameChain = 16;

/// What the answer section says about `name`/`qtype`: the CNAME chain from
/// `name` is followed (within the answers, each CNAME record at most once, at
/// most kMaxCnameChain links) and the records of `qtype` at its end are
/// collected. For qtype CNAME the CNAME records of `name` itself are the
/// answer.
struct Answer {
  std::vector<std::string> values;  ///< `data` of each matching record
  std::vector<std::string> chain;   ///< the CNAME targets followed, in order
};
Answer answer_for(const Message& reply, std::string_view name, std::uint16_t qtype);

/// The PTR query name of an IP address literal ("10.20.1.11" ->
/// "11.1.20.10.in-addr.arpa"), or nullopt if `text` is not one.
std::optional<std::string> reverse_name(std::string_view text);

}  // namespace storewatch::probes::dns
