#pragma once
/// \file
/// The message transport sync and HQ talk through. The production one is MQTT
/// (sync/mqtt_transport.h); tests may bring their own. Everything — calls and
/// listener callbacks — happens on the owner's io_context thread.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace storewatch::sync {

struct Message {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retained = false;
};

/// What the transport tells its owner. No-op defaults: override what you need.
class TransportListener {
 public:
  virtual ~TransportListener() = default;
  /// Called before every connection attempt; the message returned becomes the
  /// last will of that connection.
  virtual std::optional<Message> will_for_next_connect() { return std::nullopt; }
  virtual void on_connected() {}
  /// The connection dropped or an attempt failed; the transport retries by
  /// itself with backoff.
  virtual void on_disconnected(const std::string& /*reason*/) {}
  virtual void on_message(const Message& /*message*/) {}
};

class Transport {
 public:
  using Done = std::function<void(Status)>;

  virtual ~Transport() = default;

  /// Connects, and keeps reconnecting until stop(). Call once.
  virtual void start(TransportListener& listener) = 0;

  /// Disconnects cleanly within `grace` (the last will is not sent); no
  /// listener calls after it returns.
  virtual void stop(std::chrono::milliseconds grace) = 0;

  virtual bool connected() const = 0;

  /// Publishes; `done` runs once the broker acknowledged (QoS 1: PUBACK) or
  /// the publish failed. Without a connection it fails at once.
  virtual void publish(Message message, Done done) = 0;

  /// Subscribes to topic filters at QoS 1 on the current connection.
  virtual void subscribe(std::vector<std::string> filters, Done done) = 0;

  /// Human-readable cause of the last failure ("" when none).
  virtual std::string last_error() const = 0;
};

}  // namespace storewatch::sync
