// The doctor's broker checks: reaching it (TCP, TLS) and whether it lets an
// anonymous client in.
#include "cli/doctor.h"

#include <unistd.h>

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>

#include <cmath>
#include <random>

#include "cli/doctor_internal.h"
#include "sync/mqtt_transport.h"

namespace storewatch::cli {

using nlohmann::json;
namespace asio = boost::asio;
using doctor_internal::me;
using doctor_internal::plural;
using doctor_internal::when;

namespace {

/// Queued events older than this while connected: HQ is not acknowledging.
constexpr double kAckLagWarnSeconds = 600;

}  // namespace

// --- broker ------------------------------------------------------------------

std::optional<BrokerAddress> broker_address(std::string_view uri) {
  const std::size_t sep = uri.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  BrokerAddress a;
  a.scheme = std::string(uri.substr(0, sep));
  if (a.scheme == "tcp" || a.scheme == "mqtt") {
    a.port = 1883;
  } else if (a.scheme == "ssl" || a.scheme == "mqtts") {
    a.port = 8883;
    a.tls = true;
  } else if (a.scheme == "ws") {
    a.port = 80;
  } else if (a.scheme == "wss") {
    a.port = 443;
    a.tls = true;
  } else {
    return std::nullopt;
  }
  std::string_view rest = uri.substr(sep + 3);
  rest = rest.substr(0, rest.find('/'));
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    a.host = std::string(rest.substr(1, close - 1));
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return std::nullopt;
      port = rest.substr(close + 2);
    }
  } else if (const std::size_t colon = rest.find(':'); colon != std::string_view::npos) {
    a.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
  } else {
    a.host = std::string(rest);
  }
  if (a.host.empty()) return std::nullopt;
  if (!port.empty()) {
    int n = 0;
    for (char ch : port) {
      if (ch < '0' || ch > '9' || n > 65535) return std::nullopt;
      n = n * 10 + (ch - '0');
    }
    if (n < 1 || n > 65535) return std::nullopt;
    a.port = n;
  }
  return a;
}

namespace {

/// What a direct connection to the broker found.
struct Reach {
  bool ok = false;
  std::string stage;  ///< resolve|connect|tls: where it stopped (or "tls" when all passed)
  std::string error;
  double connect_ms = 0;
  std::string address;  ///< the address connected to
  std::string tls;      ///< "TLSv1.3, certificate verified for HOST"
  std::vector<std::string> notes;
};

/// Runs `io` until `done` or `timeout`; false on timeout.
bool run_until(asio::io_context& io, const bool& done, std::chrono::milliseconds timeout) {
  io.restart();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    io.run_one_until(deadline);
  }
  return done;
}

/// Gives up on a connect or handshake that run_until timed out: closes the
/// socket and runs the handlers that cancels, so none outlives this call.
void abandon(asio::io_context& io, asio::ip::tcp::socket::lowest_layer_type& socket) {
  boost::system::error_code ignored;
  socket.close(ignored);
  io.restart();
  io.poll();
}

Reach reach_broker(const BrokerAddress& a, const config::BrokerConfig& b,
                   std::chrono::milliseconds timeout) {
  Reach r;
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  bool done = false;
  boost::system::error_code ec;
  asio::ip::tcp::resolver::results_type endpoints;
  r.stage = "resolve";
  resolver.async_resolve(a.host, std::to_string(a.port),
                         [&](const boost::system::error_code& e, auto results) {
                           ec = e;
                           endpoints = std::move(results);
                           done = true;
                         });
  if (!run_until(io, done, timeout)) {
    resolver.cancel();
    r.error = fmt::format("resolving {} took longer than {} ms", a.host, timeout.count());
    return r;
  }
  if (ec) {
    r.error = fmt::format("cannot resolve {}: {}", a.host, ec.message());
    return r;
  }

  asio::ssl::context ctx(asio::ssl::context::tls_client);
  if (a.tls) {
    boost::system::error_code e;
    if (!b.ca_file.empty()) {
      ctx.load_verify_file(b.ca_file.string(), e);
      if (e) r.notes.push_back(fmt::format("ca_file {}: {}", b.ca_file.string(), e.message()));
    } else {
      ctx.set_default_verify_paths(e);
    }
    if (!b.cert_file.empty() && !b.key_file.empty()) {
      if (::access(b.key_file.c_str(), R_OK) != 0) {
        r.notes.push_back(
            fmt::format("you ({}) cannot read key_file {}: the handshake goes without the client "
                        "certificate (sudo storewatch doctor checks it too)",
                        me(), b.key_file.string()));
      } else {
        ctx.use_certificate_chain_file(b.cert_file.string(), e);
        if (!e) ctx.use_private_key_file(b.key_file.string(), asio::ssl::context::pem, e);
        if (e) r.notes.push_back(fmt::format("client certificate: {}", e.message()));
      }
    }
    ctx.set_verify_mode(asio::ssl::verify_peer);
  }
  asio::ssl::stream<asio::ip::tcp::socket> stream(io, ctx);
  auto& socket = stream.lowest_layer();

  r.stage = "connect";
  done = false;
  const auto t0 = std::chrono::steady_clock::now();
  asio::ip::tcp::endpoint connected;
  asio::async_connect(socket, endpoints,
                      [&](const boost::system::error_code& e, const asio::ip::tcp::endpoint& ep) {
                        ec = e;
                        connected = ep;
                        done = true;
                      });
  if (!run_until(io, done, timeout)) {
    abandon(io, socket);
    r.error = fmt::format("no answer from {}:{} within {} ms (a firewall dropping packets?)",
                          a.host, a.port, timeout.count());
    return r;
  }
  if (ec) {
    r.error = fmt::format("cannot connect to {}:{}: {}", a.host, a.port, ec.message());
    return r;
  }
  r.connect_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  r.address = fmt::format("{}", connected.address().to_string());
  if (!a.tls) {
    r.ok = true;
    return r;
  }

  r.stage = "tls";
  SSL_set_tlsext_host_name(stream.native_handle(), a.host.c_str());
  stream.set_verify_callback(asio::ssl::host_name_verification(a.host));
  done = false;
  stream.async_handshake(asio::ssl::stream_base::client, [&](const boost::system::error_code& e) {
    ec = e;
    done = true;
  });
  if (!run_until(io, done, timeout)) {
    abandon(io, socket);
    r.error = fmt::format("the TLS handshake with {}:{} took longer than {} ms", a.host, a.port,
                          timeout.count());
    return r;
  }
  if (ec) {
    const long verify = SSL_get_verify_result(stream.native_handle());
    r.error = verify != X509_V_OK ? fmt::format("the broker's certificate is not trusted: {}",
                                                X509_verify_cert_error_string(verify))
                                  : fmt::format("TLS handshake failed: {}", ec.message());
    return r;
  }
  r.ok = true;
  r.tls = fmt::format("{}, certificate verified for {}", SSL_get_version(stream.native_handle()),
                      a.host);
  boost::system::error_code ignored;
  socket.close(ignored);
  return r;
}

std::vector<std::string> reach_fix(const Reach& r, const BrokerAddress& a,
                                   const config::BrokerConfig& b) {
  if (r.stage == "resolve") {
    return {fmt::format("getent hosts {}   (does the name resolve here?)", a.host),
            "resolvectl status   (which DNS servers the gateway uses)"};
  }
  if (r.stage == "connect") {
    return {
        fmt::format("nc -vz {} {}   (is the port reachable from this gateway?)", a.host, a.port),
        "check the store's WAN link and firewall, and [sync] broker in the config"};
  }
  return {fmt::format("openssl s_client -connect {}:{} -servername {}{} </dev/null", a.host, a.port,
                      a.host, b.ca_file.empty() ? "" : " -CAfile " + b.ca_file.string()),
          "check [sync] ca_file, cert_file and key_file, and the gateway's clock (timedatectl)"};
}

}  // namespace

DoctorCheck check_broker(const config::Config& cfg, const json* live,
                         std::chrono::milliseconds timeout) {
  DoctorCheck c;
  c.name = "broker";
  c.data = json{{"broker", cfg.sync.broker}};
  auto address = broker_address(cfg.sync.broker);
  if (live != nullptr) {
    const json sync = live->value("sync", json::object());
    c.data["source"] = "daemon";
    c.data["connected"] = sync.value("connected", false);
    c.data["queued"] = sync.value("queued", 0);
    c.data["hq_acked_seq"] = sync.value("hq_acked_seq", 0);
    if (sync.value("connected", false)) {
      c.summary = fmt::format("the daemon is connected to {} since {}; {} queued, HQ acked seq {}",
                              cfg.sync.broker, when(sync.value("since", std::string())),
                              plural(sync.value("queued", std::size_t{0}), "event"),
                              sync.value("hq_acked_seq", 0));
      const json age = sync.value("oldest_queued_age_s", json());
      if (age.is_number() && age.get<double>() > kAckLagWarnSeconds) {
        c.status = CheckStatus::warn;
        c.details.push_back(
            fmt::format("the oldest queued event is {:.0f} min old: HQ is not acknowledging",
                        age.get<double>() / 60));
        c.fix = {"storewatch sync status",
                 "at HQ: storewatch hq stores   (is HQ's ingest running and seeing this store?)"};
      }
      return c;
    }
    c.status = CheckStatus::fail;
    const std::string error = sync.value("last_error", std::string());
    c.summary = fmt::format("the daemon is offline from {}{}", cfg.sync.broker,
                            error.empty() ? "" : ": " + error);
    c.details.push_back(fmt::format("offline since {}, {} queued (kept until HQ acknowledges)",
                                    when(sync.value("since", std::string())),
                                    plural(sync.value("queued", std::size_t{0}), "event")));
  } else {
    c.data["source"] = "direct";
  }
  if (!address) {
    c.status = CheckStatus::fail;
    c.summary = fmt::format("cannot take the broker URI {} apart", cfg.sync.broker);
    c.fix = {"storewatch config check"};
    return c;
  }
  Reach r = reach_broker(*address, cfg.sync, timeout);
  c.data["reachable"] = r.ok;
  c.data["connect_ms"] =
      r.ok || r.stage == "tls" ? json(std::round(r.connect_ms * 10) / 10) : json(nullptr);
  c.data["tls"] = address->tls ? json(r.tls) : json(nullptr);
  if (!r.ok) c.data["error"] = r.error;
  for (auto& n : r.notes) c.details.push_back(std::move(n));
  const std::string how =
      r.ok ? fmt::format("{}:{} answers (TCP connect in {:.1f} ms{})", address->host, address->port,
                         r.connect_ms, r.tls.empty() ? "" : "; " + r.tls)
           : r.error;
  if (live != nullptr) {
    // The daemon is offline: the direct check says where it breaks.
    c.details.push_back("from here: " + how);
    c.fix = r.ok ? std::vector<std::string>{"storewatch sync status   (the daemon's last error)",
                                            "check [sync] username, password_file and the "
                                            "broker's ACL for this store's client id"}
                 : reach_fix(r, *address, cfg.sync);
    return c;
  }
  if (r.ok) {
    c.summary = how;
    c.details.push_back("the daemon does not run: the MQTT login itself was not tried");
    if (!r.notes.empty()) c.status = CheckStatus::warn;
    return c;
  }
  c.status = CheckStatus::fail;
  c.summary = r.error;
  c.fix = reach_fix(r, *address, cfg.sync);
  return c;
}

// --- broker_auth ---------------------------------------------------------------

namespace {

/// What one anonymous connection attempt found.
struct AnonymousAttempt {
  bool connected = false;
  bool answered = false;  ///< connected, or refused by the broker or TLS
  std::string error;
};

class OneAttempt final : public sync::TransportListener {
 public:
  void on_connected() override { connected = done = true; }
  void on_disconnected(const std::string& reason) override {
    if (done) return;
    error = reason;
    done = true;
  }
  bool done = false;
  bool connected = false;
  std::string error;
};

AnonymousAttempt connect_anonymously(const config::SyncConfig& sync,
                                     std::chrono::milliseconds timeout) {
  AnonymousAttempt a;
  sync::MqttOptions o;
  o.broker = sync;
  o.broker.username.clear();
  o.broker.password_file.clear();
  o.broker.cert_file.clear();
  o.broker.key_file.clear();
  // Never the store's id: the broker would hand it the daemon's connection.
  std::random_device rd;
  o.client_id = fmt::format("storewatch-doctor-{:08x}", rd());
  // The transport logs its attempts; the check says what they found.
  const log::Level level = log::level();
  log::set_level(log::Level::error);
  asio::io_context io;
  auto transport = sync::MqttTransport::create(io, o);
  if (!transport) {
    log::set_level(level);
    a.error = transport.error().message;
    return a;
  }
  OneAttempt listener;
  (*transport)->start(listener);
  {
    // Paho answers from its own thread, posting onto `io`: keep it running
    // until then.
    auto work = asio::make_work_guard(io);
    run_until(io, listener.done, timeout);
  }
  (*transport)->stop(std::chrono::milliseconds(0));
  transport->reset();
  io.restart();
  io.poll();
  log::set_level(level);
  a.connected = listener.connected;
  a.error = listener.done ? listener.error : fmt::format("no answer within {} ms", timeout.count());
  a.answered = listener.done;
  return a;
}

}  // namespace

DoctorCheck check_broker_auth(const config::Config& cfg, std::chrono::milliseconds timeout) {
  DoctorCheck c;
  c.name = "broker_auth";
  c.data = json{{"broker", cfg.sync.broker}};
  const AnonymousAttempt a = connect_anonymously(cfg.sync, timeout);
  c.data["anonymous_accepted"] = a.connected;
  if (!a.connected) c.data["error"] = a.error;
  if (a.connected) {
    c.status = CheckStatus::warn;
    c.summary = fmt::format(
        "{} lets in clients without a user name, password or certificate: anyone who reaches "
        "it can publish as any store and command every store",
        cfg.sync.broker);
    c.details.push_back(
        "HQ then believes forged events, statuses and stores, and a store without "
        "[sync] command_key_file takes forged commands");
    c.fix = {
        "give each store its own broker login (username = store id, password_file) or client "
        "certificate, and HQ its own",
        "on the broker: allow_anonymous false, and the acl_file of docs/SYNC.md (\"Who may "
        "publish what\"): each store only its own topics",
        "set [sync] command_key_file so the store takes only commands HQ signed"};
    return c;
  }
  const bool refused_by_broker = a.error.find("refused by broker") != std::string::npos;
  const bool tls_with_cert =
      broker_address(cfg.sync.broker).value_or(BrokerAddress{}).tls && !cfg.sync.cert_file.empty();
  if (refused_by_broker || tls_with_cert) {
    c.summary =
        fmt::format("{} refuses clients without credentials ({})", cfg.sync.broker, a.error);
    return c;
  }
  c.status = CheckStatus::skip;
  c.summary = fmt::format(
      "not checked: an anonymous connection to {} failed before the broker "
      "could refuse it ({}); see the broker check",
      cfg.sync.broker, a.error);
  return c;
}

}  // namespace storewatch::cli
