#include "probes/exec_probe.h"

#include <fmt/format.h>

#include "probes/perfdata.h"

namespace storewatch::probes {
namespace {

namespace asio = boost::asio;

constexpr config::KeySpec kKeys[] = {
    {"command", config::KeyKind::command, true, "",
     "the plugin and its arguments, run without a shell; the first element is an absolute path "
     "or a name looked up on PATH"},
    {"env", config::KeyKind::string_table, false, "",
     "extra environment variables, set over the plugin's minimal environment (PATH and LANG=C)"},
};

std::vector<std::string> validate(const config::ProbeConfig& p) {
  std::vector<std::string> problems;
  const auto& command = p.strings("command");
  if (command.empty()) {
    problems.emplace_back("command: must name the plugin to run (an empty array runs nothing)");
  } else if (command[0].empty()) {
    problems.emplace_back("command: the first element (the plugin) is empty");
  } else if (command[0].find('/') != std::string::npos && command[0][0] != '/') {
    problems.push_back(fmt::format(
        "command: \"{}\" is a relative path; give an absolute path or a bare name found on PATH",
        command[0]));
  }
  for (const auto& arg : command) {
    if (arg.find('\0') != std::string::npos) {
      problems.emplace_back("command: an argument contains a NUL character");
      break;
    }
  }
  if (p.has("env")) {
    for (const auto& [name, value] : p.table("env")) {
      if (name.empty() || name.find('=') != std::string::npos ||
          name.find('\0') != std::string::npos) {
        problems.push_back(fmt::format("env: \"{}\" is not a variable name", name));
      } else if (value.find('\0') != std::string::npos) {
        problems.push_back(fmt::format("env: the value of {} contains a NUL character", name));
      }
    }
  }
  return problems;
}

ProbeStatus status_of_exit(int code) {
  switch (code) {
    case 0: return ProbeStatus::ok;
    case 1: return ProbeStatus::warn;
    case 2: return ProbeStatus::fail;
    default: return ProbeStatus::unknown;
  }
}

// The first line of stderr, for when stdout says nothing.
std::string stderr_line(const std::string& err) {
  return printable(std::string_view(err).substr(0, err.find('\n')), 256);
}

class ExecProbe final : public Probe {
 public:
  ExecProbe(os::ProcessSpec spec, asio::any_io_executor ex)
      : spec_(std::move(spec)), ex_(std::move(ex)) {}

  ~ExecProbe() override { cancel(); }

  void start(Done done) override {
    // The scheduler enforces the timeout by calling cancel(), which kills
    // the whole process group.
    process_ = os::Process::start(
        ex_, spec_, [done = std::move(done)](os::ProcessResult run) { done(plugin_result(run)); });
  }

  void cancel() override { process_.cancel(); }

 private:
  os::ProcessSpec spec_;
  asio::any_io_executor ex_;
  os::Process process_;
};

std::unique_ptr<Probe> create_exec(const config::ProbeConfig& c, asio::any_io_executor ex) {
  os::ProcessSpec spec;
  spec.argv = c.strings("command");
  if (c.has("env")) spec.env = c.table("env");
  return std::make_unique<ExecProbe>(std::move(spec), std::move(ex));
}

}  // namespace

ProbeResult plugin_result(const os::ProcessResult& run) {
  ProbeResult r;
  r.latency = run.elapsed;
  r.status = ProbeStatus::unknown;
  using Outcome = os::ProcessResult::Outcome;
  if (run.outcome == Outcome::spawn_failed) {
    r.message = fmt::format("cannot run the plugin: {}", printable(run.error));
    return r;
  }
  if (run.outcome == Outcome::timed_out) {
    r.status = ProbeStatus::fail;
    r.message = fmt::format("plugin {}", run.describe());
    return r;
  }
  if (run.outcome == Outcome::flooded) {
    r.message = fmt::format("plugin {}; its first line: {}", run.describe(),
                            printable(parse_plugin_output(run.out).message));
    return r;
  }

  PluginOutput output = parse_plugin_output(run.out);
  for (const PerfItem& item : output.perfdata) r.metrics.emplace(item.label, item.value);
  std::string text = output.message;
  if (text.empty()) {
    text = "no output on stdout";
    if (auto err = stderr_line(run.err); !err.empty()) text += fmt::format(", stderr: {}", err);
  }
  if (run.out_truncated) text += fmt::format(" (stdout cut at {} bytes)", run.out.size());

  if (run.outcome == Outcome::signalled) {
    r.message = fmt::format("plugin {}: {}", run.describe(), text);
  } else if (run.exit_code < 0 || run.exit_code > 3) {
    r.message = fmt::format("plugin exited with code {}, not 0-3: {}", run.exit_code, text);
  } else {
    r.status = status_of_exit(run.exit_code);
    r.message = std::move(text);
  }
  return r;
}

ProbeType exec_probe_type() {
  return {{"exec", kKeys, &validate}, &create_exec};
}

}  // namespace storewatch::probes
