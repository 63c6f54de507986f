#include "tests/support/daemon.h"

#include <nlohmann/json.hpp>

namespace storewatch::test {

using nlohmann::json;

DaemonConfig DaemonConfig::in(const TempDir& dir, std::string store_id) {
  DaemonConfig c;
  c.store_id = std::move(store_id);
  c.data_dir = dir / "data";
  c.control_socket = dir / "control.sock";
  return c;
}

std::string DaemonConfig::toml() const {
  std::string text = "[store]\nid = \"" + store_id + "\"\n" + store_keys;
  text += "\n[agent]\ndata_dir = \"" + data_dir.string() + "\"\n";
  text += "control_socket = \"" + control_socket.string() + "\"\n" + agent_keys;
  text += "\n[sync]\nbroker = \"" + broker + "\"\n" + sync_keys;
  if (!body.empty()) text += "\n" + body;
  return text;
}

void DaemonConfig::write(const std::filesystem::path& file) const {
  write_file(file, toml());
}

std::string tcp_probe_toml(const std::string& name, int port, const std::string& keys) {
  return "[[probe]]\nname = \"" + name +
         "\"\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = " + std::to_string(port) + "\n" + keys;
}

RunResult run_cli(const std::filesystem::path& config, std::vector<std::string> args,
                  std::map<std::string, std::string> env) {
  args.insert(args.begin(), {"--config", config.string()});
  return run(storewatch_command(std::move(args)), std::move(env));
}

std::vector<std::string> daemon_command(const std::filesystem::path& config) {
  return storewatch_command({"--config", config.string(), "run"});
}

std::unique_ptr<Child> launch_daemon(const std::filesystem::path& config,
                                     const std::filesystem::path& log_dir) {
  return std::make_unique<Child>(daemon_command(config), log_dir);
}

bool daemon_is_running(const std::filesystem::path& config) {
  auto r = run_cli(config, {"status", "--json"});
  if (r.exit_code != 0) return false;
  json s = json::parse(r.out, nullptr, false);
  return s.is_object() && s["agent"]["running"] == true;
}

bool daemon_is_connected(const std::filesystem::path& config) {
  auto r = run_cli(config, {"sync", "status", "--json"});
  auto j = json::parse(r.out, nullptr, false);
  return j.is_object() && j.value("connected", false);
}

}  // namespace storewatch::test
