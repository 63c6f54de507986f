#pragma once
/// \file
/// What the tests share: temporary directories, free loopback ports, a real
/// mosquitto broker, child processes, and polling with a deadline (tests
/// never sleep a fixed time to wait for something).

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace storewatch::test {

using namespace std::chrono_literals;

/// A fresh directory, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// Writes `text` to `path` (creating parent directories).
void write_file(const std::filesystem::path& path, const std::string& text);
std::string read_file(const std::filesystem::path& path);

/// A /proc file of a process that may exit at any moment: nullopt when the
/// process is gone (open fails, or a read fails with ESRCH part-way), never
/// an exception.
std::optional<std::string> read_proc_file(const std::string& path);

/// A TCP port on 127.0.0.1 that was free a moment ago.
int free_port();

/// Polls `done` every few milliseconds until it returns true or `timeout`
/// passes; returns whether it became true.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 20s);

/// A child process with its stdout and stderr captured to files.
class Child {
 public:
  Child(std::vector<std::string> argv, std::filesystem::path log_dir,
        std::map<std::string, std::string> env = {});
  ~Child();  ///< SIGKILLs the whole process group if still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  /// Sends `sig`, waits up to `timeout` for the exit; returns the exit
  /// status as from waitpid, or -1 if it did not exit in time.
  int stop(int sig, std::chrono::milliseconds timeout = 10s);
  /// Waits for the exit; the exit code, 128+signal, or -1 on timeout.
  int wait(std::chrono::milliseconds timeout = 10s);
  std::string out() const;
  std::string err() const;

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool exited_ = false;
  std::filesystem::path out_, err_;
};

/// A child's stdout and stderr, for a failed assertion's message.
std::string logs_of(Child& c);

/// How many file descriptors this process has open (/proc/self/fd).
int open_fds();

/// Result of running a command to completion.
struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
RunResult run(std::vector<std::string> argv, std::map<std::string, std::string> env = {},
              std::chrono::milliseconds timeout = 30s);

/// A real mosquitto on 127.0.0.1 and a free port, with its own config and
/// no persistence. restart() keeps the port.
class Broker {
 public:
  /// Anonymous clients may do anything (what most tests, not about auth, want).
  Broker();
  /// Logins only: each user of `passwords` (user → password) with that
  /// password, anonymous clients refused; `acl_file` (may be empty) decides
  /// what each may publish and read.
  Broker(const std::map<std::string, std::string>& passwords,
         const std::filesystem::path& acl_file);
  ~Broker();
  int port() const { return port_; }
  std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  void stop();
  void start();

 private:
  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<Child> child_;
};

/// The storewatch binary under test; spawned through the cross-compiling
/// emulator when there is one.
std::vector<std::string> storewatch_command(std::vector<std::string> args);

/// Any binary built for the target (a test helper such as fake_systemd),
/// spawned through the cross-compiling emulator when there is one.
std::vector<std::string> target_command(std::string binary, std::vector<std::string> args);

/// Whether the tests run under a cross build's emulator (qemu-user).
bool under_emulator();

/// Why user nobody cannot run the binary under test, or empty when it can:
/// a checkout in a private directory (`mktemp -d` makes 0700 ones) keeps it
/// out, and under qemu-user the emulator has to read it. Tests that run it
/// as nobody (root only) skip with this.
std::string nobody_cannot_run_storewatch();

/// A small file system of its own (a tmpfs of `bytes`, root only) that a
/// test fills up to make writes fail with ENOSPC, and frees again.
class SmallDisk {
 public:
  /// Mounts it; `why_not()` says why not when that is impossible here.
  explicit SmallDisk(std::size_t bytes);
  ~SmallDisk();
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  const std::string& why_not() const { return why_not_; }
  const std::filesystem::path& path() const { return dir_.path(); }
  std::filesystem::path operator/(const std::string& name) const { return dir_ / name; }
  /// Writes a filler file until the disk is full.
  void fill();
  /// Removes the filler.
  void free_space();
  /// Bytes available now.
  std::int64_t available() const;

 private:
  TempDir dir_;
  bool mounted_ = false;
  std::string why_not_;
};

/// Whether something accepts TCP connections on 127.0.0.1:port.
bool port_open(int port, const std::string& host = "127.0.0.1");

}  // namespace storewatch::test
