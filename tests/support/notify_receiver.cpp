#include "tests/support/notify_receiver.h"

#include <csignal>
#include <fstream>
#include <utility>

namespace storewatch::test {

namespace {
std::filesystem::path receiver_script() {
  return std::filesystem::path(STOREWATCH_SOURCE_DIR) / "tests" / "support" / "notify_receiver.py";
}
}  // namespace

NotifyReceiver::NotifyReceiver(bool start_now, std::string cert_file, std::string key_file)
    : port_(free_port()), cert_file_(std::move(cert_file)), key_file_(std::move(key_file)) {
  answer(200);
  if (start_now) start();
}

NotifyReceiver::~NotifyReceiver() {
  stop();
}

std::string NotifyReceiver::url(const std::string& path) const {
  return (cert_file_.empty() ? "http://127.0.0.1:" : "https://127.0.0.1:") + std::to_string(port_) +
         path;
}

void NotifyReceiver::start() {
  if (child_ && child_->running()) return;
  std::vector<std::string> argv{"python3",
                                "--port",
                                std::to_string(port_),
                                "--log",
                                (dir_ / "requests.jsonl").string(),
                                "--behaviour",
                                (dir_ / "behaviour.json").string()};
  argv.insert(argv.begin() + 1, receiver_script().string());
  if (!cert_file_.empty()) {
    argv.insert(argv.end(), {"--cert", cert_file_, "--key", key_file_});
  }
  child_ = std::make_unique<Child>(std::move(argv), dir_ / "logs");
  wait_until([this] { return port_open(port_) || !child_->running(); }, 10s);
}

void NotifyReceiver::stop() {
  if (!child_) return;
  child_->stop(SIGTERM, 5s);
  child_.reset();
}

void NotifyReceiver::answer(int status, const std::string& body,
                            std::optional<std::string> retry_after, int delay_ms) {
  nlohmann::json b{{"status", status}, {"body", body}, {"delay_ms", delay_ms}};
  if (retry_after) b["retry_after"] = *retry_after;
  behave(std::move(b));
}

void NotifyReceiver::answer_endlessly(int status) {
  behave(nlohmann::json{{"status", status}, {"endless", true}});
}

void NotifyReceiver::behave(nlohmann::json b) {
  // Written whole and renamed: the receiver never reads half a file.
  write_file(dir_ / "behaviour.json.tmp", b.dump());
  std::filesystem::rename(dir_ / "behaviour.json.tmp", dir_ / "behaviour.json");
}

std::vector<nlohmann::json> NotifyReceiver::requests() const {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir_ / "requests.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

std::vector<nlohmann::json> NotifyReceiver::accepted_bodies() const {
  std::vector<nlohmann::json> out;
  for (const auto& r : requests()) {
    const int status = r.value("status", 0);
    if (status < 200 || status >= 300) continue;
    out.push_back(nlohmann::json::parse(r.value("body", ""), nullptr, false));
  }
  return out;
}

}  // namespace storewatch::test
