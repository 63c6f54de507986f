#include "probes/system_probe.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "probes/procfs.h"
#include "probes/sntp.h"

namespace storewatch::probes {
namespace {

namespace asio = boost::asio;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kDefaultPath = "/";
constexpr std::string_view kDefaultNtpServer = "pool.ntp.org";
constexpr std::uint16_t kNtpPort = 123;
// The clock check gives up on a reply at this share of the timeout, so it
// can say "no reply" itself before the scheduler's timeout.
constexpr double kBudgetShare = 0.9;
// statvfs runs off the loop; a hung mount holds its thread. No more than
// this many may be stuck at once across the process.
constexpr int kMaxDiskWorkers = 4;

constexpr config::KeySpec kKeys[] = {
    {"check", config::KeyKind::choice, true, "", "what to check on the gateway",
     "disk|memory|load|clock"},
    {"path", config::KeyKind::string, false, "",
     "disk: a path on the file system to check (default \"/\")"},
    {"warn", config::KeyKind::number, false, "",
     "warn at or above: disk/memory used % (80/90), load per core (2), clock offset s (0.5)"},
    {"crit", config::KeyKind::number, false, "",
     "fail at or above: disk/memory used % (90/95), load per core (4), clock offset s (2)"},
    {"ntp_server", config::KeyKind::string, false, "",
     "clock: NTP server as host or host:port ([v6]:port) (default \"pool.ntp.org\")"},
};

enum class Check { disk, memory, load, clock };

Check check_of(const std::string& s) {
  if (s == "disk") return Check::disk;
  if (s == "memory") return Check::memory;
  if (s == "load") return Check::load;
  return Check::clock;
}

struct Thresholds {
  double warn;
  double crit;
};

Thresholds default_thresholds(Check c) {
  switch (c) {
    case Check::disk: return {80, 90};
    case Check::memory: return {90, 95};
    case Check::load: return {2, 4};
    case Check::clock: return {0.5, 2};
  }
  return {0, 0};
}

Thresholds thresholds_of(const config::ProbeConfig& p) {
  Thresholds t = default_thresholds(check_of(p.str("check")));
  if (p.has("warn")) t.warn = p.number("warn");
  if (p.has("crit")) t.crit = p.number("crit");
  return t;
}

struct HostPort {
  std::string host;
  std::uint16_t port = kNtpPort;
};

/// "host", "host:port", "[v6]:port" or a bare IPv6 literal.
Result<HostPort> parse_server(std::string_view s) {
  HostPort out;
  std::string_view port;
  if (s.starts_with('[')) {
    const auto close = s.find(']');
    if (close == std::string_view::npos) return Error{"missing ']' after the IPv6 address"};
    out.host = std::string(s.substr(1, close - 1));
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return Error{"expected :port after ']'"};
      port = rest.substr(1);
    }
  } else if (std::count(s.begin(), s.end(), ':') == 1) {
    const auto colon = s.find(':');
    out.host = std::string(s.substr(0, colon));
    port = s.substr(colon + 1);
  } else {
    out.host = std::string(s);
  }
  if (out.host.empty()) return Error{"no host"};
  if (!port.empty() || s.ends_with(':')) {
    int n = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (ec != std::errc() || end != port.data() + port.size() || n < 1 || n > 65535) {
      return Error{fmt::format("port \"{}\" is not 1..65535", port)};
    }
    out.port = static_cast<std::uint16_t>(n);
  }
  return out;
}

std::vector<std::string> validate(const config::ProbeConfig& p) {
  std::vector<std::string> problems;
  const std::string& check = p.str("check");
  const Check c = check_of(check);
  if (p.has("path") && c != Check::disk) {
    problems.push_back(fmt::format("path is only for check = \"disk\", not \"{}\"", check));
  }
  if (p.has("path") && p.str("path").empty()) problems.push_back("path: must not be empty");
  if (p.has("ntp_server")) {
    if (c != Check::clock) {
      problems.push_back(
          fmt::format("ntp_server is only for check = \"clock\", not \"{}\"", check));
    } else if (auto server = parse_server(p.str("ntp_server")); !server) {
      problems.push_back(
          fmt::format("ntp_server \"{}\": {}", p.str("ntp_server"), server.error().message));
    }
  }
  const Thresholds t = thresholds_of(p);
  if (t.warn < 0 || t.crit < 0) problems.push_back("warn and crit must not be negative");
  if ((c == Check::disk || c == Check::memory) && (t.warn > 100 || t.crit > 100)) {
    problems.push_back("warn and crit are percentages for this check: at most 100");
  }
  if (t.warn >= t.crit) {
    problems.push_back(fmt::format("warn ({:g}) must be below crit ({:g}){}", t.warn, t.crit,
                                   p.has("warn") && p.has("crit") ? "" : " (the default)"));
  }
  return problems;
}

std::string bytes_text(double b) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (b >= 1024 && u < 5) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.1f} {}", b, kUnits[u]);
}

/// ok, warn or fail for `value` against `t`, and the words for it.
ProbeStatus grade(double value, const Thresholds& t, std::string& note, std::string_view unit) {
  if (value >= t.crit) {
    note = fmt::format(" (fail at {:g}{})", t.crit, unit);
    return ProbeStatus::fail;
  }
  if (value >= t.warn) {
    note = fmt::format(" (warn at {:g}{})", t.warn, unit);
    return ProbeStatus::warn;
  }
  return ProbeStatus::ok;
}

std::optional<std::string> read_proc(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// ---------------------------------------------------------------------------
// disk: statvfs on a short-lived worker thread, because statvfs of a hung
// network mount blocks in the kernel and would freeze every probe on the loop.

struct DiskStat {
  int error = 0;  // errno of statvfs, 0 if it worked
  struct statvfs st {};
};

std::atomic<int> g_disk_workers{0};

/// The hand-back from the worker: delivered on the loop unless the check was
/// abandoned first (cancelled, or the probe destroyed).
struct DiskJob {
  std::mutex mutex;
  bool abandoned = false;
  asio::any_io_executor executor;
  std::function<void(const DiskStat&)> deliver;
};

// ---------------------------------------------------------------------------

struct Attempt {
  explicit Attempt(const asio::any_io_executor& ex) : resolver(ex), socket(ex), deadline(ex) {}
  udp::resolver resolver;
  udp::socket socket;
  asio::steady_timer deadline;
  std::shared_ptr<DiskJob> disk;
  Clock::time_point started;
  std::array<std::uint8_t, 512> reply{};
  sntp::Timestamp sent_ts;
  sntp::UnixNanos t1 = 0;
  Probe::Done done;
  bool cancelled = false;
};

class SystemProbe final : public Probe {
 public:
  SystemProbe(const config::ProbeConfig& c, asio::any_io_executor ex)
      : check_(check_of(c.str("check"))),
        thresholds_(thresholds_of(c)),
        path_(c.has("path") ? c.str("path") : std::string(kDefaultPath)),
        budget_(static_cast<Millis::rep>(static_cast<double>(c.timeout.count()) * kBudgetShare)),
        ex_(std::move(ex)) {
    auto server = parse_server(c.has("ntp_server") ? c.str("ntp_server") : kDefaultNtpServer);
    if (server) server_ = *server;
  }

  ~SystemProbe() override { cancel(); }

  void start(Done done) override {
    auto a = std::make_shared<Attempt>(ex_);
    attempt_ = a;
    a->done = std::move(done);
    a->started = Clock::now();
    switch (check_) {
      case Check::disk: start_disk(a); return;
      // Posted, so `done` never runs inside start().
      case Check::memory: asio::post(ex_, [a, t = thresholds_] { check_memory(*a, t); }); return;
      case Check::load: asio::post(ex_, [a, t = thresholds_] { check_load(*a, t); }); return;
      case Check::clock: start_clock(a); return;
    }
  }

  void cancel() override {
    if (auto a = attempt_.lock()) {
      a->cancelled = true;
      abandon(*a);
    }
  }

 private:
  static void abandon(Attempt& a) {
    if (a.disk) {
      std::lock_guard lock(a.disk->mutex);
      a.disk->abandoned = true;
      a.disk->deliver = nullptr;
    }
    a.resolver.cancel();
    a.deadline.cancel();
    boost::system::error_code ignored;
    a.socket.close(ignored);
  }

  static void complete(Attempt& a, ProbeResult r) {
    if (a.cancelled || !a.done) return;
    r.latency = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - a.started);
    abandon(a);
    deliver_once(a.done, std::move(r));
  }

  static void report(Attempt& a, ProbeStatus status, std::string message) {
    ProbeResult r;
    r.status = status;
    r.message = std::move(message);
    complete(a, std::move(r));
  }

  // -- disk -----------------------------------------------------------------

  void start_disk(const std::shared_ptr<Attempt>& a) {
    if (g_disk_workers.fetch_add(1) >= kMaxDiskWorkers) {
      g_disk_workers.fetch_sub(1);
      report(*a, ProbeStatus::unknown,
             fmt::format("disk {}: {} earlier disk checks are still blocked in statvfs (a hung "
                         "network mount?)",
                         path_, kMaxDiskWorkers));
      return;
    }
    auto job = std::make_shared<DiskJob>();
    job->executor = ex_;
    // The job holds the attempt until it delivers or is abandoned.
    job->deliver = [a, path = path_, t = thresholds_](const DiskStat& s) {
      finish_disk(*a, path, t, s);
    };
    a->disk = job;
    try {
      std::thread([job, path = path_] {
        DiskStat s;
        if (::statvfs(path.c_str(), &s.st) != 0) s.error = errno;
        {
          std::lock_guard lock(job->mutex);
          if (!job->abandoned) {
            asio::post(job->executor, [job, s] {
              std::function<void(const DiskStat&)> deliver;
              {
                std::lock_guard lock(job->mutex);
                deliver = std::move(job->deliver);
              }
              if (deliver) deliver(s);
            });
          }
          job->executor = asio::any_io_executor();
        }
        g_disk_workers.fetch_sub(1);
      }).detach();
    } catch (const std::system_error& e) {
      g_disk_workers.fetch_sub(1);
      report(*a, ProbeStatus::unknown,
             fmt::format("disk {}: no thread for statvfs: {}", path_, e.what()));
    }
  }

  static void finish_disk(Attempt& a, const std::string& path, const Thresholds& t,
                          const DiskStat& s) {
    if (s.error != 0) {
      report(a, ProbeStatus::fail,
             fmt::format("disk {}: cannot stat the file system: {}", path, std::strerror(s.error)));
      return;
    }
    const double frsize = static_cast<double>(s.st.f_frsize);
    const double total = static_cast<double>(s.st.f_blocks) * frsize;
    const double used = static_cast<double>(s.st.f_blocks - s.st.f_bfree) * frsize;
    const double avail = static_cast<double>(s.st.f_bavail) * frsize;
    if (s.st.f_blocks == 0 || used + avail <= 0) {
      report(a, ProbeStatus::unknown,
             fmt::format("disk {}: the file system reports no size (a pseudo file system?)", path));
      return;
    }
    // As df computes Use%: what users can have, the root reserve left out.
    const double used_pct = 100.0 * used / (used + avail);
    ProbeResult r;
    std::string note;
    r.status = grade(used_pct, t, note, "%");
    r.message = fmt::format("disk {} {:.1f}% used{}, {} free of {}", path, used_pct, note,
                            bytes_text(avail), bytes_text(total));
    r.metrics["used_pct"] = used_pct;
    r.metrics["free_bytes"] = avail;
    r.metrics["total_bytes"] = total;
    complete(a, std::move(r));
  }

  // -- memory and load: /proc reads do not block ------------------------------

  static void check_memory(Attempt& a, const Thresholds& t) {
    auto text = read_proc("/proc/meminfo");
    if (!text) {
      report(a, ProbeStatus::unknown,
             fmt::format("cannot read /proc/meminfo: {}", std::strerror(errno)));
      return;
    }
    auto m = procfs::parse_meminfo(*text);
    if (!m) {
      report(a, ProbeStatus::unknown, m.error().message);
      return;
    }
    const double total = static_cast<double>(m->total_bytes);
    const double available = static_cast<double>(m->available_bytes);
    const double used_pct = 100.0 * (total - available) / total;
    ProbeResult r;
    std::string note;
    r.status = grade(used_pct, t, note, "%");
    r.message = fmt::format("memory {:.1f}% used{}, {} available of {}", used_pct, note,
                            bytes_text(available), bytes_text(total));
    r.metrics["used_pct"] = used_pct;
    r.metrics["available_bytes"] = available;
    complete(a, std::move(r));
  }

  static void check_load(Attempt& a, const Thresholds& t) {
    auto text = read_proc("/proc/loadavg");
    if (!text) {
      report(a, ProbeStatus::unknown,
             fmt::format("cannot read /proc/loadavg: {}", std::strerror(errno)));
      return;
    }
    auto l = procfs::parse_loadavg(*text);
    if (!l) {
      report(a, ProbeStatus::unknown, l.error().message);
      return;
    }
    const long cpus = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
    const double per_core = l->load1 / static_cast<double>(cpus);
    ProbeResult r;
    std::string note;
    r.status = grade(per_core, t, note, "");
    r.message = fmt::format("load {:.2f} per core{} (1-minute load {:.2f} on {} CPUs)", per_core,
                            note, l->load1, cpus);
    r.metrics["load1"] = l->load1;
    r.metrics["load5"] = l->load5;
    r.metrics["load15"] = l->load15;
    r.metrics["load1_per_core"] = per_core;
    complete(a, std::move(r));
  }

  // -- clock: one SNTP exchange ------------------------------------------------

  std::string server_text() const {
    return server_.host.find(':') != std::string::npos
               ? fmt::format("[{}]:{}", server_.host, server_.port)
               : fmt::format("{}:{}", server_.host, server_.port);
  }

  void start_clock(const std::shared_ptr<Attempt>& a) {
    a->deadline.expires_at(a->started + budget_);
    a->deadline.async_wait([a, server = server_text(),
                            budget = budget_](const boost::system::error_code& ec) {
      if (ec) return;
      report(*a, ProbeStatus::fail,
             fmt::format("no reply from NTP server {} within {}", server, format_duration(budget)));
    });
    boost::system::error_code ec;
    auto address = asio::ip::make_address(server_.host, ec);
    if (!ec) {
      asio::post(ex_, [a, to = udp::endpoint(address, server_.port), server = server_text(),
                       t = thresholds_] {
        if (!a->cancelled && a->done) query(a, to, server, t);
      });
      return;
    }
    a->resolver.async_resolve(
        server_.host, std::to_string(server_.port),
        [a, server = server_text(), t = thresholds_](const boost::system::error_code& e,
                                                     const udp::resolver::results_type& results) {
          if (a->cancelled || !a->done) return;
          if (e || results.empty()) {
            report(*a, ProbeStatus::fail,
                   fmt::format("cannot resolve NTP server {}: {}", server,
                               e ? e.message() : "no addresses"));
            return;
          }
          query(a, results.begin()->endpoint(), server, t);
        });
  }

  static void query(const std::shared_ptr<Attempt>& a, const udp::endpoint& to,
                    const std::string& server, const Thresholds& t) {
    boost::system::error_code ec;
    a->socket.open(to.protocol(), ec);
    // Connected, so the kernel drops datagrams from anyone else and a closed
    // port comes back as "connection refused".
    if (!ec) a->socket.connect(to, ec);
    if (ec) {
      report(*a, ProbeStatus::fail, fmt::format("NTP server {}: {}", server, ec.message()));
      return;
    }
    a->t1 = sntp::to_unix_nanos(std::chrono::system_clock::now());
    a->sent_ts = sntp::to_ntp(a->t1);
    auto request = std::make_shared<std::array<std::uint8_t, sntp::kPacketSize>>(
        sntp::client_request(a->sent_ts));
    a->socket.async_send(asio::buffer(*request),
                         [a, request, server](const boost::system::error_code& e, std::size_t) {
                           if (a->cancelled || !a->done) return;
                           if (e)
                             report(*a, ProbeStatus::fail,
                                    fmt::format("NTP server {}: {}", server, e.message()));
                         });
    a->socket.async_receive(
        asio::buffer(a->reply), [a, server, t](const boost::system::error_code& e, std::size_t n) {
          const auto t4 = sntp::to_unix_nanos(std::chrono::system_clock::now());
          if (a->cancelled || !a->done) return;
          if (e == asio::error::connection_refused) {
            report(*a, ProbeStatus::fail,
                   fmt::format("no NTP server at {} (connection refused)", server));
            return;
          }
          if (e) {
            report(*a, ProbeStatus::fail, fmt::format("NTP server {}: {}", server, e.message()));
            return;
          }
          finish_clock(*a, server, t, std::span(a->reply.data(), n), t4);
        });
  }

  static void finish_clock(Attempt& a, const std::string& server, const Thresholds& t,
                           std::span<const std::uint8_t> bytes, sntp::UnixNanos t4) {
    auto packet = sntp::decode(bytes);
    if (!packet) {
      report(a, ProbeStatus::unknown,
             fmt::format("invalid reply from NTP server {}: {} bytes, an NTP reply has {}", server,
                         bytes.size(), sntp::kPacketSize));
      return;
    }
    auto verdict = sntp::check_reply(*packet, a.sent_ts);
    using K = sntp::Verdict::Kind;
    switch (verdict.kind) {
      case K::kiss_o_death:
        report(a, ProbeStatus::unknown,
               fmt::format("NTP server {} sent a kiss-o'-death: {}", server, verdict.message));
        return;
      case K::unsynchronized:
        report(a, ProbeStatus::unknown,
               fmt::format("NTP server {} is not synchronized ({})", server, verdict.message));
        return;
      case K::invalid:
        report(a, ProbeStatus::unknown,
               fmt::format("invalid reply from NTP server {}: {}", server, verdict.message));
        return;
      case K::usable: break;
    }
    const auto m = sntp::measure(a.t1, sntp::to_unix_nanos(packet->receive),
                                 sntp::to_unix_nanos(packet->transmit), t4);
    ProbeResult r;
    std::string note;
    r.status = grade(std::abs(m.offset_ms) / 1000.0, t, note, " s");
    r.message = fmt::format("clock offset {:+.1f} ms{} against {} (stratum {}, delay {:.1f} ms)",
                            m.offset_ms, note, server, packet->stratum, m.delay_ms);
    r.metrics["offset_ms"] = m.offset_ms;
    r.metrics["delay_ms"] = m.delay_ms;
    r.metrics["stratum"] = packet->stratum;
    complete(a, std::move(r));
  }

  Check check_;
  Thresholds thresholds_;
  std::string path_;
  HostPort server_;
  Millis budget_;
  asio::any_io_executor ex_;
  std::weak_ptr<Attempt> attempt_;
};

std::unique_ptr<Probe> create_system(const config::ProbeConfig& c, asio::any_io_executor ex) {
  return std::make_unique<SystemProbe>(c, std::move(ex));
}

}  // namespace

ProbeType system_probe_type() {
  return {{"system", kKeys, &validate}, &create_system};
}

}  // namespace storewatch::probes
