// sync::MqttTransport's bound on the messages it takes off the connection
// ahead of its listener (MqttOptions::max_unhandled), against a real
// mosquitto. Paho holds its process-wide lock while its receiving thread
// waits for room, so a listener that publishes from on_message (as HQ's
// ingest publishes acks) must still get every message and every publish
// through: before the transport opened the bound around its own calls into
// Paho, the first such publish deadlocked (found by tests/bench/fleet_load);
// now the transport publishes on a thread of its own, and a publish made on
// the io_context thread would deadlock again.
// The messages come from another process, as the stores' do: Paho's one
// receiving thread serves every client of a process, so a process that
// bounds one client's messages should not also send heavily on another.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "sync/mqtt_transport.h"
#include "tests/support/run_on.h"
#include "tests/support/support.h"

namespace storewatch::sync {
namespace {

using namespace std::chrono_literals;

/// Subscribes to "bp/in" and answers each message there with a QoS 1
/// publish on "bp/out", a little slower than the broker sends. Like HQ's
/// acks, at most kWindow answers are with the transport at once and the
/// rest wait their turn here (Paho refuses publishes past its buffer of 100).
class BackPressureReplier final : public TransportListener {
 public:
  static constexpr int kWindow = 8;
  Transport* transport = nullptr;
  std::atomic<bool> subscribed{false};
  std::atomic<int> received{0};
  std::atomic<int> replied{0};
  std::atomic<int> failed{0};
  std::string first_error;  // io thread

  void on_connected() override {
    transport->subscribe({"bp/in"}, [this](const Status& st) { subscribed = st.ok(); });
  }
  void on_message(const Message& m) override {
    ++received;
    std::this_thread::sleep_for(1ms);
    waiting_.push_back(m.payload.substr(0, 16));
    send();
  }

 private:
  void send() {
    while (outstanding_ < kWindow && !waiting_.empty()) {
      ++outstanding_;
      auto payload = std::move(waiting_.front());
      waiting_.pop_front();
      transport->publish(Message{"bp/out", std::move(payload), 1, false}, [this](const Status& st) {
        --outstanding_;
        if (!st) {  // the transport may be going away: no more
          ++failed;
          if (first_error.empty()) first_error = st.error().message;
          return;
        }
        ++replied;
        send();
      });
    }
  }

  std::deque<std::string> waiting_;
  int outstanding_ = 0;
};

TEST(MqttBackPressure, AListenerPublishingWhileTheBoundIsFullGetsEverythingThrough) {
  test::Broker broker;
  test::TempDir dir;
  config::BrokerConfig b;
  b.broker = broker.uri();
  constexpr int kMessages = 400;

  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::thread loop([&] { io.run(); });
  struct Join {
    boost::asio::io_context& io;
    std::thread& t;
    ~Join() {
      io.stop();
      t.join();
    }
  } join{io, loop};

  BackPressureReplier replier;
  std::unique_ptr<MqttTransport> receiving;
  test::run_on(io, [&] {
    MqttOptions o;
    o.broker = b;
    o.client_id = "bp-receiver";
    o.max_unhandled = 2;
    auto r = MqttTransport::create(io, o);
    EXPECT_TRUE(r.ok());
    receiving = std::move(r).value();
    replier.transport = receiving.get();
    receiving->start(replier);
    return 0;
  });
  ASSERT_TRUE(test::wait_until([&] { return replier.subscribed.load(); }, 15s));

  // 400 messages of 8 KB at once, from another process (as the stores
  // are): far more than the bound of 2.
  {
    std::ofstream lines(dir / "lines");
    for (int i = 0; i < kMessages; ++i) {
      lines << std::string(8192, static_cast<char>('a' + i % 26)) << '\n';
    }
  }
  auto pub = test::run({"sh", "-c",
                        "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker.port()) +
                            " -q 1 -t bp/in -l < " + (dir / "lines").string()},
                       {}, 60s);
  EXPECT_EQ(pub.exit_code, 0) << pub.err;
  EXPECT_TRUE(test::wait_until([&] { return replier.replied + replier.failed >= kMessages; }, 60s))
      << "received " << replier.received << ", replied " << replier.replied << ", failed "
      << replier.failed;
  EXPECT_EQ(replier.failed, 0) << test::run_on(io, [&] { return replier.first_error; });
  EXPECT_EQ(replier.received, kMessages);
  EXPECT_EQ(replier.replied, kMessages);

  // Stopping with the bound full does not hang either.
  test::Child late({"sh", "-c",
                    "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker.port()) +
                        " -q 1 -t bp/in -l < " + (dir / "lines").string()},
                   dir.path());
  ASSERT_TRUE(test::wait_until([&] { return replier.received > kMessages + 10; }, 20s));
  test::run_on(io, [&] {
    receiving->stop(200ms);
    receiving.reset();
    return 0;
  });
}

}  // namespace
}  // namespace storewatch::sync
