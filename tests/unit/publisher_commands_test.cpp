// The publisher's part in HQ commands: it subscribes to P/stores/S/cmd on
// every connect, hands those payloads to the agent, publishes answers on
// cmd/result, and resync(N) sends stored events from N again.
#include <boost/asio/io_context.hpp>

#include <gtest/gtest.h>

#include <algorithm>

#include "sync/publisher.h"
#include "tests/fakes/fake_transport.h"

namespace storewatch::sync {
namespace {

using namespace std::chrono_literals;

class SmallOutbox final : public Outbox {
 public:
  explicit SmallOutbox(int n) {
    for (int i = 1; i <= n; ++i) {
      wire::Event e;
      e.seq = i;
      e.uid = "ev-" + std::to_string(i);
      e.incident = "inc";
      e.type = "opened";
      e.at = "2026-11-26T22:18:03.123Z";
      e.actor = "agent";
      e.body = {{"incident_state", {{"uid", "inc"}}}};
      events.push_back(e);
    }
  }
  Result<std::vector<wire::Event>> events_after(std::int64_t after, int limit) override {
    std::vector<wire::Event> out;
    for (const auto& e : events) {
      if (e.seq > after && static_cast<int>(out.size()) < limit) out.push_back(e);
    }
    return out;
  }
  std::int64_t max_seq() override { return static_cast<std::int64_t>(events.size()); }
  std::int64_t hq_acked_seq() override { return acked; }
  void record_hq_acked_seq(std::int64_t seq) override { acked = std::max(acked, seq); }
  std::int64_t next_session() override { return ++session; }
  std::map<std::string, std::int64_t> open_by_severity() override { return {}; }
  std::int64_t queued() override { return max_seq() - acked; }

  std::vector<wire::Event> events;
  std::int64_t acked = 0;
  std::int64_t session = 0;
};

const std::string kCmd = "storewatch/v1/stores/store-1/cmd";
const std::string kResult = "storewatch/v1/stores/store-1/cmd/result";
const std::string kEvents = "storewatch/v1/stores/store-1/events";

class PublisherCommandsTest : public ::testing::Test {
 protected:
  PublisherCommandsTest() {
    config.store.id = "store-1";
    config.sync.batch_max_events = 100;
    config.sync.inflight_batches = 4;
    config.sync.ack_timeout = 10s;
  }

  void start() {
    publisher = std::make_unique<Publisher>(io, config, outbox, transport);
    publisher->on_command([this](const std::string& p) { received.push_back(p); });
    publisher->start();
  }
  void puback_all() {
    for (std::size_t i = 0; i < transport.published.size(); ++i) transport.puback_oldest();
  }
  std::vector<std::int64_t> seqs_sent() {
    std::vector<std::int64_t> out;
    for (const auto& m : transport.on(kEvents)) {
      auto batch = wire::decode_batch(m.payload);
      EXPECT_TRUE(batch.ok());
      if (!batch.ok()) continue;
      for (const auto& e : batch->events) out.push_back(e.seq);
    }
    return out;
  }

  config::Config config;
  boost::asio::io_context io;
  SmallOutbox outbox{5};
  test::FakeTransport transport;
  std::unique_ptr<Publisher> publisher;
  std::vector<std::string> received;
};

TEST_F(PublisherCommandsTest, SubscribesToCommandsOnEveryConnect) {
  start();
  EXPECT_EQ(std::count(transport.subscriptions.begin(), transport.subscriptions.end(), kCmd), 1);
  transport.drop();
  transport.connect();
  EXPECT_EQ(std::count(transport.subscriptions.begin(), transport.subscriptions.end(), kCmd), 2);
}

TEST_F(PublisherCommandsTest, WithoutAHandlerItDoesNotSubscribe) {
  publisher = std::make_unique<Publisher>(io, config, outbox, transport);
  publisher->start();
  EXPECT_EQ(std::count(transport.subscriptions.begin(), transport.subscriptions.end(), kCmd), 0);
}

TEST_F(PublisherCommandsTest, RoutesOnlyThisStoresCommands) {
  start();
  transport.deliver({kCmd, std::string("raw\0bytes", 9), 1, false});
  transport.deliver({"storewatch/v1/stores/store-2/cmd", "other store", 1, false});
  transport.deliver({kResult, "an answer is no command", 1, false});
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0], std::string("raw\0bytes", 9)) << "the payload is handed over as is";
}

TEST_F(PublisherCommandsTest, AnswersGoToCmdResultAndAreBounded) {
  start();
  publisher->answer_command(R"({"v":1,"id":"a","ok":true})");
  auto answers = transport.on(kResult);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].payload, R"({"v":1,"id":"a","ok":true})");
  EXPECT_EQ(answers[0].qos, 1);
  EXPECT_FALSE(answers[0].retained);
  // Never PUBACKed: at most kMaxAnswersInFlight wait, the rest are dropped.
  for (int i = 0; i < Publisher::kMaxAnswersInFlight + 50; ++i) publisher->answer_command("{}");
  EXPECT_EQ(transport.on(kResult).size(), static_cast<std::size_t>(Publisher::kMaxAnswersInFlight));
  puback_all();
  publisher->answer_command("{}");
  EXPECT_EQ(transport.on(kResult).size(),
            static_cast<std::size_t>(Publisher::kMaxAnswersInFlight) + 1);
  // Offline: dropped, no crash.
  transport.drop();
  publisher->answer_command("{}");
}

TEST_F(PublisherCommandsTest, ResyncSendsStoredEventsFromTheSeqAgain) {
  start();
  puback_all();
  EXPECT_EQ(seqs_sent(), (std::vector<std::int64_t>{1, 2, 3, 4, 5}));
  transport.published.clear();

  publisher->resync(3);
  EXPECT_EQ(seqs_sent(), (std::vector<std::int64_t>{3, 4, 5}));
  puback_all();
  transport.published.clear();

  // Beyond what was sent: nothing is skipped, nothing is re-sent.
  publisher->resync(50);
  EXPECT_TRUE(seqs_sent().empty());
  // From 0 or 1: everything.
  publisher->resync(0);
  EXPECT_EQ(seqs_sent(), (std::vector<std::int64_t>{1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace storewatch::sync
