#include "sync/publisher.h"

#include <boost/asio/io_context.hpp>

#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "sync/mqtt_transport.h"
#include "tests/fakes/fake_transport.h"

namespace storewatch::sync {
namespace {

using namespace std::chrono_literals;

/// An outbox in memory.
class MemoryOutbox final : public Outbox {
 public:
  void add(int n, std::size_t body_bytes = 10) {
    for (int i = 0; i < n; ++i) {
      wire::Event e;
      e.seq = static_cast<std::int64_t>(events.size()) + 1;
      e.uid = "ev-" + std::to_string(e.seq);
      e.incident = "inc";
      e.type = "opened";
      e.at = "2026-11-26T22:18:03.123Z";
      e.actor = "agent";
      e.body = {{"incident_state", {{"uid", "inc"}}}, {"pad", std::string(body_bytes, 'x')}};
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
  std::map<std::string, std::int64_t> open_by_severity() override { return {{"high", 1}}; }
  std::int64_t queued() override {
    return std::count_if(events.begin(), events.end(), [&](auto& e) { return e.seq > acked; });
  }

  std::vector<wire::Event> events;
  std::int64_t acked = 0;
  std::int64_t session = 0;
};

class PublisherTest : public ::testing::Test {
 protected:
  PublisherTest() {
    config.store.id = "store-1";
    config.sync.batch_max_events = 10;
    config.sync.inflight_batches = 2;
    config.sync.ack_timeout = 200ms;
  }
  config::Config config;
  boost::asio::io_context io;
  MemoryOutbox outbox;
  test::FakeTransport transport;
  std::unique_ptr<Publisher> publisher;

  void start() {
    publisher = std::make_unique<Publisher>(io, config, outbox, transport);
    publisher->start();
    transport.puback_oldest();  // the birth message
  }
  std::vector<std::int64_t> seqs_sent() {
    std::vector<std::int64_t> out;
    for (const auto& m : transport.on("storewatch/v1/stores/store-1/events")) {
      auto b = wire::decode_batch(m.payload);
      EXPECT_TRUE(b);
      for (const auto& e : b->events) out.push_back(e.seq);
    }
    return out;
  }
  void ack(std::int64_t seq) {
    transport.deliver({"storewatch/v1/stores/store-1/ack", wire::encode_ack(seq), 1, true});
  }
};

TEST_F(PublisherTest, SendsInSeqOrderInBatchesWithinTheWindow) {
  outbox.add(35);
  start();
  // Window of 2 batches of 10.
  EXPECT_EQ(seqs_sent().size(), 20u);
  transport.puback_oldest();
  EXPECT_EQ(seqs_sent().size(), 30u);
  transport.puback_oldest();
  transport.puback_oldest();
  auto seqs = seqs_sent();
  ASSERT_EQ(seqs.size(), 35u);
  for (std::size_t i = 0; i < seqs.size(); ++i)
    EXPECT_EQ(seqs[i], static_cast<std::int64_t>(i + 1));
  EXPECT_EQ(transport.subscriptions, std::vector<std::string>{"storewatch/v1/stores/store-1/ack"});
}

TEST_F(PublisherTest, BatchesStayUnder64KB) {
  outbox.add(10, 20'000);
  config.sync.inflight_batches = 100;
  start();
  auto batches = transport.on("storewatch/v1/stores/store-1/events");
  ASSERT_GT(batches.size(), 3u);
  for (const auto& b : batches) EXPECT_LE(b.payload.size(), wire::kMaxPayload);
  EXPECT_EQ(seqs_sent().size(), 10u);
}

TEST_F(PublisherTest, BirthAndWillCarryARisingSession) {
  outbox.add(1);
  start();
  ASSERT_EQ(transport.wills.size(), 1u);
  auto will = wire::decode_status(transport.wills[0].payload);
  ASSERT_TRUE(will);
  EXPECT_FALSE(will->online);
  EXPECT_EQ(will->session, 1);
  EXPECT_TRUE(transport.wills[0].retained);
  auto births = transport.on("storewatch/v1/stores/store-1/status");
  ASSERT_EQ(births.size(), 1u);
  auto birth = wire::decode_status(births[0].payload);
  EXPECT_TRUE(birth->online);
  EXPECT_EQ(birth->session, 1);
  EXPECT_EQ(birth->queued, 1);
  EXPECT_EQ(birth->open.at("high"), 1);
  transport.drop();
  transport.connect();
  EXPECT_EQ(wire::decode_status(transport.wills[1].payload)->session, 2);
}

TEST_F(PublisherTest, AcksAreRecordedAndALowerAckIsIgnored) {
  outbox.add(5);
  start();
  ack(3);
  EXPECT_EQ(outbox.acked, 3);
  EXPECT_EQ(publisher->stats().hq_acked_seq, 3);
  ack(2);
  EXPECT_EQ(publisher->stats().hq_acked_seq, 3);
  ack(5);
  EXPECT_EQ(outbox.acked, 5);
  // Garbage on the ack topic changes nothing.
  transport.deliver({"storewatch/v1/stores/store-1/ack", "{", 1, true});
  transport.deliver({"storewatch/v1/stores/other/ack", wire::encode_ack(99), 1, true});
  EXPECT_EQ(publisher->stats().hq_acked_seq, 5);
}

TEST_F(PublisherTest, AnAckBeyondTheNewestEventIsRefused) {
  // HQ remembers seqs from a database that has since been replaced.
  outbox.add(3);
  start();
  ack(500);
  EXPECT_EQ(outbox.acked, 0);
  EXPECT_EQ(publisher->stats().hq_acked_seq, 0);
  EXPECT_NE(publisher->stats().last_error.find("500"), std::string::npos);
}

TEST_F(PublisherTest, AnErrorClearsOnceEventsGetThroughAgain) {
  outbox.add(3);
  start();
  ack(500);
  ASSERT_NE(publisher->stats().last_error, "");
  publisher->note_error("SIGHUP: new TLS files refused");
  EXPECT_EQ(publisher->stats().last_error, "SIGHUP: new TLS files refused");
  EXPECT_TRUE(publisher->stats().last_error_at.has_value());
  for (int i = 0; i < 3; ++i) transport.puback_oldest();
  EXPECT_TRUE(publisher->stats().last_puback.has_value());
  EXPECT_EQ(publisher->stats().last_error, "");
  EXPECT_FALSE(publisher->stats().last_error_at.has_value());
}

TEST_F(PublisherTest, ReconnectResendsEverythingAboveTheAck) {
  outbox.add(5);
  start();
  transport.puback_oldest();
  ack(2);
  transport.drop();
  transport.published.clear();
  transport.connect();
  EXPECT_EQ(seqs_sent(), (std::vector<std::int64_t>{3, 4, 5}));
}

TEST_F(PublisherTest, AnOverdueAckResendsAfterTheTimeout) {
  outbox.add(3);
  start();
  transport.puback_oldest();
  EXPECT_EQ(seqs_sent().size(), 3u);
  // HQ never acks: after ack_timeout the events go again.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (seqs_sent().size() < 6 && std::chrono::steady_clock::now() < deadline) io.run_for(20ms);
  EXPECT_EQ(seqs_sent(), (std::vector<std::int64_t>{1, 2, 3, 1, 2, 3}));
}

TEST_F(PublisherTest, OverdueRoundsInARowWaitLonger) {
  outbox.add(1);
  start();
  transport.puback_oldest();
  using Clock = std::chrono::steady_clock;
  std::vector<Clock::time_point> sends{Clock::now()};
  auto deadline = Clock::now() + 10s;
  // Sends at 0, then after 200 ms, 400 ms, 800 ms (each overdue round doubles).
  while (sends.size() < 4 && Clock::now() < deadline) {
    io.run_for(10ms);
    if (seqs_sent().size() > sends.size()) {
      sends.push_back(Clock::now());
      transport.puback_oldest();
    }
  }
  ASSERT_EQ(sends.size(), 4u);
  // Seen by the loop up to a few polls late: between one round and the next.
  EXPECT_GE(sends[2] - sends[1], 300ms);
  EXPECT_GE(sends[3] - sends[2], 600ms);
  // An ack that moves resets the wait.
  outbox.add(1);
  ack(1);
  publisher->notify();
  const auto before = seqs_sent().size();
  const auto t0 = Clock::now();
  while (seqs_sent().size() < before + 1 && Clock::now() < deadline) io.run_for(10ms);
  transport.puback_oldest();
  while (seqs_sent().size() < before + 2 && Clock::now() < deadline) io.run_for(10ms);
  EXPECT_EQ(seqs_sent().size(), before + 2);
  EXPECT_LT(Clock::now() - t0, 1200ms);  // not the 1600 ms of a fourth round
}

TEST_F(PublisherTest, NewEventsGoOutOnNotify) {
  start();
  EXPECT_TRUE(seqs_sent().empty());
  outbox.add(2);
  publisher->notify();
  EXPECT_EQ(seqs_sent(), (std::vector<std::int64_t>{1, 2}));
}

TEST_F(PublisherTest, StopSaysOfflineThenDisconnects) {
  start();
  bool stopped = false;
  publisher->stop(1s, [&] { stopped = true; });
  auto statuses = transport.on("storewatch/v1/stores/store-1/status");
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_FALSE(wire::decode_status(statuses[1].payload)->online);
  EXPECT_FALSE(stopped);
  transport.puback_oldest();  // the goodbye
  EXPECT_TRUE(stopped);
  EXPECT_FALSE(transport.connected());
}

TEST_F(PublisherTest, TheGoodbyeSaysShutdownAndTheWillSaysConnectionLost) {
  start();
  EXPECT_EQ(wire::decode_status(transport.wills[0].payload)->reason, "connection_lost");
  auto birth = wire::decode_status(transport.on("storewatch/v1/stores/store-1/status")[0].payload);
  EXPECT_EQ(birth->reason, "");
  publisher->stop(1s, [] {});
  auto bye = wire::decode_status(transport.on("storewatch/v1/stores/store-1/status")[1].payload);
  EXPECT_FALSE(bye->online);
  EXPECT_EQ(bye->reason, "shutdown");
  EXPECT_EQ(bye->session, birth->session);
}

TEST_F(PublisherTest, StatusCarriesTheHashOfTheConfigFiles) {
  char tmpl[] = "/tmp/publisher-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::filesystem::path dir(tmpl);
  auto write = [](const std::filesystem::path& p, const std::string& text) {
    std::ofstream(p, std::ios::binary) << text;
  };
  write(dir / "a.toml", "[store]\nid = \"store-1\"\n");
  write(dir / "b.toml", "");
  config.files = {dir / "a.toml", dir / "b.toml"};
  const std::string first = config_digest(config.files);
  EXPECT_TRUE(first.starts_with("sha256:")) << first;
  EXPECT_EQ(first.size(), 7u + 64u);
  start();
  auto birth = wire::decode_status(transport.on("storewatch/v1/stores/store-1/status")[0].payload);
  EXPECT_EQ(birth->config_hash, first);
  // A changed byte, or bytes moved from one file to the next, change it.
  write(dir / "a.toml", "[store]\nid = \"store-2\"\n");
  EXPECT_NE(config_digest(config.files), first);
  write(dir / "a.toml", "[store]\nid = \"store-1\"");
  write(dir / "b.toml", "\n");
  EXPECT_NE(config_digest(config.files), first);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(config_digest(config.files), "sha256:unreadable");
}

TEST_F(PublisherTest, AReloadedConfigsHashIsPublishedAtOnceAndInLaterStatuses) {
  start();
  const auto topic = "storewatch/v1/stores/store-1/status";
  ASSERT_EQ(transport.on(topic).size(), 1u);
  const std::string first = wire::decode_status(transport.on(topic)[0].payload)->config_hash;
  publisher->set_config_hash("sha256:reloaded");
  ASSERT_EQ(transport.on(topic).size(), 2u);
  auto again = wire::decode_status(transport.on(topic)[1].payload);
  EXPECT_TRUE(again->online);
  EXPECT_EQ(again->config_hash, "sha256:reloaded");
  EXPECT_NE(again->config_hash, first);
  publisher->stop(1s, [] {});
  auto bye = wire::decode_status(transport.on(topic).back().payload);
  EXPECT_FALSE(bye->online);
  EXPECT_EQ(bye->config_hash, "sha256:reloaded");
}

TEST_F(PublisherTest, StatsCountFailedAttemptsAndRememberPubacksAndAcks) {
  outbox.add(3);
  start();
  PublisherStats s = publisher->stats();
  EXPECT_TRUE(s.connected);
  EXPECT_EQ(s.connects, 1);
  EXPECT_TRUE(s.since.has_value());
  EXPECT_FALSE(s.last_puback.has_value());
  EXPECT_EQ(s.queued, 3);
  ASSERT_TRUE(s.oldest_queued_at.has_value());
  EXPECT_EQ(format_rfc3339(*s.oldest_queued_at), "2026-11-26T22:18:03.123Z");
  EXPECT_EQ(s.inflight_batches, 1);
  transport.puback_oldest();
  s = publisher->stats();
  EXPECT_TRUE(s.last_puback.has_value());
  EXPECT_EQ(s.inflight_batches, 0);
  ack(3);
  s = publisher->stats();
  EXPECT_TRUE(s.last_ack.has_value());
  EXPECT_EQ(s.queued, 0);
  EXPECT_FALSE(s.oldest_queued_at.has_value());

  transport.drop();
  // Two failed attempts while offline.
  transport.listener->on_disconnected("connect: refused");
  transport.listener->on_disconnected("connect: refused");
  s = publisher->stats();
  EXPECT_FALSE(s.connected);
  EXPECT_EQ(s.reconnect_attempts, 2);
  EXPECT_EQ(s.last_error, "connect: refused");
  EXPECT_TRUE(s.last_error_at.has_value());
  transport.connect();
  s = publisher->stats();
  EXPECT_EQ(s.reconnect_attempts, 0);
  EXPECT_EQ(s.connects, 2);
}

TEST(ReconnectDelay, IsFullJitterUnderADoublingCeilingAndTheCap) {
  std::mt19937_64 rng(42);
  const auto base = std::chrono::milliseconds(500);
  const auto cap = std::chrono::milliseconds(300'000);
  for (unsigned attempt = 0; attempt < 40; ++attempt) {
    const std::int64_t ceiling =
        std::min<std::int64_t>(cap.count(), base.count() << std::min(attempt, 20u));
    std::set<std::int64_t> seen;
    std::int64_t low = ceiling, high = 0;
    for (int i = 0; i < 200; ++i) {
      auto d = reconnect_delay(attempt, base, cap, rng).count();
      ASSERT_GE(d, 0);
      ASSERT_LE(d, ceiling) << "attempt " << attempt;
      seen.insert(d);
      low = std::min(low, d);
      high = std::max(high, d);
    }
    // Spread over the whole range, not clustered at the ceiling.
    EXPECT_GT(seen.size(), 100u) << "attempt " << attempt;
    EXPECT_LT(low, ceiling / 10) << "attempt " << attempt;
    EXPECT_GT(high, ceiling * 9 / 10) << "attempt " << attempt;
  }
}

}  // namespace
}  // namespace storewatch::sync
