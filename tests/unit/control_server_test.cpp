// The control socket's protocol against a real ControlServer on its own loop
// thread and raw Unix-socket clients: good requests, every kind of garbage,
// oversize requests, a client that hangs, and who is on the other end.

#include "agent/control_server.h"

#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "tests/support/support.h"

namespace storewatch::agent {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

/// A raw client: connects, sends bytes, reads one line with a deadline.
class Client {
 public:
  explicit Client(const std::filesystem::path& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Sends all of `bytes`; false once the server has closed.
  bool send(const std::string& bytes) {
    for (std::size_t sent = 0; sent < bytes.size();) {
      ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }

  /// The next line as JSON; nullopt when the server closes or `timeout` passes.
  std::optional<json> answer(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pending_.find('\n') == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return std::nullopt;
      pending_.append(buf, static_cast<std::size_t>(n));
    }
    const auto end = pending_.find('\n');
    json j = json::parse(pending_.substr(0, end), nullptr, false);
    pending_.erase(0, end + 1);
    return j;
  }

  std::optional<json> ask(const std::string& line) {
    if (!send(line + "\n")) return std::nullopt;
    return answer();
  }

  /// True once the server has closed its end (within `timeout`).
  bool closed_by_server(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      if (::recv(fd_, buf, sizeof buf, 0) <= 0) return true;
    }
  }

 private:
  int fd_ = -1;
  std::string pending_;
};

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = ControlServer::open(io_, path_);
    ASSERT_TRUE(server) << server.error().message;
    server_ = std::move(*server);
    server_->handle("echo", [](const json& request, const Peer& peer) {
      return json{{"request", request}, {"uid", peer.uid}, {"user", peer.user}, {"pid", peer.pid}};
    });
    server_->handle("refuse", [](const json&, const Peer&) {
      return json{{"ok", false}, {"error", "not now"}};
    });
    server_->handle("throw", [](const json&, const Peer&) -> json {
      throw std::runtime_error("a handler bug");
    });
    server_->start();
    loop_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (!loop_.joinable()) return;
    std::promise<void> stopped;
    boost::asio::post(io_, [&] {
      server_->stop();
      stopped.set_value();
    });
    stopped.get_future().wait();
    work_.reset();
    io_.stop();
    loop_.join();
  }

  test::TempDir dir_;
  std::filesystem::path path_ = dir_ / "control.sock";
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::unique_ptr<ControlServer> server_;
  std::thread loop_;
};

TEST_F(ControlServerTest, AnswersEachLineAndNamesThePeerFromItsCredentials) {
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  Client c(path_);
  for (int i = 0; i < 3; ++i) {  // one connection, several requests
    auto a = c.ask(R"({"v":1,"op":"echo","n":)" + std::to_string(i) + "}");
    ASSERT_TRUE(a);
    EXPECT_EQ((*a)["ok"], true) << a->dump();
    EXPECT_EQ((*a)["v"], kControlVersion);
    EXPECT_EQ((*a)["request"]["n"], i);
    EXPECT_EQ((*a)["uid"], ::getuid());
    EXPECT_EQ((*a)["pid"], ::getpid());
    const passwd* pw = ::getpwuid(::getuid());
    ASSERT_NE(pw, nullptr);
    EXPECT_EQ((*a)["user"], pw->pw_name);
  }
  auto refused = c.ask(R"({"v":1,"op":"refuse"})");
  ASSERT_TRUE(refused);
  EXPECT_EQ((*refused)["ok"], false);
  EXPECT_EQ((*refused)["error"], "not now");
  EXPECT_EQ((*refused)["v"], kControlVersion);
}

TEST_F(ControlServerTest, GarbageIsRefusedWithAReasonAndTheConnectionStaysUsable) {
  const struct {
    std::string line, error;
  } cases[] = {
      {"hello", "not a JSON object"},
      {"", "not a JSON object"},
      {"[1,2,3]", "not a JSON object"},
      {"\"v\"", "not a JSON object"},
      {R"({"v":1,"op":"echo")", "not a JSON object"},  // cut short
      {std::string("{\"v\":1,\0\"op\":\"echo\"}", 20), "not a JSON object"},
      // A whole request, then a NUL and bytes the parser never read.
      {std::string("{\"v\":1,\"op\":\"echo\"}\0\x91", 21), "not a JSON object"},
      {"\xff\xfe{}", "not a JSON object"},
      {"{}", "unsupported protocol version"},
      {R"({"op":"echo"})", "unsupported protocol version"},
      {R"({"v":2,"op":"echo"})", "unsupported protocol version"},
      {R"({"v":"1","op":"echo"})", "unsupported protocol version"},
      {R"({"v":1.0,"op":"echo"})", "unsupported protocol version"},
      {R"({"v":4294967297,"op":"echo"})", "unsupported protocol version"},  // 2^32 + 1
      {R"({"v":-4294967295,"op":"echo"})", "unsupported protocol version"},
      {R"({"v":1})", "no string \"op\""},
      {R"({"v":1,"op":5})", "no string \"op\""},
      {R"({"v":1,"op":"drop_tables"})", "unknown op \"drop_tables\""},
      {R"({"v":1,"op":"throw"})", "internal error: a handler bug"},
  };
  Client c(path_);
  for (const auto& k : cases) {
    SCOPED_TRACE(k.line);
    auto a = c.ask(k.line);
    ASSERT_TRUE(a) << "no answer";
    EXPECT_EQ((*a)["ok"], false) << a->dump();
    EXPECT_EQ((*a)["v"], kControlVersion);
    EXPECT_THAT((*a)["error"].get<std::string>(), HasSubstr(k.error));
  }
  auto good = c.ask(R"({"v":1,"op":"echo"})");
  ASSERT_TRUE(good);
  EXPECT_EQ((*good)["ok"], true);
}

TEST_F(ControlServerTest, AnOversizeRequestIsRefusedAndClosedAndOthersAreServed) {
  Client big(path_);
  // No newline within the cap: the server stops reading at the cap.
  EXPECT_TRUE(big.send(std::string(kMaxControlRequest + 1, 'x')));
  auto a = big.answer();
  ASSERT_TRUE(a);
  EXPECT_EQ((*a)["ok"], false);
  EXPECT_THAT((*a)["error"].get<std::string>(), HasSubstr("over 65536 bytes"));
  EXPECT_TRUE(big.closed_by_server(5s));

  // A request just under the cap is still read whole.
  Client near(path_);
  const std::string padding(kMaxControlRequest - 64, 'p');
  auto ok = near.ask(R"({"v":1,"op":"echo","pad":")" + padding + "\"}");
  ASSERT_TRUE(ok);
  EXPECT_EQ((*ok)["ok"], true);
  EXPECT_EQ((*ok)["request"]["pad"].get<std::string>().size(), padding.size());
}

TEST_F(ControlServerTest, AClientThatHangsDoesNotStallOthersAndIsClosed) {
  Client silent(path_);   // connects and says nothing
  Client partial(path_);  // starts a request and stops
  ASSERT_TRUE(partial.send(R"({"v":1,"op")"));
  Client greedy(path_);  // asks and never reads: its answers pile up
  for (int i = 0; i < 200; ++i) {
    if (!greedy.send(R"({"v":1,"op":"echo"})"
                     "\n"))
      break;
  }

  for (int i = 0; i < 5; ++i) {
    Client c(path_);
    auto a = c.ask(R"({"v":1,"op":"echo"})");
    ASSERT_TRUE(a) << "a hung client stalled the server";
    EXPECT_EQ((*a)["ok"], true);
  }
  // The server closes the idle ones after its 10 s client timeout.
  EXPECT_TRUE(silent.closed_by_server(20s));
  EXPECT_TRUE(partial.closed_by_server(5s));
}

/// A client whose credentials say `uid`: connected from a thread whose
/// effective uid alone is changed (the raw syscall, not glibc's wrapper, which
/// would change every thread's); the server reads it with SO_PEERCRED.
std::unique_ptr<Client> connect_as(uid_t uid, const std::filesystem::path& path) {
  std::unique_ptr<Client> client;
  std::string failed;
  std::thread([&] {
    if (::syscall(SYS_setresuid, -1, uid, -1) != 0) {
      failed = std::string("setresuid: ") + std::strerror(errno);
      return;
    }
    try {
      client = std::make_unique<Client>(path);
    } catch (const std::exception& e) {
      failed = e.what();
    }
  }).join();
  if (!client) throw std::runtime_error(failed);
  return client;
}

TEST_F(ControlServerTest, ConnectionsAreCappedInAllAndForEachUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as other users";
  // Other users reach the socket as they would the daemon's.
  ::chmod(dir_.path().c_str(), 0755);
  ::chmod(path_.c_str(), 0666);
  std::vector<std::unique_ptr<Client>> held;
  auto served = [](Client& c) {
    auto a = c.ask(R"({"v":1,"op":"echo"})");
    return a && (*a)["ok"] == true;
  };
  for (std::size_t i = 0; i < kMaxControlSessionsPerUser; ++i) {
    held.push_back(std::make_unique<Client>(path_));
    ASSERT_TRUE(served(*held.back())) << i;
  }
  // One user past its share is told so and closed; the others are not.
  {
    Client over(path_);
    auto a = over.answer();
    ASSERT_TRUE(a);
    EXPECT_EQ((*a)["ok"], false);
    EXPECT_THAT((*a)["error"].get<std::string>(),
                HasSubstr(fmt::format("{} open, {} of them", kMaxControlSessionsPerUser,
                                      kMaxControlSessionsPerUser)));
    EXPECT_TRUE(over.closed_by_server(5s));
  }
  const uid_t first = 60001;
  for (uid_t uid = first; held.size() < kMaxControlSessions; ++uid) {
    for (std::size_t i = 0; i < kMaxControlSessionsPerUser && held.size() < kMaxControlSessions;
         ++i) {
      held.push_back(connect_as(uid, path_));
      ASSERT_TRUE(served(*held.back())) << "uid " << uid << ", connection " << i;
    }
  }
  // All are taken: a user with none open is refused too (its count was
  // read from a map entry it then erased, once).
  auto newcomer = connect_as(first + 100, path_);
  auto a = newcomer->answer();
  ASSERT_TRUE(a);
  EXPECT_EQ((*a)["ok"], false);
  EXPECT_THAT((*a)["error"].get<std::string>(),
              HasSubstr(fmt::format("{} open, 0 of them {}'s", kMaxControlSessions, first + 100)));
  EXPECT_TRUE(newcomer->closed_by_server(5s));
  // One closes; its place is free again, for anyone.
  held.pop_back();
  EXPECT_TRUE(test::wait_until(
      [&] {
        auto again = connect_as(first + 100, path_);
        return served(*again);
      },
      5s));
}

// call_daemon says why no daemon answered: nothing there, a socket left
// over, a listener that takes the connection and never answers (hung: named
// by its pid, within the timeout), and a daemon that answers.
TEST(CallDaemon, SaysWhyNoDaemonAnswered) {
  test::TempDir dir;
  const auto path = dir / "control.sock";
  const json request{{"v", kControlVersion}, {"op", "status"}};

  auto call = call_daemon(path, request, 500ms);
  EXPECT_EQ(call.state, DaemonState::not_running);
  EXPECT_EQ(call.connect_errno, ENOENT);
  EXPECT_STREQ(to_string(call.state), "not_running");

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  const int left_over = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::bind(left_over, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(left_over);  // the file stays, nothing listens
  call = call_daemon(path, request, 500ms);
  EXPECT_EQ(call.state, DaemonState::not_running);
  EXPECT_EQ(call.connect_errno, ECONNREFUSED);

  std::filesystem::remove(path);
  const int hung = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::bind(hung, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(hung, 4), 0);  // and never accepts
  const auto started = std::chrono::steady_clock::now();
  call = call_daemon(path, request, 300ms);
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(call.state, DaemonState::not_answering);
  EXPECT_STREQ(to_string(call.state), "not_answering");
  EXPECT_EQ(call.pid, ::getpid());
  EXPECT_THAT(call.error, HasSubstr("did not answer within 300 ms"));
  EXPECT_GE(took, 290ms);  // poll counts in whole milliseconds
  EXPECT_LT(took, 2s);
  ::close(hung);
}

TEST_F(ControlServerTest, CallDaemonReturnsTheAnswerOfARunningOne) {
  auto call = call_daemon(path_, json{{"v", kControlVersion}, {"op", "echo"}}, 5s);
  EXPECT_EQ(call.state, DaemonState::running) << call.error;
  EXPECT_EQ(call.pid, ::getpid());
  EXPECT_TRUE(call.response.is_object());
}

TEST(ControlServerOpen, RefusesAPathTooLongForASocket) {
  boost::asio::io_context io;
  const std::filesystem::path path = "/tmp/" + std::string(200, 's') + "/control.sock";
  auto server = ControlServer::open(io, path);
  ASSERT_FALSE(server);
  EXPECT_THAT(server.error().message, HasSubstr("too long"));
}

}  // namespace
}  // namespace storewatch::agent
