#include "tests/support/tcp_device.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

namespace storewatch::test {

TcpDevice::TcpDevice(std::string host, int port) : host_(std::move(host)), port_(port) {
  up();
}

TcpDevice::~TcpDevice() {
  down();
}

void TcpDevice::up() {
  if (fd_ >= 0) return;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port_));
  ::inet_pton(AF_INET, host_.c_str(), &addr.sin_addr);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 64) != 0) {
    std::string why = std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error("device cannot listen on " + host_ + ":" + std::to_string(port_) +
                             ": " + why);
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  stop_ = false;
  int fd = fd_;
  thread_ = std::thread([this, fd] {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept(fd, nullptr, nullptr);
      if (c >= 0) {
        ++accepted_;
        ::close(c);
      }
    }
  });
}

void TcpDevice::down() {
  if (fd_ < 0) return;
  stop_ = true;
  thread_.join();
  ::close(fd_);
  fd_ = -1;
}

}  // namespace storewatch::test
