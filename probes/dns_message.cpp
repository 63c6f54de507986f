#include "probes/dns_message.h"

#include <boost/asio/ip/address.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>

namespace storewatch::probes::dns {
namespace {

using Bytes = std::span<const std::uint8_t>;

constexpr std::size_t kMaxName = 255;
constexpr std::size_t kMaxLabel = 63;

struct TypeName {
  std::uint16_t code;
  std::string_view name;
};
constexpr std::array<TypeName, 9> kTypeNames{{
    {type::A, "A"},
    {type::NS, "NS"},
    {type::CNAME, "CNAME"},
    {type::SOA, "SOA"},
    {type::PTR, "PTR"},
    {type::MX, "MX"},
    {type::TXT, "TXT"},
    {type::AAAA, "AAAA"},
    {type::SRV, "SRV"},
}};

std::uint16_t u16(Bytes w, std::size_t at) {
  return static_cast<std::uint16_t>((w[at] << 8) | w[at + 1]);
}

std::uint32_t u32(Bytes w, std::size_t at) {
  return (static_cast<std::uint32_t>(u16(w, at)) << 16) | u16(w, at + 2);
}

void put16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v & 0xFF));
}

// Printable as is in presentation form; anything else becomes \DDD.
void append_escaped(std::string& out, std::uint8_t c, bool in_label) {
  if (c < 0x21 || c > 0x7E || c == '\\' || c == '"' || (in_label && c == '.')) {
    if (!in_label && c == ' ') {
      out += ' ';
      return;
    }
    out += fmt::format("\\{:03d}", c);
    return;
  }
  out += static_cast<char>(c);
}

Error truncated(std::string_view what, std::size_t at) {
  return Error{fmt::format("truncated packet: {} at offset {} runs past the end", what, at)};
}

// Reads the possibly compressed name at `pos`; `pos` moves past it (past the
// first pointer, if any). Each pointer must point before the start of the
// run of labels it ends, so offsets strictly decrease and a loop is
// impossible.
Result<std::string> read_name(Bytes w, std::size_t& pos) {
  std::string out;
  std::size_t cur = pos;
  std::size_t run_start = pos;
  std::size_t octets = 1;  // the final zero
  bool jumped = false;
  for (;;) {
    if (cur >= w.size()) return truncated("a name", cur);
    const std::uint8_t len = w[cur];
    if ((len & 0xC0) == 0xC0) {
      if (cur + 1 >= w.size()) return truncated("a compression pointer", cur);
      const std::size_t target = static_cast<std::size_t>(((len & 0x3F) << 8) | w[cur + 1]);
      if (target >= run_start) {
        return Error{
            fmt::format("compression loop: the pointer at offset {} points to {}, not before {}",
                        cur, target, run_start)};
      }
      if (!jumped) pos = cur + 2;
      jumped = true;
      cur = run_start = target;
      continue;
    }
    if ((len & 0xC0) != 0) {
      return Error{fmt::format("bad label type 0x{:02X} at offset {}", len & 0xC0, cur)};
    }
    if (len == 0) {
      if (!jumped) pos = cur + 1;
      break;
    }
    if (cur + 1 + len > w.size()) return truncated("a label", cur);
    octets += 1 + len;
    if (octets > kMaxName) {
      return Error{fmt::format("name longer than {} octets at offset {}", kMaxName, pos)};
    }
    if (!out.empty()) out += '.';
    for (std::size_t i = 0; i < len; ++i) append_escaped(out, w[cur + 1 + i], true);
    cur += 1 + len;
  }
  if (out.empty()) out = ".";
  return out;
}

Result<std::string> rdata_text(Bytes w, std::uint16_t rtype, std::size_t at, std::size_t len) {
  const std::size_t end = at + len;
  auto need = [&](std::size_t n) -> Status {
    if (len != n) {
      return Error{fmt::format("{} record data of {} bytes at offset {}, expected {}",
                               type_name(rtype), len, at, n)};
    }
    return {};
  };
  // A name inside the data must end inside the data.
  auto name_at = [&](std::size_t p) -> Result<std::string> {
    auto name = read_name(w, p);
    if (!name) return name;
    if (p != end) {
      return Error{fmt::format("{} record data at offset {}: the name does not fill its {} bytes",
                               type_name(rtype), at, len)};
    }
    return name;
  };
  switch (rtype) {
    case type::A: {
      if (auto s = need(4); !s) return s.error();
      return fmt::format("{}.{}.{}.{}", w[at], w[at + 1], w[at + 2], w[at + 3]);
    }
    case type::AAAA: {
      if (auto s = need(16); !s) return s.error();
      boost::asio::ip::address_v6::bytes_type b;
      std::copy_n(w.begin() + static_cast<std::ptrdiff_t>(at), 16, b.begin());
      return boost::asio::ip::address_v6(b).to_string();
    }
    case type::CNAME:
    case type::NS:
    case type::PTR: return name_at(at);
    case type::MX: {
      if (len < 3) return truncated("MX record data", at);
      auto name = name_at(at + 2);
      if (!name) return name;
      return fmt::format("{} {}", u16(w, at), *name);
    }
    case type::SRV: {
      if (len < 7) return truncated("SRV record data", at);
      auto name = name_at(at + 6);
      if (!name) return name;
      return fmt::format("{} {} {} {}", u16(w, at), u16(w, at + 2), u16(w, at + 4), *name);
    }
    case type::TXT: {
      std::string out;
      for (std::size_t p = at; p < end;) {
        const std::size_t n = w[p];
        if (p + 1 + n > end) return truncated("a TXT string", p);
        for (std::size_t i = 0; i < n; ++i) append_escaped(out, w[p + 1 + i], false);
        p += 1 + n;
      }
      return out;
    }
    default: {
      std::string out = fmt::format("\\# {}", len);
      if (len > 0) out += ' ';
      for (std::size_t i = at; i < end; ++i) out += fmt::format("{:02x}", w[i]);
      return out;
    }
  }
}

Result<Record> read_record(Bytes w, std::size_t& pos) {
  auto name = read_name(w, pos);
  if (!name) return name.error();
  if (pos + 10 > w.size()) return truncated("a record header", pos);
  Record r;
  r.name = std::move(*name);
  r.type = u16(w, pos);
  r.klass = u16(w, pos + 2);
  r.ttl = u32(w, pos + 4);
  const std::size_t rdlength = u16(w, pos + 8);
  pos += 10;
  if (pos + rdlength > w.size()) return truncated("record data", pos);
  auto data = rdata_text(w, r.type, pos, rdlength);
  if (!data) return data.error();
  r.data = std::move(*data);
  pos += rdlength;
  return r;
}

char lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

std::string_view without_final_dot(std::string_view s) {
  if (s.size() > 1 && s.back() == '.') s.remove_suffix(1);
  return s;
}

}  // namespace

std::optional<std::uint16_t> type_code(std::string_view name) {
  for (const auto& t : kTypeNames) {
    if (t.name.size() == name.size() &&
        std::equal(name.begin(), name.end(), t.name.begin(),
                   [](char a, char b) { return lower(a) == lower(b); })) {
      return t.code;
    }
  }
  return std::nullopt;
}

std::string type_name(std::uint16_t code) {
  for (const auto& t : kTypeNames) {
    if (t.code == code) return std::string(t.name);
  }
  return fmt::format("TYPE{}", code);
}

std::string rcode_name(int rcode) {
  switch (rcode) {
    case rcode::noerror: return "NOERROR";
    case rcode::formerr: return "FORMERR";
    case rcode::servfail: return "SERVFAIL";
    case rcode::nxdomain: return "NXDOMAIN";
    case rcode::notimp: return "NOTIMP";
    case rcode::refused: return "REFUSED";
    default: return fmt::format("RCODE {}", rcode);
  }
}

Result<std::vector<std::uint8_t>> encode_query(std::uint16_t id, std::string_view name,
                                               std::uint16_t qtype) {
  std::vector<std::uint8_t> out;
  out.reserve(kHeaderSize + name.size() + 6);
  put16(out, id);
  out.push_back(0x01);  // RD
  out.push_back(0x00);
  put16(out, 1);  // QDCOUNT
  put16(out, 0);
  put16(out, 0);
  put16(out, 0);
  name = without_final_dot(name);
  std::size_t octets = 1;
  if (name != ".") {
    if (name.empty()) return Error{"empty query name"};
    for (std::size_t start = 0; start <= name.size();) {
      const std::size_t dot = std::min(name.find('.', start), name.size());
      const std::size_t len = dot - start;
      if (len == 0) return Error{fmt::format("empty label in \"{}\"", name)};
      if (len > kMaxLabel) {
        return Error{fmt::format("label \"{}\" is longer than {} octets", name.substr(start, len),
                                 kMaxLabel)};
      }
      octets += 1 + len;
      out.push_back(static_cast<std::uint8_t>(len));
      out.insert(out.end(), name.begin() + static_cast<std::ptrdiff_t>(start),
                 name.begin() + static_cast<std::ptrdiff_t>(dot));
      start = dot + 1;
    }
  }
  if (octets > kMaxName) {
    return Error{fmt::format("name is longer than {} octets", kMaxName)};
  }
  out.push_back(0);
  put16(out, qtype);
  put16(out, kClassIn);
  return out;
}

Result<Header> parse_header(Bytes w) {
  if (w.size() < kHeaderSize) {
    return Error{fmt::format("truncated packet: {} bytes, shorter than a DNS header", w.size())};
  }
  Header h;
  h.id = u16(w, 0);
  h.qr = (w[2] & 0x80) != 0;
  h.opcode = (w[2] >> 3) & 0x0F;
  h.aa = (w[2] & 0x04) != 0;
  h.tc = (w[2] & 0x02) != 0;
  h.rd = (w[2] & 0x01) != 0;
  h.ra = (w[3] & 0x80) != 0;
  h.rcode = w[3] & 0x0F;
  h.qdcount = u16(w, 4);
  h.ancount = u16(w, 6);
  h.nscount = u16(w, 8);
  h.arcount = u16(w, 10);
  return h;
}

Result<Message> parse_message(Bytes w) {
  auto header = parse_header(w);
  if (!header) return header.error();
  Message m;
  m.header = *header;
  std::size_t pos = kHeaderSize;
  for (int i = 0; i < m.header.qdcount; ++i) {
    auto name = read_name(w, pos);
    if (!name) return name.error();
    if (pos + 4 > w.size()) return truncated("a question", pos);
    m.questions.push_back({std::move(*name), u16(w, pos), u16(w, pos + 2)});
    pos += 4;
  }
  const int records = m.header.ancount + m.header.nscount + m.header.arcount;
  for (int i = 0; i < records; ++i) {
    auto record = read_record(w, pos);
    if (!record) return record.error();
    if (i < m.header.ancount) m.answers.push_back(std::move(*record));
  }
  return m;
}

bool same_name(std::string_view a, std::string_view b) {
  a = without_final_dot(a);
  b = without_final_dot(b);
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

Status check_reply(const Message& reply, std::uint16_t id, std::string_view name,
                   std::uint16_t qtype) {
  const Header& h = reply.header;
  if (h.id != id) {
    return Error{fmt::format("reply id 0x{:04x} does not match the query's 0x{:04x}", h.id, id)};
  }
  if (!h.qr) return Error{"the reply is a query (QR not set)"};
  if (h.opcode != 0) return Error{fmt::format("reply has opcode {}, not QUERY", h.opcode)};
  if (reply.questions.empty() && h.rcode != rcode::noerror) return {};
  if (reply.questions.size() != 1) {
    return Error{fmt::format("reply has {} questions, expected 1", reply.questions.size())};
  }
  const Question& q = reply.questions.front();
  if (!same_name(q.name, name) || q.type != qtype || q.klass != kClassIn) {
    return Error{fmt::format("reply is for {} {}, not {} {}", q.name, type_name(q.type), name,
                             type_name(qtype))};
  }
  return {};
}

Answer answer_for(const Message& reply, std::string_view name, std::uint16_t qtype) {
  Answer a;
  std::string current(without_final_dot(name));
  auto owned_by = [&](const Record& r, std::uint16_t t) {
    return r.type == t && r.klass == kClassIn && same_name(r.name, current);
  };
  // Each step follows a CNAME record not followed before: a loop ends when
  // it comes round (the chain shows it once), and the walk is bounded by the
  // answers and by kMaxCnameChain, however many records a reply holds.
  std::vector<bool> followed(reply.answers.size(), false);
  for (;;) {
    for (const Record& r : reply.answers) {
      if (owned_by(r, qtype)) a.values.push_back(r.data);
    }
    if (!a.values.empty() || qtype == type::CNAME) return a;
    if (a.chain.size() >= kMaxCnameChain) return a;
    auto cname = std::find_if(reply.answers.begin(), reply.answers.end(),
                              [&](const Record& r) { return owned_by(r, type::CNAME); });
    if (cname == reply.answers.end()) return a;
    const auto at = static_cast<std::size_t>(cname - reply.answers.begin());
    if (followed[at]) return a;
    followed[at] = true;
    current = cname->data;
    a.chain.push_back(current);
  }
}

std::optional<std::string> reverse_name(std::string_view text) {
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(text), ec);
  if (ec) return std::nullopt;
  std::string out;
  if (address.is_v4()) {
    const auto b = address.to_v4().to_bytes();
    return fmt::format("{}.{}.{}.{}.in-addr.arpa", b[3], b[2], b[1], b[0]);
  }
  const auto b = address.to_v6().to_bytes();
  for (auto it = b.rbegin(); it != b.rend(); ++it) {
    out += fmt::format("{:x}.{:x}.", *it & 0x0F, *it >> 4);
  }
  return out + "ip6.arpa";
}

}  // namespace storewatch::probes::dns
