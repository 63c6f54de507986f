#pragma once
/// \file
/// Transport over MQTT 5 with Paho C++ (1.2). No Paho persistence: the
/// caller's SQLite is the one durable copy. Paho's threads only post onto the
/// io_context; reconnects use full-jitter exponential backoff.

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <random>

#include "config/config.h"
#include "sync/transport.h"

namespace storewatch::sync {

struct MqttOptions {
  config::BrokerConfig broker;
  std::string client_id;
  /// Keep the broker session (subscriptions and queued QoS 1 messages) while
  /// disconnected — HQ wants this so nothing published meanwhile is lost.
  bool persistent_session = false;
  std::chrono::seconds session_expiry{0};
  /// Delay before the first reconnect attempt; doubles up to reconnect_max.
  std::chrono::milliseconds reconnect_min{500};
  /// Most messages taken off the connection and not yet handed to the
  /// listener (0: no bound). At the bound Paho's receiving thread waits, so
  /// it reads no more from the socket and the broker keeps the rest (TCP
  /// back-pressure): a consumer slower than the broker holds at most about
  /// this many messages, not the broker's whole queue for its session.
  std::size_t max_unhandled = 0;
};

/// The wait before reconnect attempt `attempt` (0 for the first after a
/// loss): full-jitter exponential backoff, uniform in
/// [0, min(cap, base * 2^attempt)], so stores that lost the same broker spread
/// their reconnects instead of coming back in lockstep.
std::chrono::milliseconds reconnect_delay(unsigned attempt, std::chrono::milliseconds base,
                                          std::chrono::milliseconds cap, std::mt19937_64& rng);

class MqttTransport final : public Transport {
 public:
  /// Fails when the broker URI or the TLS files are unusable.
  static Result<std::unique_ptr<MqttTransport>> create(boost::asio::io_context& io,
                                                       MqttOptions options);
  ~MqttTransport() override;

  void start(TransportListener& listener) override;
  void stop(std::chrono::milliseconds grace) override;
  bool connected() const override;
  void publish(Message message, Done done) override;
  void subscribe(std::vector<std::string> filters, Done done) override;
  std::string last_error() const override;

  /// Re-reads the TLS files and password file of `files` (the same paths as
  /// at create). Refused, changing nothing, when one is missing, unreadable,
  /// not PEM, or the key does not belong to the certificate. When their
  /// contents changed, the connection is replaced by one of a new Paho client
  /// that uses them (what was in flight fails and is sent again); returns
  /// false when nothing changed (the connection is kept).
  Result<bool> reload_tls(const config::BrokerConfig& files);

  struct State;

 private:
  explicit MqttTransport(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

}  // namespace storewatch::sync
