#pragma once
/// \file
/// A fake store device: a TCP listener that accepts and closes, and can be
/// taken down (connections refused) and brought back up on the same port.

#include <atomic>
#include <string>
#include <thread>

namespace storewatch::test {

class TcpDevice {
 public:
  /// Listens on host:port (port 0 picks a free one).
  explicit TcpDevice(std::string host = "127.0.0.1", int port = 0);
  ~TcpDevice();
  TcpDevice(const TcpDevice&) = delete;
  TcpDevice& operator=(const TcpDevice&) = delete;

  int port() const { return port_; }
  void down();
  void up();
  int accepted() const { return accepted_.load(); }

 private:
  std::string host_;
  int port_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

}  // namespace storewatch::test
