#pragma once
/// \file
/// A Transport that records publishes and lets the test decide when each is
/// acknowledged, when the connection drops, and what arrives.

#include <deque>

#include "sync/transport.h"

namespace storewatch::test {

class FakeTransport final : public sync::Transport {
 public:
  struct Published {
    sync::Message message;
    Done done;
  };

  void start(sync::TransportListener& l) override {
    listener = &l;
    connect();
  }
  void stop(std::chrono::milliseconds) override {
    is_connected = false;
    listener = nullptr;
  }
  bool connected() const override { return is_connected; }
  void publish(sync::Message m, Done done) override {
    if (!is_connected) {
      done(Error{"not connected"});
      return;
    }
    published.push_back({std::move(m), std::move(done)});
  }
  void subscribe(std::vector<std::string> filters, Done done) override {
    subscriptions.insert(subscriptions.end(), filters.begin(), filters.end());
    done(Status::success());
  }
  std::string last_error() const override { return ""; }

  // --- test controls -------------------------------------------------------
  void connect() {
    if (auto will = listener->will_for_next_connect()) wills.push_back(*will);
    is_connected = true;
    listener->on_connected();
  }
  void drop() {
    is_connected = false;
    auto pending = std::move(published);
    published.clear();
    for (auto& p : pending) {
      if (p.done) p.done(Error{"connection lost"});
    }
    listener->on_disconnected("connection lost");
  }
  /// PUBACKs the oldest unacknowledged publish.
  void puback_oldest() {
    for (auto& p : published) {
      if (p.done) {
        auto d = std::move(p.done);
        p.done = nullptr;
        d(Status::success());
        return;
      }
    }
  }
  void deliver(sync::Message m) { listener->on_message(m); }

  /// Publishes on `topic`, in order.
  std::vector<sync::Message> on(const std::string& topic) const {
    std::vector<sync::Message> out;
    for (const auto& p : published) {
      if (p.message.topic == topic) out.push_back(p.message);
    }
    return out;
  }

  sync::TransportListener* listener = nullptr;
  bool is_connected = false;
  std::deque<Published> published;
  std::vector<std::string> subscriptions;
  std::vector<sync::Message> wills;
};

}  // namespace storewatch::test
