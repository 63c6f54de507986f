// The exec probe and its child-process runner with real child processes:
// small /bin/sh plugins written into a TempDir, and real Monitoring Plugins
// from Debian's monitoring-plugins-basic.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include "os/process.h"
#include "probes/perfdata.h"
#include "tests/integration/probe_harness.h"

namespace storewatch::test {
namespace {

namespace fs = std::filesystem;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr const char* kPlugins = "/usr/lib/nagios/plugins";

// Writes an executable /bin/sh script.
fs::path script(const TempDir& dir, const std::string& name, const std::string& body,
                fs::perms perms = fs::perms::owner_all | fs::perms::group_read |
                                  fs::perms::group_exec) {
  auto path = dir / name;
  write_file(path, "#!/bin/sh\n" + body);
  fs::permissions(path, perms);
  return path;
}

std::string exec_toml(const std::vector<std::string>& argv, const std::string& extra = "",
                      const std::string& timeout = "5s") {
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : ", ") + nlohmann::json(a).dump();
  return fmt::format("type = \"exec\"\ncommand = [{}]\ntimeout = \"{}\"\n{}", cmd, timeout, extra);
}

std::vector<pid_t> read_pids(const fs::path& file) {
  std::vector<pid_t> pids;
  std::istringstream in(read_file(file));
  for (pid_t p; in >> p;) pids.push_back(p);
  return pids;
}

// State letter and parent of a process from /proc, if it exists.
std::optional<std::pair<char, pid_t>> proc_state(pid_t pid) {
  const auto text = read_proc_file(fmt::format("/proc/{}/stat", pid));
  if (!text) return std::nullopt;
  const std::string& stat = *text;
  auto paren = stat.rfind(')');
  if (stat.empty() || paren == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(paren + 1));
  char state = 0;
  pid_t ppid = 0;
  rest >> state >> ppid;
  return std::make_pair(state, ppid);
}

// Gone: no such process, or a zombie that is not ours (reparented to a PID 1
// that may not reap it; it runs nothing and holds nothing open).
bool gone(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  auto st = proc_state(pid);
  return !st || (st->first == 'Z' && st->second != ::getpid());
}

// Our children that are zombies: none may be left behind.
std::vector<pid_t> our_zombies() {
  std::vector<pid_t> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stoi(name));
    auto st = proc_state(pid);
    if (st && st->first == 'Z' && st->second == ::getpid()) out.push_back(pid);
  }
  return out;
}

bool valid_utf8_json(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

class ExecProbe : public ::testing::Test {
 protected:
  TempDir dir;
  void TearDown() override { EXPECT_THAT(our_zombies(), ::testing::IsEmpty()); }
};

TEST_F(ExecProbe, ExitCodesMapToStatusesWithTheFirstLineAsMessage) {
  const char* expected[] = {"ok", "warn", "fail", "unknown"};
  for (int code = 0; code <= 3; ++code) {
    auto plugin = script(dir, fmt::format("check_{}", code),
                         fmt::format("echo 'STATE {} - text | x={};1;2'\necho 'long text'\n"
                                     "exit {}\n",
                                     code, code, code));
    auto r = run_probe(exec_toml({plugin.string()}));
    EXPECT_EQ(status_of(r), expected[code]) << r.message;
    EXPECT_EQ(r.message, fmt::format("STATE {} - text", code));
    EXPECT_DOUBLE_EQ(r.metrics.at("x"), code);
  }
}

TEST_F(ExecProbe, OtherExitCodesAndSignalsAreUnknownSayingSo) {
  auto five = script(dir, "check_5", "echo 'odd'\nexit 5\n");
  auto r = run_probe(exec_toml({five.string()}));
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, HasSubstr("exited with code 5, not 0-3: odd"));

  auto segv = script(dir, "check_segv", "echo 'about to crash'\nkill -SEGV $$\n");
  r = run_probe(exec_toml({segv.string()}));
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, HasSubstr("killed by signal 11 (SIGSEGV)"));
  EXPECT_THAT(r.message, HasSubstr("about to crash"));
}

TEST_F(ExecProbe, PerfdataBecomesMetrics) {
  auto plugin = script(dir, "check_perf",
                       "echo \"LOAD OK | load1=0.5;2;4;0; 'free space'=12.5MB;;;0;100 "
                       "'it''s'=-3e2 skipped=U broken=abc\"\n"
                       "echo 'detail line'\n"
                       "echo 'more detail | rta=0.123ms;100;500;0'\n"
                       "echo \"pl=0%;20;60;0;100\"\n");
  auto r = run_probe(exec_toml({plugin.string()}));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_EQ(r.message, "LOAD OK");
  EXPECT_DOUBLE_EQ(r.metrics.at("load1"), 0.5);
  EXPECT_DOUBLE_EQ(r.metrics.at("free space"), 12.5);
  EXPECT_DOUBLE_EQ(r.metrics.at("it's"), -300);
  EXPECT_DOUBLE_EQ(r.metrics.at("rta"), 0.123);
  EXPECT_DOUBLE_EQ(r.metrics.at("pl"), 0);
  EXPECT_EQ(r.metrics.count("skipped"), 0u);
  EXPECT_EQ(r.metrics.count("broken"), 0u);
}

TEST_F(ExecProbe, PluginThatIsNotExecutable) {
  auto plugin =
      script(dir, "check_noexec", "echo OK\n", fs::perms::owner_read | fs::perms::owner_write);
  auto r = run_probe(exec_toml({plugin.string()}));
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, HasSubstr("not executable"));
  EXPECT_THAT(r.message, HasSubstr(plugin.string()));

  r = run_probe(exec_toml({dir.path().string()}));
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, HasSubstr("not executable (a directory)"));
}

TEST_F(ExecProbe, PluginThatDoesNotExist) {
  auto r = run_probe(exec_toml({(dir / "check_missing").string()}));
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, HasSubstr("check_missing: not found"));

  r = run_probe(exec_toml({"check_no_such_plugin_anywhere"}));
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, HasSubstr("not found on PATH"));

  if (under_emulator()) {
    // qemu-user runs the clone(CLONE_VM | CLONE_VFORK) of glibc's
    // posix_spawn as a plain fork, so an exec error never reaches the
    // parent: the child exits 127. On the target itself it is reported.
    GTEST_SKIP() << "exec errors are not reported under qemu-user";
  }
  auto no_interpreter = dir / "check_badshebang";
  write_file(no_interpreter, "#!/no/such/interpreter\necho OK\n");
  fs::permissions(no_interpreter, fs::perms::owner_all);
  r = run_probe(exec_toml({no_interpreter.string()}));
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, HasSubstr("interpreter"));
}

TEST_F(ExecProbe, PluginWithoutAShebangIsAnExecFormatError) {
  if (under_emulator()) GTEST_SKIP() << "exec errors are not reported under qemu-user";
  auto plugin = dir / "check_noshebang";
  write_file(plugin, "echo OK\n");
  fs::permissions(plugin, fs::perms::owner_all);
  auto r = run_probe(exec_toml({plugin.string()}));
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_THAT(r.message, HasSubstr("exec format error"));
}

TEST_F(ExecProbe, BareNameIsFoundOnThePluginPath) {
  script(dir, "check_on_path", "echo 'OK found | n=1'\n");
  auto r =
      run_probe(exec_toml({"check_on_path"}, fmt::format("env = {{ PATH = \"/usr/bin:/bin:{}\" }}",
                                                         dir.path().string())));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_EQ(r.message, "OK found");
}

TEST_F(ExecProbe, PluginPrintingOneGigabyteIsBoundedAndTimely) {
  auto plugin = script(dir, "check_flood", "echo 'FLOOD | a=1'\nhead -c 1G /dev/zero\n");
  const auto started = std::chrono::steady_clock::now();
  auto r = run_probe(exec_toml({plugin.string()}, "", "10s"));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, 12s);
  // Stopped after 1 MB of output: the loop never reads the whole gigabyte.
  EXPECT_EQ(status_of(r), "unknown") << r.message;
  EXPECT_THAT(r.message, HasSubstr("stopped: it wrote more than 1 MB of output"));
  EXPECT_THAT(r.message, HasSubstr("FLOOD"));
  EXPECT_LE(r.message.size(), probes::kMaxMessageBytes + 128);

  // Endless output is stopped the same way, long before its timeout.
  auto yes = script(dir, "check_yes", "yes 'y | a=1'\n");
  r = run_probe(exec_toml({yes.string()}, "", "10s"));
  EXPECT_EQ(status_of(r), "unknown") << r.message;
  EXPECT_THAT(r.message, HasSubstr("more than 1 MB"));
}

TEST_F(ExecProbe, BinaryJunkGivesAPrintableBoundedMessage) {
  auto plugin = script(dir, "check_junk",
                       "printf 'OK \\001\\033[2J\\377\\376 \\000 text | a=1;\\377 b=2\\n'\n"
                       "head -c 100000 /dev/urandom\n");
  auto r = run_probe(exec_toml({plugin.string()}));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_TRUE(valid_utf8_json(r.message));
  EXPECT_THAT(r.message, StartsWith("OK "));
  EXPECT_THAT(r.message, HasSubstr("text"));
  EXPECT_LE(r.message.size(), probes::kMaxMessageBytes + 64);
  EXPECT_DOUBLE_EQ(r.metrics.at("b"), 2);
  for (const auto& [label, value] : r.metrics) EXPECT_TRUE(valid_utf8_json(label));

  auto random_only = script(dir, "check_random", "head -c 5000 /dev/urandom\nexit 2\n");
  r = run_probe(exec_toml({random_only.string()}));
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_TRUE(valid_utf8_json(r.message));
  EXPECT_LE(r.message.size(), probes::kMaxMessageBytes + 64);
}

TEST_F(ExecProbe, PluginThatForksAChildHoldingThePipeAndExits) {
  auto pids = dir / "pids";
  auto plugin = script(
      dir, "check_fork",
      fmt::format("sleep 60 &\necho $! > {}\necho 'OK forked | n=1'\nexit 0\n", pids.string()));
  const auto started = std::chrono::steady_clock::now();
  auto r = run_probe(exec_toml({plugin.string()}));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 4s);
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_EQ(r.message, "OK forked");
  auto children = read_pids(pids);
  ASSERT_EQ(children.size(), 1u);
  EXPECT_TRUE(wait_until([&] { return gone(children[0]); }, 5s))
      << "the background child " << children[0] << " survived";
}

TEST_F(ExecProbe, PluginThatRunsForeverIsKilledWithItsWholeGroup) {
  auto pids = dir / "pids";
  auto plugin = script(dir, "check_forever",
                       fmt::format("echo $$ > {0}\nsleep 60 &\necho $! >> {0}\n"
                                   "(sleep 60; echo never) &\necho $! >> {0}\n"
                                   "echo 'started'\nwait\n",
                                   pids.string()));
  auto toml = exec_toml({plugin.string()}, "", "1s");
  const auto started = std::chrono::steady_clock::now();
  auto r = run_probe(toml);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, HasSubstr("timed out after 1s"));
  auto group = read_pids(pids);
  ASSERT_EQ(group.size(), 3u);
  for (pid_t p : group) {
    EXPECT_TRUE(wait_until([&] { return gone(p); }, 5s)) << "process " << p << " survived";
  }
}

TEST_F(ExecProbe, EnvIsPassedAndTheAgentsIsNot) {
  ::setenv("STOREWATCH_TEST_SECRET", "leak", 1);
  auto envfile = dir / "env";
  auto plugin =
      script(dir, "check_env",
             fmt::format("env > {}\necho \"OK $FOO/$LANG/$EMPTY. | x=1\"\n", envfile.string()));
  auto r = run_probe(exec_toml({plugin.string()}, "env = { FOO = \"bar baz\", EMPTY = \"\" }"));
  ::unsetenv("STOREWATCH_TEST_SECRET");
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_EQ(r.message, "OK bar baz/C/.");
  auto env = read_file(envfile);
  EXPECT_THAT(env, HasSubstr(fmt::format("PATH={}\n", os::kDefaultPath)));
  EXPECT_THAT(env, ::testing::Not(HasSubstr("STOREWATCH_TEST_SECRET")));

  r = run_probe(exec_toml({plugin.string()}, "env = { LANG = \"de_DE.UTF-8\" }"));
  EXPECT_EQ(r.message, "OK /de_DE.UTF-8/.");
}

TEST_F(ExecProbe, ConfigRejectsAnEmptyOrRelativeCommandAndBadEnvNames) {
  EXPECT_THROW(probe_config("type = \"exec\"\ncommand = []"), std::runtime_error);
  EXPECT_THROW(probe_config("type = \"exec\"\ncommand = [\"\"]"), std::runtime_error);
  EXPECT_THROW(probe_config("type = \"exec\"\ncommand = [\"./check_x\"]"), std::runtime_error);
  EXPECT_THROW(
      probe_config("type = \"exec\"\ncommand = [\"/bin/true\"]\nenv = { \"A=B\" = \"x\" }"),
      std::runtime_error);
  EXPECT_THROW(probe_config("type = \"exec\""), std::runtime_error);
  EXPECT_NO_THROW(probe_config("type = \"exec\"\ncommand = [\"check_dummy\", \"0\"]"));
}

// A real plugin from Debian's monitoring-plugins-basic.
TEST_F(ExecProbe, RealCheckTcpAgainstAPortWeListenOn) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);

  const std::string check_tcp = fmt::format("{}/check_tcp", kPlugins);
  auto r = run_probe(exec_toml({check_tcp, "-H", "127.0.0.1", "-p", std::to_string(port)}));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_THAT(r.message, StartsWith("TCP OK"));
  EXPECT_THAT(r.message, HasSubstr(fmt::format("port {}", port)));
  ASSERT_EQ(r.metrics.count("time"), 1u) << r.message;
  EXPECT_GE(r.metrics.at("time"), 0.0);
  EXPECT_LT(r.metrics.at("time"), 5.0);
  ::close(fd);

  // The port is closed now: check_tcp says CRITICAL and exits 2.
  r = run_probe(exec_toml({check_tcp, "-H", "127.0.0.1", "-p", std::to_string(port)}));
  EXPECT_EQ(status_of(r), "fail") << r.message;
  EXPECT_THAT(r.message, HasSubstr("Connection refused"));
}

TEST_F(ExecProbe, RealCheckDummyAndCheckDisk) {
  auto r = run_probe(exec_toml({fmt::format("{}/check_dummy", kPlugins), "1", "lane 3 slow"}));
  EXPECT_EQ(status_of(r), "warn");
  EXPECT_EQ(r.message, "WARNING: lane 3 slow");

  r = run_probe(exec_toml({"check_dummy", "3", "no idea"},
                          fmt::format("env = {{ PATH = \"{}\" }}", kPlugins)));
  EXPECT_EQ(status_of(r), "unknown");
  EXPECT_EQ(r.message, "UNKNOWN: no idea");

  // Thresholds no disk can miss (-w/-c 0 MB free), so the status is known.
  r = run_probe(exec_toml(
      {fmt::format("{}/check_disk", kPlugins), "-w", "0", "-c", "0", "-u", "MB", "-p", "/"}));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_THAT(r.message, StartsWith("DISK OK"));
  ASSERT_EQ(r.metrics.count("/"), 1u) << r.message;
  EXPECT_GT(r.metrics.at("/"), 0.0);
}

TEST_F(ExecProbe, ProbeRunThroughTheBinary) {
  auto plugin =
      script(dir, "check_cli", "echo 'POS WARNING - queue 12 | queue=12;10;20;0'\nexit 1\n");
  auto r = run_probe_cli(dir, exec_toml({plugin.string()}));
  ASSERT_TRUE(r.result.is_object()) << r.err;
  EXPECT_EQ(r.result["name"], "p");
  EXPECT_EQ(r.result["type"], "exec");
  EXPECT_EQ(r.result["status"], "warn");
  EXPECT_EQ(r.result["message"], "POS WARNING - queue 12");
  EXPECT_EQ(r.result["metrics"]["queue"], 12);

  auto junk = script(dir, "check_cli_junk", "printf '\\377\\001 bad | a=1\\n'\nexit 2\n");
  auto j = run_probe_cli(dir, exec_toml({junk.string()}));
  ASSERT_TRUE(j.result.is_object()) << j.err;
  EXPECT_EQ(j.exit_code, 1);
  EXPECT_EQ(j.result["status"], "fail");
  EXPECT_EQ(j.result["metrics"]["a"], 1);
}

// --- the runner on its own ------------------------------------------------------

struct Ran {
  std::optional<os::ProcessResult> result;
};

Ran run_process(os::ProcessSpec spec, std::chrono::milliseconds limit = 20s) {
  boost::asio::io_context io;
  Ran ran;
  auto p = os::Process::start(io.get_executor(), std::move(spec),
                              [&](os::ProcessResult r) { ran.result = std::move(r); });
  io.run_for(limit);
  return ran;
}

class ProcessRunner : public ExecProbe {
 protected:
  void TearDown() override {
    os::use_sigchld_for_exits(false);
    ExecProbe::TearDown();
  }
};

TEST_F(ProcessRunner, OwnTimeoutKillsTheGroupAndSaysTimedOut) {
  auto pids = dir / "pids";
  auto plugin =
      script(dir, "forever",
             fmt::format("echo $$ > {0}\nsleep 60 &\necho $! >> {0}\nwait\n", pids.string()));
  os::ProcessSpec spec;
  spec.argv = {plugin.string()};
  spec.timeout = 300ms;
  auto ran = run_process(spec);
  ASSERT_TRUE(ran.result);
  EXPECT_EQ(ran.result->outcome, os::ProcessResult::Outcome::timed_out);
  EXPECT_THAT(ran.result->describe(), HasSubstr("timed out after"));
  for (pid_t p : read_pids(pids)) EXPECT_TRUE(wait_until([&] { return gone(p); }, 5s)) << p;
}

TEST_F(ProcessRunner, OutputIsCappedAndStderrKeptApart) {
  auto plugin = script(dir, "loud", "head -c 300000 /dev/zero\necho 'to stderr' >&2\nexit 4\n");
  os::ProcessSpec spec;
  spec.argv = {plugin.string()};
  spec.output_cap = 1000;
  auto ran = run_process(spec);
  ASSERT_TRUE(ran.result);
  EXPECT_EQ(ran.result->outcome, os::ProcessResult::Outcome::exited);
  EXPECT_EQ(ran.result->exit_code, 4);
  EXPECT_EQ(ran.result->out.size(), 1000u);
  EXPECT_TRUE(ran.result->out_truncated);
  EXPECT_EQ(ran.result->err, "to stderr\n");
  EXPECT_FALSE(ran.result->err_truncated);
}

TEST_F(ProcessRunner, WorkingDirAndArgumentsWithoutAShell) {
  auto plugin = script(dir, "args", "pwd\nprintf '[%s]' \"$@\"\n");
  fs::create_directories(dir / "work");
  os::ProcessSpec spec;
  spec.argv = {plugin.string(), "a b", "$HOME", "*", ";true"};
  spec.working_dir = dir / "work";
  auto ran = run_process(spec);
  ASSERT_TRUE(ran.result);
  EXPECT_EQ(ran.result->out,
            fmt::format("{}\n[a b][$HOME][*][;true]", fs::canonical(dir / "work").string()));
}

TEST_F(ProcessRunner, OnlyStdioIsInherited) {
  auto plugin = script(dir, "fds", "ls /proc/$$/fd\n");
  os::ProcessSpec spec;
  spec.argv = {plugin.string()};
  auto ran = run_process(spec);
  ASSERT_TRUE(ran.result);
  // 0 1 2 and the shell's own script fd at most (dash keeps 10 for it).
  std::istringstream in(ran.result->out);
  for (int fd; in >> fd;) EXPECT_TRUE(fd <= 2 || fd == 10) << "inherited fd " << fd;
}

TEST_F(ProcessRunner, CancelKillsAndReapsAndDoesNotCallDone) {
  auto pids = dir / "pids";
  auto plugin =
      script(dir, "forever",
             fmt::format("echo $$ > {0}\nsleep 60 &\necho $! >> {0}\nwait\n", pids.string()));
  boost::asio::io_context io;
  bool called = false;
  os::ProcessSpec spec;
  spec.argv = {plugin.string()};
  auto p = os::Process::start(io.get_executor(), spec, [&](os::ProcessResult) { called = true; });
  ASSERT_TRUE(wait_until(
      [&] {
        io.poll();
        return read_pids(pids).size() == 2;
      },
      10s));
  p.cancel();
  p.cancel();
  io.run_for(5s);  // returns once the child is reaped: nothing else is pending
  EXPECT_FALSE(called);
  EXPECT_TRUE(io.stopped());
  for (pid_t pid : read_pids(pids)) EXPECT_TRUE(wait_until([&] { return gone(pid); }, 5s)) << pid;
}

TEST_F(ProcessRunner, SigchldFallbackSeesExitsAndTimeouts) {
  os::use_sigchld_for_exits(true);
  auto quick = script(dir, "quick", "echo hi\nexit 2\n");
  os::ProcessSpec spec;
  spec.argv = {quick.string()};
  auto ran = run_process(spec);
  ASSERT_TRUE(ran.result);
  EXPECT_EQ(ran.result->exit_code, 2);
  EXPECT_EQ(ran.result->out, "hi\n");

  auto pids = dir / "pids";
  auto slow = script(
      dir, "slow", fmt::format("echo $$ > {0}\nsleep 60 &\necho $! >> {0}\nwait\n", pids.string()));
  spec.argv = {slow.string()};
  spec.timeout = 300ms;
  ran = run_process(spec);
  ASSERT_TRUE(ran.result);
  EXPECT_EQ(ran.result->outcome, os::ProcessResult::Outcome::timed_out);
  for (pid_t p : read_pids(pids)) EXPECT_TRUE(wait_until([&] { return gone(p); }, 5s)) << p;

  // Several at once on one loop: every SIGCHLD wakes every waiter, each
  // checks its own child.
  boost::asio::io_context io;
  int finished = 0;
  for (int i = 0; i < 8; ++i) {
    os::ProcessSpec s;
    s.argv = {quick.string()};
    os::Process::start(io.get_executor(), s, [&](os::ProcessResult r) {
      EXPECT_EQ(r.exit_code, 2);
      ++finished;
    });
  }
  io.run_for(20s);
  EXPECT_EQ(finished, 8);
}

// --- containment: what leaves the process group or the session -----------------

/// Live processes whose environment has the entry `entry` (a zombie has none).
std::vector<pid_t> carrying(const std::string& entry) {
  std::vector<pid_t> out;
  for (const auto& proc : fs::directory_iterator("/proc")) {
    const auto name = proc.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(proc.path() / "environ");
    std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream entries(env);
    for (std::string e; std::getline(entries, e, '\0');) {
      if (e == entry) out.push_back(static_cast<pid_t>(std::stoi(name)));
    }
  }
  return out;
}

/// A marker no other test or run uses.
std::string unique_mark(const std::string& what) {
  static int n = 0;
  return fmt::format("SW_TEST_MARK={}-{}-{}", what, ::getpid(), ++n);
}

/// `env = { SW_TEST_MARK = "…" }` for a probe's TOML.
std::string env_of(const std::string& mark) {
  const auto eq = mark.find('=');
  return fmt::format("env = {{ {} = \"{}\" }}", mark.substr(0, eq), mark.substr(eq + 1));
}

// Both mechanisms, where this machine has them: cgroup needs a cgroup v2
// directory this process may make cgroups in (root here, or systemd's
// Delegate=); tracked works anywhere.
class RunContainment : public ExecProbe, public ::testing::WithParamInterface<os::Containment> {
 protected:
  void SetUp() override {
    if (GetParam() == os::Containment::tracked) {
      os::force_containment(os::Containment::tracked);
    } else {
      os::force_containment(std::nullopt);
      if (os::containment() != os::Containment::cgroup) {
        GTEST_SKIP() << "no cgroup v2 directory this process may make cgroups in";
      }
    }
    RecordProperty("containment", os::containment_description());
  }
  void TearDown() override {
    os::force_containment(std::nullopt);
    ExecProbe::TearDown();
  }

  /// Run cgroups of this process left in the cgroup they are made in.
  static std::vector<std::string> run_cgroups_left() {
    std::vector<std::string> out;
    const std::string described = os::containment_description();
    const auto under = described.find(" under ");
    if (under == std::string::npos) return out;
    const std::string prefix = fmt::format("storewatch-run-{}-", ::getpid());
    std::error_code ec;
    for (const auto& d : fs::directory_iterator(described.substr(under + 7), ec)) {
      if (d.path().filename().string().rfind(prefix, 0) == 0) out.push_back(d.path());
    }
    return out;
  }
};

TEST_P(RunContainment, APluginWhoseChildrenLeaveTheSessionLeavesNothingBehind) {
  // Issue 18: a plugin whose child called setsid escaped the process-group
  // kill (403 orphans in 3 minutes). setsid, a double fork, and both.
  const std::string mark = unique_mark("setsid");
  auto plugin = script(dir, "check_setsid",
                       "setsid sleep 300 &\n(sleep 301 &)\n(setsid sleep 302 &)\n"
                       "echo 'OK started | n=1'\nexit 0\n");
  auto r = run_probe(exec_toml({plugin.string()}, env_of(mark)));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_TRUE(wait_until([&] { return carrying(mark).empty(); }, 5s))
      << carrying(mark).size() << " processes of the run are left";
  EXPECT_TRUE(wait_until([&] { return run_cgroups_left().empty(); }, 5s));
}

TEST_P(RunContainment, APluginKilledAtItsTimeoutTakesItsSessionLeaversWithIt) {
  const std::string mark = unique_mark("timeout");
  auto plugin = script(dir, "check_setsid_forever", "setsid sleep 300 &\nsleep 60\n");
  const auto started = std::chrono::steady_clock::now();
  auto r = run_probe(exec_toml({plugin.string()}, env_of(mark), "1s"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 4s);
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, HasSubstr("timed out after 1s"));
  EXPECT_TRUE(wait_until([&] { return carrying(mark).empty(); }, 5s))
      << carrying(mark).size() << " processes of the run are left";
}

TEST_P(RunContainment, OnlyTheRunsOwnProcessesAreKilled) {
  // A process of nobody's run, in a session of its own, and two runs at once
  // on one loop: the end of one kills what it left, not the other's.
  const std::string bystander_mark = unique_mark("bystander");
  // setsid forks (its parent, the Child, exits) and the sleep carries on.
  Child bystander({"/usr/bin/env", bystander_mark, "setsid", "sleep", "300"}, dir / "logs");
  ASSERT_TRUE(wait_until([&] { return carrying(bystander_mark).size() == 1; }, 5s));

  const std::string long_mark = unique_mark("long");
  const std::string short_mark = unique_mark("short");
  auto long_plugin = script(dir, "long", "setsid sleep 300 &\nsleep 2\necho OK\n");
  auto short_plugin = script(dir, "short", "setsid sleep 300 &\necho OK\n");
  boost::asio::io_context io;
  std::optional<os::ProcessResult> long_done, short_done;
  os::ProcessSpec spec;
  spec.argv = {long_plugin.string()};
  spec.env = {{"SW_TEST_MARK", long_mark.substr(long_mark.find('=') + 1)}};
  auto long_run =
      os::Process::start(io.get_executor(), spec, [&](os::ProcessResult r) { long_done = r; });
  spec.argv = {short_plugin.string()};
  spec.env = {{"SW_TEST_MARK", short_mark.substr(short_mark.find('=') + 1)}};
  auto short_run =
      os::Process::start(io.get_executor(), spec, [&](os::ProcessResult r) { short_done = r; });
  ASSERT_TRUE(wait_until(
      [&] {
        io.poll();
        return short_done.has_value();
      },
      10s));
  EXPECT_FALSE(long_done.has_value()) << "the long run ended first: the test says nothing";
  EXPECT_TRUE(wait_until([&] { return carrying(short_mark).empty(); }, 5s));
  // The long run's sleeper, and the run itself (sh and its sleep 2), are still there.
  EXPECT_EQ(carrying(long_mark).size(), 3u);
  ASSERT_TRUE(wait_until(
      [&] {
        io.poll();
        return long_done.has_value();
      },
      10s));
  EXPECT_TRUE(wait_until([&] { return carrying(long_mark).empty(); }, 5s));
  const auto bystanders = carrying(bystander_mark);
  EXPECT_EQ(bystanders.size(), 1u);
  for (pid_t pid : bystanders) {
    ::kill(pid, SIGKILL);
    // Ours to reap when tracking made this process its subreaper.
    EXPECT_TRUE(wait_until([&] { return ::waitpid(pid, nullptr, WNOHANG) != 0; }, 5s));
  }
}

TEST_P(RunContainment, TheChildGetsDefaultSignalsAnEmptyMaskAndOnlyStdio) {
  // The agent ignores SIGPIPE; a thread of it may block signals. Neither
  // reaches a plugin, however it is started.
  auto* previous = ::signal(SIGPIPE, SIG_IGN);
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  ::pthread_sigmask(SIG_BLOCK, &usr1, &old);
  auto plugin =
      script(dir, "signals", "ls /proc/$$/fd\nexec grep -E '^Sig(Blk|Ign)' /proc/self/status\n");
  os::ProcessSpec spec;
  spec.argv = {plugin.string()};
  auto ran = run_process(spec);
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::signal(SIGPIPE, previous);
  ASSERT_TRUE(ran.result);
  EXPECT_EQ(ran.result->exit_code, 0) << ran.result->err;
  EXPECT_THAT(ran.result->out, HasSubstr("SigBlk:\t0000000000000000\n"));
  // None of the standard signals ignored (glibc's posix_spawn leaves its own
  // two internal real-time ones, 32 and 33, as they were).
  const auto ign = ran.result->out.find("SigIgn:\t");
  ASSERT_NE(ign, std::string::npos) << ran.result->out;
  EXPECT_EQ(std::stoull(ran.result->out.substr(ign + 8, 16), nullptr, 16) & 0x7fffffffULL, 0u)
      << ran.result->out;
  std::istringstream in(ran.result->out.substr(0, ran.result->out.find("Sig")));
  for (int fd; in >> fd;) EXPECT_TRUE(fd <= 2 || fd == 10) << "inherited fd " << fd;
}

TEST_P(RunContainment, RunCgroupsOfAStorewatchThatIsGoneAreClearedAtStart) {
  if (GetParam() != os::Containment::cgroup) GTEST_SKIP() << "cgroups only";
  const std::string described = os::containment_description();
  const fs::path base = described.substr(described.find(" under ") + 7);
  // A pid that was a process a moment ago, and is no more.
  const pid_t gone_pid = run({"/bin/sh", "-c", "echo $$"}).exit_code == 0
                             ? static_cast<pid_t>(std::stoi(run({"/bin/sh", "-c", "echo $$"}).out))
                             : -1;
  ASSERT_GT(gone_pid, 0);
  const fs::path leftover = base / fmt::format("storewatch-run-{}-7", gone_pid);
  const fs::path alive = base / fmt::format("storewatch-run-{}-8", ::getppid());
  ASSERT_TRUE(fs::create_directory(leftover));
  ASSERT_TRUE(fs::create_directory(alive));
  const std::string mark = unique_mark("leftover");
  Child left({"/usr/bin/env", mark, "sleep", "300"}, dir / "logs");
  write_file(leftover / "cgroup.procs", std::to_string(left.pid()));
  // The mark is in the environment once env has exec'd sleep.
  ASSERT_TRUE(wait_until([&] { return carrying(mark).size() == 1u; }, 5s));

  os::force_containment(std::nullopt);  // as a new agent starts
  ASSERT_EQ(os::containment(), os::Containment::cgroup);
  EXPECT_TRUE(wait_until([&] { return carrying(mark).empty(); }, 5s));
  // Its process was ours (a Child): reaped, the cgroup can go, which the
  // next run's end sees to if it could not be removed at once.
  EXPECT_NE(left.wait(5s), -1);
  auto r = run_probe(exec_toml({"/bin/true"}));
  EXPECT_EQ(status_of(r), "ok") << r.message;
  EXPECT_TRUE(wait_until([&] { return !fs::exists(leftover); }, 5s));
  // The one of a process that is alive (our parent's pid) stays.
  EXPECT_TRUE(fs::exists(alive));
  fs::remove(alive);
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, RunContainment,
                         ::testing::Values(os::Containment::cgroup, os::Containment::tracked),
                         [](const ::testing::TestParamInfo<os::Containment>& info) {
                           return info.param == os::Containment::cgroup ? "cgroup" : "tracked";
                         });

TEST_F(ExecProbe, ASetsidChildIsKilledThroughTheBinaryToo) {
  const std::string mark = unique_mark("binary");
  auto plugin = script(dir, "check_setsid_bin", "setsid sleep 300 &\necho 'OK | n=1'\n");
  auto r = run_probe_cli(dir, exec_toml({plugin.string()}, env_of(mark)));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(wait_until([&] { return carrying(mark).empty(); }, 5s))
      << carrying(mark).size() << " processes of the run are left";
}

}  // namespace
}  // namespace storewatch::test
