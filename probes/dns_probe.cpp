#include "probes/dns_probe.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <fstream>
#include <random>
#include <sstream>

#include "probes/attempt.h"
#include "probes/dns_message.h"

namespace storewatch::probes {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kResolvConf = "/etc/resolv.conf";
// We send no EDNS, so a server may send at most 512 bytes over UDP; a
// datagram that fills this buffer is treated as truncated.
constexpr std::size_t kUdpBuffer = 4096;

constexpr config::KeySpec kKeys[] = {
    {"query", config::KeyKind::string, true, "",
     "name to resolve; for PTR an IP address may be given and is reversed"},
    {"server", config::KeyKind::string, false, "",
     "DNS server: \"IP\", \"IP:port\" or \"[IPv6]:port\" (port 53 if left out); default the "
     "first nameserver of /etc/resolv.conf"},
    {"record_type", config::KeyKind::choice, false, "A", "record type to ask for",
     "A|AAAA|CNAME|MX|TXT|NS|PTR|SRV"},
    {"expect", config::KeyKind::string, false, "",
     "an answer must equal this (an address, a name, \"10 mail.example.com\" for MX, the text "
     "for TXT); any answer will do when left out"},
};

std::uint16_t qtype_of(const config::ProbeConfig& c) {
  return dns::type_code(c.str("record_type")).value_or(dns::type::A);
}

// The name actually asked for: PTR queries take an address and reverse it.
std::string query_name(const config::ProbeConfig& c) {
  const std::string& query = c.str("query");
  if (qtype_of(c) == dns::type::PTR) {
    if (auto reversed = dns::reverse_name(query)) return *reversed;
  }
  return query;
}

std::string optional_str(const config::ProbeConfig& c, std::string_view key) {
  return c.has(key) ? c.str(key) : std::string();
}

std::vector<std::string> validate(const config::ProbeConfig& c) {
  std::vector<std::string> problems;
  if (auto q = dns::encode_query(0, query_name(c), qtype_of(c)); !q) {
    problems.push_back(fmt::format("query \"{}\": {}", c.str("query"), q.error().message));
  }
  if (const auto server = optional_str(c, "server"); !server.empty()) {
    if (auto ep = parse_dns_server(server); !ep) {
      problems.push_back(fmt::format("server: {}", ep.error().message));
    }
  }
  return problems;
}

double ms_between(Clock::time_point from, Clock::time_point to) {
  return static_cast<double>(
             std::chrono::duration_cast<std::chrono::microseconds>(to - from).count()) /
         1000.0;
}

std::uint16_t random_id() {
  thread_local std::mt19937 gen{std::random_device{}()};
  return static_cast<std::uint16_t>(std::uniform_int_distribution<int>(0, 0xFFFF)(gen));
}

struct DnsAttempt final : Attempt {
  DnsAttempt(const asio::any_io_executor& ex, Probe::Done done)
      : Attempt(std::move(done)), udp_socket(ex), tcp_socket(ex) {}
  udp::socket udp_socket;
  tcp::socket tcp_socket;
  udp::endpoint server;
  std::string server_text;
  std::string name;
  std::uint16_t qtype = 0;
  std::string expect;
  std::uint16_t id = 0;
  std::vector<std::uint8_t> query;
  std::array<std::uint8_t, 2> tcp_length{};
  std::vector<std::uint8_t> buffer;
  bool over_tcp = false;
  Clock::time_point sent;

  void release() override {
    boost::system::error_code ignored;
    udp_socket.close(ignored);
    tcp_socket.close(ignored);
  }
};

using AttemptPtr = std::shared_ptr<DnsAttempt>;

// Compares an answer with `expect`: addresses as addresses ("::1" is
// "0::1"), names without regard to case or a final dot.
bool matches(const std::string& value, const std::string& expect) {
  boost::system::error_code e1, e2;
  const auto a = asio::ip::make_address(value, e1);
  const auto b = asio::ip::make_address(expect, e2);
  if (!e1 && !e2) return a == b;
  return dns::same_name(value, expect);
}

void evaluate(DnsAttempt& a, std::span<const std::uint8_t> wire, double rtt_ms) {
  const std::string where = fmt::format("{}{}", a.server_text, a.over_tcp ? " over TCP" : "");
  auto reply = dns::parse_message(wire);
  if (!reply) {
    a.finish(ProbeStatus::unknown,
             fmt::format("malformed reply from {}: {}", where, reply.error().message));
    return;
  }
  if (auto s = dns::check_reply(*reply, a.id, a.name, a.qtype); !s) {
    a.finish(ProbeStatus::unknown,
             fmt::format("malformed reply from {}: {}", where, s.error().message));
    return;
  }
  ProbeResult r;
  r.metrics["rtt_ms"] = rtt_ms;
  r.metrics["tcp"] = a.over_tcp ? 1.0 : 0.0;
  const std::string asked = fmt::format("{} {}", a.name, dns::type_name(a.qtype));
  const int rc = reply->header.rcode;
  if (rc != dns::rcode::noerror) {
    r.metrics["answers"] = 0;
    r.status = ProbeStatus::fail;
    switch (rc) {
      case dns::rcode::nxdomain:
        r.message = fmt::format("NXDOMAIN: {} does not exist (server {})", a.name, where);
        break;
      case dns::rcode::servfail:
        r.message = fmt::format("SERVFAIL: {} could not answer {}", where, asked);
        break;
      case dns::rcode::refused:
        r.message = fmt::format("REFUSED: {} refused to answer {}", where, asked);
        break;
      default:
        r.message =
            fmt::format("{}: {} answered {} with an error", dns::rcode_name(rc), where, asked);
        break;
    }
    a.finish(std::move(r));
    return;
  }
  const auto answer = dns::answer_for(*reply, a.name, a.qtype);
  r.metrics["answers"] = static_cast<double>(answer.values.size());
  const std::string via =
      answer.chain.empty() ? "" : fmt::format(" via CNAME {}", fmt::join(answer.chain, " -> "));
  if (answer.values.empty()) {
    r.status = ProbeStatus::fail;
    r.message = fmt::format("no {} record for {}{} (NOERROR, empty answer from {})",
                            dns::type_name(a.qtype), a.name, via, where);
    a.finish(std::move(r));
    return;
  }
  const std::string got = fmt::format("{}", fmt::join(answer.values, ", "));
  if (!a.expect.empty() && std::none_of(answer.values.begin(), answer.values.end(),
                                        [&](const auto& v) { return matches(v, a.expect); })) {
    r.status = ProbeStatus::fail;
    r.message = fmt::format("{}{}: expected {}, got {}", asked, via, a.expect, got);
    a.finish(std::move(r));
    return;
  }
  r.status = ProbeStatus::ok;
  r.message = fmt::format("{}{}: {} ({} in {:.1f} ms)", asked, via, got, where, rtt_ms);
  a.finish(std::move(r));
}

void ask_over_tcp(const AttemptPtr& a) {
  a->over_tcp = true;
  boost::system::error_code ignored;
  a->udp_socket.close(ignored);
  const tcp::endpoint ep(a->server.address(), a->server.port());
  a->tcp_socket.async_connect(ep, [a](const boost::system::error_code& ec) {
    if (a->over()) return;
    if (ec) {
      a->finish(ProbeStatus::fail,
                fmt::format("the UDP reply was truncated and TCP to {} failed: {}", a->server_text,
                            ec.message()));
      return;
    }
    a->tcp_length = {static_cast<std::uint8_t>(a->query.size() >> 8),
                     static_cast<std::uint8_t>(a->query.size() & 0xFF)};
    const std::array<asio::const_buffer, 2> request{asio::buffer(a->tcp_length),
                                                    asio::buffer(a->query)};
    asio::async_write(
        a->tcp_socket, request, [a](const boost::system::error_code& ec2, std::size_t) {
          if (a->over()) return;
          if (ec2) {
            a->finish(ProbeStatus::fail,
                      fmt::format("send query to {} over TCP: {}", a->server_text, ec2.message()));
            return;
          }
          asio::async_read(
              a->tcp_socket, asio::buffer(a->tcp_length),
              [a](const boost::system::error_code& ec3, std::size_t) {
                if (a->over()) return;
                if (ec3) {
                  a->finish(ec3 == asio::error::eof ? ProbeStatus::unknown : ProbeStatus::fail,
                            fmt::format("read reply from {} over TCP: {}", a->server_text,
                                        ec3 == asio::error::eof ? "the server closed the connection"
                                                                : ec3.message()));
                  return;
                }
                a->buffer.resize(
                    static_cast<std::size_t>((a->tcp_length[0] << 8) | a->tcp_length[1]));
                asio::async_read(
                    a->tcp_socket, asio::buffer(a->buffer),
                    [a](const boost::system::error_code& ec4, std::size_t n) {
                      if (a->over()) return;
                      if (ec4) {
                        a->finish(ProbeStatus::unknown,
                                  fmt::format("malformed reply from {} over TCP: {} of {} bytes, "
                                              "then {}",
                                              a->server_text, n, a->buffer.size(), ec4.message()));
                        return;
                      }
                      evaluate(*a, a->buffer, ms_between(a->sent, Clock::now()));
                    });
              });
        });
  });
}

void receive_udp(const AttemptPtr& a) {
  a->udp_socket.async_receive(asio::buffer(a->buffer), [a](const boost::system::error_code& ec,
                                                           std::size_t n) {
    if (a->over()) return;
    if (ec == asio::error::connection_refused) {
      a->finish(ProbeStatus::fail, fmt::format("no DNS server at {} (connection refused: ICMP port "
                                               "unreachable)",
                                               a->server_text));
      return;
    }
    if (ec) {
      a->finish(ProbeStatus::fail,
                fmt::format("receive from {}: {}", a->server_text, ec.message()));
      return;
    }
    const double rtt = ms_between(a->sent, Clock::now());
    const std::span<const std::uint8_t> wire(a->buffer.data(), n);
    auto header = dns::parse_header(wire);
    if (header && header->id == a->id && header->qr && (header->tc || n == kUdpBuffer)) {
      ask_over_tcp(a);
      return;
    }
    evaluate(*a, wire, rtt);
  });
}

class DnsProbe final : public Probe {
 public:
  DnsProbe(const config::ProbeConfig& c, asio::any_io_executor ex)
      : name_(query_name(c)),
        qtype_(qtype_of(c)),
        expect_(optional_str(c, "expect")),
        ex_(std::move(ex)) {
    std::string server = optional_str(c, "server");
    if (server.empty()) {
      // Read once: the check itself must not block the loop on a file.
      auto first = first_nameserver(std::string(kResolvConf));
      if (!first) {
        setup_error_ = fmt::format("no server given and {}", first.error().message);
        return;
      }
      server = *first;
    }
    auto ep = parse_dns_server(server);
    if (!ep) {
      setup_error_ = fmt::format("server \"{}\": {}", server, ep.error().message);
      return;
    }
    server_ = *ep;
    server_text_ = server_.address().is_v6()
                       ? fmt::format("[{}]:{}", server_.address().to_string(), server_.port())
                       : fmt::format("{}:{}", server_.address().to_string(), server_.port());
  }

  void start(Done done) override {
    auto a = std::make_shared<DnsAttempt>(ex_, std::move(done));
    current_.track(a);
    if (!setup_error_.empty()) {
      a->finish(ProbeStatus::unknown, setup_error_);
      return;
    }
    a->server = server_;
    a->server_text = server_text_;
    a->name = name_;
    a->qtype = qtype_;
    a->expect = expect_;
    a->id = random_id();
    auto query = dns::encode_query(a->id, a->name, a->qtype);
    if (!query) {
      a->finish(ProbeStatus::unknown, fmt::format("query {}: {}", a->name, query.error().message));
      return;
    }
    a->query = std::move(*query);
    a->buffer.resize(kUdpBuffer);
    boost::system::error_code ec;
    // A connected UDP socket hears only its server, and hears ICMP port
    // unreachable as "connection refused" instead of waiting out the timeout.
    a->udp_socket.open(server_.protocol(), ec);
    if (!ec) a->udp_socket.connect(server_, ec);
    if (ec) {
      a->finish(ProbeStatus::fail, fmt::format("UDP socket to {}: {}", server_text_, ec.message()));
      return;
    }
    a->sent = Clock::now();
    a->udp_socket.async_send(
        asio::buffer(a->query), [a](const boost::system::error_code& e, std::size_t) {
          if (a->over()) return;
          if (e) {
            a->finish(ProbeStatus::fail,
                      fmt::format("send query to {}: {}", a->server_text, e.message()));
            return;
          }
          receive_udp(a);
        });
  }

  void cancel() override { current_.cancel(); }

 private:
  std::string name_;
  std::uint16_t qtype_;
  std::string expect_;
  asio::any_io_executor ex_;
  udp::endpoint server_;
  std::string server_text_;
  std::string setup_error_;
  CurrentAttempt current_;
};

std::unique_ptr<Probe> create_dns(const config::ProbeConfig& c, asio::any_io_executor ex) {
  return std::make_unique<DnsProbe>(c, std::move(ex));
}

}  // namespace

Result<udp::endpoint> parse_dns_server(std::string_view text) {
  std::string_view host = text;
  std::uint16_t port = 53;
  auto parse_port = [&](std::string_view p) -> bool {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
    if (ec != std::errc() || end != p.data() + p.size() || value == 0 || value > 65535) {
      return false;
    }
    port = static_cast<std::uint16_t>(value);
    return true;
  };
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return Error{fmt::format("\"{}\": no closing ]", text)};
    host = text.substr(1, close - 1);
    const auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (!rest.starts_with(':') || !parse_port(rest.substr(1))) {
        return Error{fmt::format("\"{}\": the port after ] must be \":1..65535\"", text)};
      }
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    const auto colon = text.find(':');
    host = text.substr(0, colon);
    if (!parse_port(text.substr(colon + 1))) {
      return Error{fmt::format("\"{}\": the port must be 1..65535", text)};
    }
  }
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(std::string(host), ec);
  if (ec) {
    return Error{fmt::format(
        "\"{}\" is not an IP address (use \"IP\", \"IP:port\" or \"[IPv6]:port\")", text)};
  }
  return udp::endpoint(address, port);
}

Result<std::string> first_nameserver(const std::filesystem::path& resolv_conf) {
  std::ifstream in(resolv_conf);
  if (!in) return Error{fmt::format("{} cannot be read", resolv_conf.string())};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string keyword, value;
    if (words >> keyword >> value && keyword == "nameserver") return value;
  }
  return Error{fmt::format("{} has no nameserver line", resolv_conf.string())};
}

ProbeType dns_probe_type() {
  return {{"dns", kKeys, &validate}, &create_dns};
}

}  // namespace storewatch::probes
