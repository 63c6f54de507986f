#include "tests/support/store_lab.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <stdexcept>

namespace storewatch::test {
namespace {

/// One request/reply exchange over the control socket; throws on failure.
std::string exchange(const std::filesystem::path& socket_path, const std::string& line) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = line + "\n";
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      while (reply.empty() || reply.back() != '\n') {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        reply.append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  ::close(fd);
  if (reply.empty()) throw std::runtime_error("storelab did not answer \"" + line + "\"");
  return reply;
}

}  // namespace

std::filesystem::path storelab_script() {
  return std::filesystem::path(STOREWATCH_SOURCE_DIR) / "tests" / "lab" / "storelab.py";
}

StoreLab::StoreLab(const std::string& devices_toml) : socket_(dir_ / "lab.sock") {
  write_file(dir_ / "lab.toml", devices_toml);
  child_ = std::make_unique<Child>(
      std::vector<std::string>{"python3", storelab_script().string(), "serve", "--devices",
                               (dir_ / "lab.toml").string(), "--control", socket_.string(), "--pki",
                               pki_dir().string()},
      dir_.path());
  const bool answered = wait_until(
      [this] {
        if (!child_->running()) return true;
        try {
          return ctl("list").value("ok", false);
        } catch (const std::exception&) {
          return false;
        }
      },
      // Making the https devices' certificates takes a few openssl runs.
      60s);
  if (!answered || !child_->running()) {
    throw std::runtime_error("storelab did not start: " + child_->err());
  }
}

StoreLab::~StoreLab() {
  if (child_) child_->stop(SIGTERM, 5s);
}

nlohmann::json StoreLab::ctl(const std::string& command) const {
  return nlohmann::json::parse(exchange(socket_, command));
}

void StoreLab::fault(const std::string& device, const std::string& fault) const {
  auto reply = ctl("fault " + device + " " + fault);
  if (!reply.value("ok", false)) {
    throw std::runtime_error("storelab: " + reply.value("error", reply.dump()));
  }
}

nlohmann::json StoreLab::stats(const std::string& device) const {
  auto reply = ctl("stats " + device);
  if (!reply.value("ok", false)) {
    throw std::runtime_error("storelab: " + reply.value("error", reply.dump()));
  }
  return reply;
}

}  // namespace storewatch::test
