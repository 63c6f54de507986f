#include "probes/icmp_channel.h"

#include <fcntl.h>
#include <linux/errqueue.h>
#include <linux/icmp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/execution_context.hpp>
#include <boost/asio/ip/icmp.hpp>

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <unordered_map>

namespace storewatch::probes::icmp {
namespace {

namespace asio = boost::asio;
using asio::ip::icmp;

// Like ping's default: 56 bytes of payload, 64-byte ICMP messages.
constexpr std::size_t kPayloadSize = 56;
// Enough for a reply to our echo and for an error quoting it in full.
constexpr std::size_t kReceiveBuffer = 2048;
// A socket that keeps failing to receive is given up rather than spun on.
constexpr int kMaxReceiveErrors = 64;
// Bounds one drain of the error queue.
constexpr int kMaxQueuedErrors = 256;

std::string ping_group_range() {
  std::ifstream in("/proc/sys/net/ipv4/ping_group_range");
  std::string low, high;
  if (!(in >> low >> high)) return "unreadable";
  return low + " " + high;
}

class Channel;

/// Per io_context: the channel of each family while one is in use.
class ChannelRegistry : public asio::execution_context::service {
 public:
  using key_type = ChannelRegistry;
  static inline asio::execution_context::id id;
  explicit ChannelRegistry(asio::execution_context& context) : service(context) {}
  std::weak_ptr<Channel> channels[2];

 private:
  void shutdown() override {}
};

class Channel final : public EchoChannel, public std::enable_shared_from_this<Channel> {
 public:
  Channel(const asio::any_io_executor& ex, Family family, SocketKind kind)
      : family_(family), kind_(kind), socket_(ex) {}

  Status open(int fd) {
    boost::system::error_code ec;
    socket_.assign(family_ == Family::v4 ? icmp::v4() : icmp::v6(), fd, ec);
    if (ec) {
      ::close(fd);
      return Error{"cannot use the ICMP socket: " + ec.message()};
    }
    socket_.non_blocking(true, ec);
    if (kind_ == SocketKind::raw) {
      // Kernel-side filters so our own requests on loopback and unrelated
      // ICMP traffic never wake us.
      if (family_ == Family::v4) {
        icmp_filter filter{};
        filter.data =
            ~((1u << ICMP_ECHOREPLY) | (1u << ICMP_DEST_UNREACH) | (1u << ICMP_TIME_EXCEEDED));
        ::setsockopt(fd, SOL_RAW, ICMP_FILTER, &filter, sizeof filter);
      } else {
        icmp6_filter filter;
        ICMP6_FILTER_SETBLOCKALL(&filter);
        ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filter);
        ICMP6_FILTER_SETPASS(ICMP6_DST_UNREACH, &filter);
        ICMP6_FILTER_SETPASS(ICMP6_TIME_EXCEEDED, &filter);
        ::setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter);
      }
      std::random_device random;
      id_ = static_cast<std::uint16_t>(random() & 0xffff);
    } else {
      // A datagram ICMP socket reports ICMP errors only through its error
      // queue; the kernel sets the identifier (the socket's "port") and
      // delivers only replies that carry it.
      const int on = 1;
      if (family_ == Family::v4) {
        ::setsockopt(fd, SOL_IP, IP_RECVERR, &on, sizeof on);
      } else {
        ::setsockopt(fd, SOL_IPV6, IPV6_RECVERR, &on, sizeof on);
      }
    }
    // A sweep's replies can arrive together; the kernel caps this at rmem_max.
    const int rcvbuf = 1 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    receive();
    return Status::success();
  }

  Result<std::uint16_t> send(const asio::ip::address& to, Listener listener) override {
    if (pending_.size() >= 0xffff) return Error{"too many echoes in flight"};
    while (pending_.count(next_seq_) > 0) ++next_seq_;
    const std::uint16_t seq = next_seq_++;
    std::array<std::uint8_t, kPayloadSize> payload{};
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i);
    const auto packet = echo_request(family_, id_, seq, payload);
    boost::system::error_code ec;
    socket_.send_to(asio::buffer(packet), icmp::endpoint(to, 0), 0, ec);
    if (ec == asio::error::would_block) return Error{"the ICMP socket's send buffer is full"};
    if (ec) return Error{ec.message()};
    pending_[seq] = Pending{to, std::move(listener)};
    return seq;
  }

  void forget(std::uint16_t seq) override { pending_.erase(seq); }

  SocketKind socket_kind() const override { return kind_; }

 private:
  struct Pending {
    asio::ip::address to;
    Listener listener;
  };
  struct ReceiveState {
    std::array<std::uint8_t, kReceiveBuffer> buffer;
    icmp::endpoint sender;
  };

  void receive() {
    auto state = std::make_shared<ReceiveState>();
    std::weak_ptr<Channel> weak = shared_from_this();
    socket_.async_receive_from(
        asio::buffer(state->buffer), state->sender,
        [weak, state](const boost::system::error_code& ec, std::size_t n) {
          auto self = weak.lock();
          if (!self || ec == asio::error::operation_aborted) return;
          if (ec) {
            // A datagram socket's pending ICMP error surfaces as a failed
            // receive; the error queue says which echo it is about.
            if (self->kind_ == SocketKind::datagram) self->drain_error_queue();
            if (++self->receive_errors_ > kMaxReceiveErrors) {
              self->fail_all("the ICMP socket keeps failing: " + ec.message());
              return;
            }
          } else {
            self->receive_errors_ = 0;
            self->on_datagram(std::span(state->buffer.data(), n), state->sender.address());
          }
          self->receive();
        });
  }

  void deliver(std::uint16_t seq, const EchoEvent& event) {
    auto it = pending_.find(seq);
    if (it == pending_.end()) return;
    // The listener may forget this or other echoes, or drop the channel.
    Listener listener = it->second.listener;
    listener(event);
  }

  void on_datagram(std::span<const std::uint8_t> data, const asio::ip::address& from) {
    auto m = decode(family_, data, kind_ == SocketKind::raw && family_ == Family::v4);
    if (!m) return;
    // A raw socket sees every process's echoes: ours carry our identifier.
    if (kind_ == SocketKind::raw && m->id != id_) return;
    auto it = pending_.find(m->seq);
    if (it == pending_.end()) return;
    const auto now = std::chrono::steady_clock::now();
    if (m->kind == Message::Kind::echo_reply) {
      if (from != it->second.to) return;
      deliver(m->seq, EchoEvent{EchoEvent::Kind::reply, m->seq, now, {}});
      return;
    }
    if (!m->quoted_destination.empty() && !same_address(m->quoted_destination, it->second.to)) {
      return;
    }
    deliver(m->seq, EchoEvent{EchoEvent::Kind::error, m->seq, now,
                              fmt::format("{} (from {})", describe_error(family_, m->type, m->code),
                                          from.to_string())});
  }

  static bool same_address(const std::vector<std::uint8_t>& bytes, const asio::ip::address& a) {
    if (a.is_v4()) {
      auto b = a.to_v4().to_bytes();
      return bytes.size() == b.size() && std::equal(b.begin(), b.end(), bytes.begin());
    }
    auto b = a.to_v6().to_bytes();
    return bytes.size() == b.size() && std::equal(b.begin(), b.end(), bytes.begin());
  }

  void drain_error_queue() {
    const int fd = socket_.native_handle();
    for (int i = 0; i < kMaxQueuedErrors; ++i) {
      std::array<std::uint8_t, kReceiveBuffer> data{};
      alignas(cmsghdr) std::array<char, 512> control{};  // CMSG_FIRSTHDR casts it
      sockaddr_storage name{};
      iovec iov{data.data(), data.size()};
      msghdr msg{};
      msg.msg_name = &name;
      msg.msg_namelen = sizeof name;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      const ssize_t n = ::recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
      if (n < 0) return;
      // The queued packet is our own echo request: its header has the seq.
      if (n < 8) continue;
      const auto seq = static_cast<std::uint16_t>((data[6] << 8) | data[7]);
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        const bool v4 = c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR;
        const bool v6 = c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR;
        if (!v4 && !v6) continue;
        sock_extended_err err;
        std::memcpy(&err, CMSG_DATA(c), sizeof err);
        std::string reason;
        if (err.ee_origin == SO_EE_ORIGIN_ICMP || err.ee_origin == SO_EE_ORIGIN_ICMP6) {
          reason = describe_error(family_, err.ee_type, err.ee_code);
          const auto* offender =
              reinterpret_cast<const sockaddr*>(CMSG_DATA(c) + sizeof(sock_extended_err));
          reason += " (from " + offender_text(offender) + ")";
        } else {
          reason = std::strerror(static_cast<int>(err.ee_errno));
        }
        deliver(seq,
                EchoEvent{EchoEvent::Kind::error, seq, std::chrono::steady_clock::now(), reason});
      }
    }
  }

  static std::string offender_text(const sockaddr* sa) {
    if (sa->sa_family == AF_INET) {
      sockaddr_in in;
      std::memcpy(&in, sa, sizeof in);
      asio::ip::address_v4::bytes_type b;
      std::memcpy(b.data(), &in.sin_addr, 4);
      return asio::ip::address_v4(b).to_string();
    }
    if (sa->sa_family == AF_INET6) {
      sockaddr_in6 in6;
      std::memcpy(&in6, sa, sizeof in6);
      asio::ip::address_v6::bytes_type b;
      std::memcpy(b.data(), &in6.sin6_addr, 16);
      return asio::ip::address_v6(b).to_string();
    }
    return "an unknown router";
  }

  void fail_all(const std::string& why) {
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [seq, p] : pending) {
      p.listener(EchoEvent{EchoEvent::Kind::error, seq, std::chrono::steady_clock::now(), why});
    }
  }

  Family family_;
  SocketKind kind_;
  icmp::socket socket_;
  std::uint16_t id_ = 0;
  std::uint16_t next_seq_ = 1;
  int receive_errors_ = 0;
  std::unordered_map<std::uint16_t, Pending> pending_;
};

}  // namespace

Result<std::shared_ptr<EchoChannel>> EchoChannel::acquire(const asio::any_io_executor& executor,
                                                          Family family) {
  auto& registry =
      asio::use_service<ChannelRegistry>(asio::query(executor, asio::execution::context));
  auto& slot = registry.channels[family == Family::v4 ? 0 : 1];
  if (auto open = slot.lock()) return std::shared_ptr<EchoChannel>(open);

  const int domain = family == Family::v4 ? AF_INET : AF_INET6;
  const int protocol =
      family == Family::v4 ? static_cast<int>(IPPROTO_ICMP) : static_cast<int>(IPPROTO_ICMPV6);
  SocketKind kind = SocketKind::datagram;
  int fd = ::socket(domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  const int datagram_errno = errno;
  if (fd < 0) {
    kind = SocketKind::raw;
    fd = ::socket(domain, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  }
  if (fd < 0) {
    const int raw_errno = errno;
    const bool permission = (datagram_errno == EACCES || datagram_errno == EPERM) &&
                            (raw_errno == EACCES || raw_errno == EPERM);
    if (!permission) {
      return Error{fmt::format("cannot open an {} socket: {}",
                               family == Family::v4 ? "ICMP" : "ICMPv6", std::strerror(raw_errno))};
    }
    return Error{fmt::format(
        "not permitted to send ICMP echoes: datagram ICMP sockets are not allowed for group {} "
        "(net.ipv4.ping_group_range is \"{}\") and a raw socket needs CAP_NET_RAW; give storewatch "
        "CAP_NET_RAW (AmbientCapabilities=CAP_NET_RAW in its unit) or set "
        "net.ipv4.ping_group_range to a range that includes group {}",
        ::getgid(), ping_group_range(), ::getgid())};
  }
  auto channel = std::make_shared<Channel>(executor, family, kind);
  if (auto opened = channel->open(fd); !opened) return opened.error();
  slot = channel;
  return std::shared_ptr<EchoChannel>(channel);
}

}  // namespace storewatch::probes::icmp
