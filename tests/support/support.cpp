#include "tests/support/support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace storewatch::test {

namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "storewatch-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void write_file(const fs::path& path, const std::string& text) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<std::string> read_proc_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = ::read(fd, buffer, sizeof buffer)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (n < 0) return std::nullopt;
  return out;
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("bind to a free port failed");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

bool port_open(int port, const std::string& host) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// --- Child -------------------------------------------------------------------

namespace {
std::atomic<int> g_child_counter{0};
}

Child::Child(std::vector<std::string> argv, fs::path log_dir,
             std::map<std::string, std::string> env) {
  int n = g_child_counter++;
  fs::create_directories(log_dir);
  std::string base = fs::path(argv.at(0)).filename().string() + "-" + std::to_string(::getpid()) +
                     "-" + std::to_string(n);
  out_ = log_dir / (base + ".out");
  err_ = log_dir / (base + ".err");
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::setpgid(0, 0);
    // A test that aborts must not leave its broker or daemon behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, STDIN_FILENO);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(pid_, pid_);
}

Child::~Child() {
  if (!exited_ && pid_ > 0) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
  }
}

bool Child::running() {
  if (exited_) return false;
  pid_t r = ::waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) exited_ = true;
  return !exited_;
}

int Child::wait(std::chrono::milliseconds timeout) {
  if (!wait_until([this] { return !running(); }, timeout)) return -1;
  if (WIFEXITED(status_)) return WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
  return -1;
}

int Child::stop(int sig, std::chrono::milliseconds timeout) {
  if (running()) ::kill(pid_, sig);
  return wait(timeout);
}

std::string Child::out() const {
  return read_file(out_);
}
std::string Child::err() const {
  return read_file(err_);
}

RunResult run(std::vector<std::string> argv, std::map<std::string, std::string> env,
              std::chrono::milliseconds timeout) {
  TempDir logs;
  Child c(std::move(argv), logs.path(), std::move(env));
  RunResult r;
  r.exit_code = c.wait(timeout);
  r.out = c.out();
  r.err = c.err();
  return r;
}

// --- Broker ------------------------------------------------------------------

namespace {

/// mosquitto.conf for a test broker: a loopback listener on `port` with
/// `access` (who may connect) and the same log and persistence settings.
void write_broker_conf(const std::filesystem::path& dir, int port, const std::string& access) {
  std::string conf = "listener " + std::to_string(port) + " 127.0.0.1\n" + access;
  // Started as root, mosquitto would drop to the mosquitto user, which cannot
  // read the test's files, and the change of user clears its parent-death
  // signal: a test killed by a signal would leave its broker running.
  if (::geteuid() == 0) conf += "user root\n";
  conf +=
      "persistence false\n"
      "log_dest stderr\n"
      "log_type error\n"
      "log_type warning\n";
  write_file(dir / "mosquitto.conf", conf);
}

}  // namespace

Broker::Broker() {
  port_ = free_port();
  write_broker_conf(dir_.path(), port_, "allow_anonymous true\n");
  start();
}

Broker::Broker(const std::map<std::string, std::string>& passwords,
               const std::filesystem::path& acl_file) {
  port_ = free_port();
  const auto passwd = dir_ / "passwd";
  write_file(passwd, "");
  for (const auto& [user, password] : passwords) {
    // mosquitto_passwd reads the password (twice) from stdin: not in its argv.
    write_file(dir_ / "pw.in", password + "\n" + password + "\n");
    auto r = run({"sh", "-c", "exec mosquitto_passwd \"$0\" \"$1\" < \"$2\" > /dev/null",
                  passwd.string(), user, (dir_ / "pw.in").string()});
    if (r.exit_code != 0) {
      throw std::runtime_error("mosquitto_passwd failed for " + user + ": " + r.err);
    }
  }
  std::filesystem::remove(dir_ / "pw.in");
  std::string access = "allow_anonymous false\npassword_file " + passwd.string() + "\n";
  if (!acl_file.empty()) access += "acl_file " + acl_file.string() + "\n";
  write_broker_conf(dir_.path(), port_, access);
  start();
}

Broker::~Broker() {
  stop();
}

void Broker::start() {
  for (int attempt = 0; attempt < 3; ++attempt) {
    child_ = std::make_unique<Child>(
        std::vector<std::string>{"mosquitto", "-c", (dir_ / "mosquitto.conf").string()},
        dir_.path());
    if (wait_until([this] { return port_open(port_) || !child_->running(); }, 10s) &&
        child_->running()) {
      return;
    }
    child_.reset();
  }
  throw std::runtime_error("mosquitto did not start on port " + std::to_string(port_));
}

void Broker::stop() {
  if (child_) {
    child_->stop(SIGTERM);
    child_.reset();
  }
}

std::vector<std::string> storewatch_command(std::vector<std::string> args) {
  return target_command(STOREWATCH_BIN, std::move(args));
}

std::vector<std::string> target_command(std::string binary, std::vector<std::string> args) {
  std::vector<std::string> cmd;
  std::string emulator = STOREWATCH_TEST_EMULATOR;
  if (!emulator.empty()) {
    std::istringstream in(emulator);
    for (std::string part; std::getline(in, part, '|');) {
      if (!part.empty()) cmd.push_back(part);
    }
  }
  cmd.push_back(std::move(binary));
  for (auto& a : args) cmd.push_back(std::move(a));
  return cmd;
}

std::string logs_of(Child& c) {
  return "stdout:\n" + c.out() + "\nstderr:\n" + c.err();
}

int open_fds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

SmallDisk::SmallDisk(std::size_t bytes) {
  if (::geteuid() != 0) {
    why_not_ = "mounts a small tmpfs to fill the disk: needs root";
    return;
  }
  auto r = run({"mount", "-t", "tmpfs", "-o", "size=" + std::to_string(bytes), "tmpfs",
                dir_.path().string()});
  if (r.exit_code != 0) {
    why_not_ = "cannot mount a tmpfs here: " + r.err;
    return;
  }
  mounted_ = true;
}

SmallDisk::~SmallDisk() {
  if (mounted_) (void)run({"umount", "-l", dir_.path().string()});
}

void SmallDisk::fill() {
  const auto filler = dir_ / "filler";
  int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + filler.string());
  std::string block(64 * 1024, 'x');
  for (int i = 0; i < 1'000'000; ++i) {
    ssize_t n = ::write(fd, block.data(), block.size());
    if (n < 0) break;  // ENOSPC
    if (static_cast<std::size_t>(n) < block.size()) block.resize(block.size() / 2);
    if (block.empty()) break;
  }
  // Smaller and smaller writes take the last pages too.
  for (std::size_t len = 4096; len > 0; len /= 2) {
    std::string tail(len, 'x');
    while (::write(fd, tail.data(), tail.size()) > 0) {
    }
  }
  ::close(fd);
}

void SmallDisk::free_space() {
  std::error_code ec;
  fs::remove(dir_ / "filler", ec);
}

std::int64_t SmallDisk::available() const {
  struct statvfs s {};
  if (::statvfs(dir_.path().c_str(), &s) != 0) return -1;
  return static_cast<std::int64_t>(s.f_bavail) * static_cast<std::int64_t>(s.f_frsize);
}

bool under_emulator() {
  return std::string_view(STOREWATCH_TEST_EMULATOR).size() > 0;
}

std::string nobody_cannot_run_storewatch() {
  if (run({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "test", "-r",
           STOREWATCH_BIN})
          .exit_code == 0) {
    return "";
  }
  return std::string("user nobody cannot read ") + STOREWATCH_BIN +
         " (a checkout in a private directory?)";
}

}  // namespace storewatch::test
