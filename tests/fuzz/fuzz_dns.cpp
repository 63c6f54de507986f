// The DNS message decoder (probes/dns_message.h) on a reply as the dns probe
// gets it over UDP or TCP: the header, the whole message, the checks against
// the query, and the answer the probe reports. Everything the decoder hands
// on (names, record data) is in presentation form: printable ASCII, since it
// ends up in probe messages, the database and JSON.

#include <span>

#include "probes/dns_message.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

void check_printable(const std::string& s) {
  for (unsigned char c : s) FUZZ_CHECK(c >= 0x20 && c <= 0x7E);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace dns = storewatch::probes::dns;
  // A reply over TCP is at most 64 KB.
  if (size > 65535) return 0;
  const std::span<const std::uint8_t> wire(data, size);

  auto header = dns::parse_header(wire);
  FUZZ_CHECK(header.ok() == (size >= dns::kHeaderSize));
  auto reply = dns::parse_message(wire);
  if (!reply) {
    FUZZ_CHECK(!reply.error().message.empty());
    return 0;
  }
  FUZZ_CHECK(reply->header.id == header->id && reply->header.rcode == header->rcode);
  FUZZ_CHECK(reply->questions.size() == reply->header.qdcount);
  FUZZ_CHECK(reply->answers.size() == reply->header.ancount);
  for (const auto& q : reply->questions) check_printable(q.name);
  for (const auto& r : reply->answers) {
    check_printable(r.name);
    check_printable(r.data);
    check_printable(dns::type_name(r.type));
  }
  check_printable(dns::rcode_name(reply->header.rcode));

  // Judged as the probe judges it, against the question it echoes (or a
  // fixed one).
  std::string name = "pos.store.lan";
  std::uint16_t qtype = dns::type::A;
  if (!reply->questions.empty()) {
    name = reply->questions.front().name;
    qtype = reply->questions.front().type;
  }
  (void)dns::check_reply(*reply, reply->header.id, name, qtype);
  const dns::Answer answer = dns::answer_for(*reply, name, qtype);
  FUZZ_CHECK(answer.values.size() <= reply->answers.size());
  FUZZ_CHECK(answer.chain.size() <= reply->answers.size());
  FUZZ_CHECK(answer.chain.size() <= dns::kMaxCnameChain);
  (void)dns::reverse_name(name);

  // The query for that name, where it is one the probe could ask, reads back.
  if (auto query = dns::encode_query(header->id, name, qtype)) {
    auto back = dns::parse_message(*query);
    FUZZ_CHECK(back.ok());
    FUZZ_CHECK(back->questions.size() == 1 && back->questions.front().type == qtype);
  }
  return 0;
}
