#include "probes/run_once.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <memory>
#include <optional>

#include "probes/registry.h"

namespace storewatch::probes {
namespace {

using std::chrono::steady_clock;

std::chrono::microseconds since(steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now() - t);
}

/// One check in flight: the probe, its deadline, and where its result goes.
struct Check {
  const config::ProbeConfig* config = nullptr;
  std::unique_ptr<Probe> probe;
  std::unique_ptr<boost::asio::steady_timer> deadline;
  steady_clock::time_point started;
  std::optional<ProbeResult> result;
};

}  // namespace

ProbeResult timed_out(Millis timeout, std::chrono::microseconds latency) {
  ProbeResult r;
  r.status = ProbeStatus::fail;
  r.no_answer = true;
  r.latency = latency;
  r.message = fmt::format("timed out after {}", format_duration(timeout));
  return r;
}

std::vector<ProbeResult> run_many(
    const std::vector<const config::ProbeConfig*>& configs, int max_concurrent,
    const std::function<void(std::size_t, const ProbeResult&)>& on_result) {
  boost::asio::io_context io;
  std::vector<Check> checks(configs.size());
  std::size_t next = 0;
  std::size_t finished = 0;
  int running = 0;
  const int cap = std::max(1, max_concurrent);

  std::function<void()> start_more;
  auto complete = [&](Check& c, ProbeResult r) {
    if (c.result) return;
    c.result = std::move(r);
    c.deadline->cancel();
    --running;
    ++finished;
    if (on_result) on_result(static_cast<std::size_t>(&c - checks.data()), *c.result);
    start_more();
  };
  start_more = [&] {
    while (running < cap && next < checks.size()) {
      Check& c = checks[next];
      c.config = configs[next];
      ++next;
      ++running;
      c.started = steady_clock::now();
      c.probe = create(*c.config, io.get_executor());
      c.deadline = std::make_unique<boost::asio::steady_timer>(io, c.config->timeout);
      c.deadline->async_wait([&c, &complete](const boost::system::error_code& ec) {
        if (ec || c.result) return;
        c.probe->cancel();
        complete(c, timed_out(c.config->timeout, since(c.started)));
      });
      c.probe->start([&c, &complete](ProbeResult r) { complete(c, std::move(r)); });
    }
  };
  start_more();
  // Runs until every result is in; then lets the handlers the probes left
  // behind (a cancelled read, a reaped child) complete.
  while (finished < checks.size() && io.run_one() > 0) {
  }
  for (Check& c : checks) c.probe.reset();
  io.poll();

  std::vector<ProbeResult> out;
  out.reserve(checks.size());
  for (Check& c : checks) {
    if (c.result) {
      out.push_back(std::move(*c.result));
    } else {
      ProbeResult r;
      r.message = "the probe finished without a result";
      out.push_back(std::move(r));
    }
  }
  return out;
}

ProbeResult run_once(const config::ProbeConfig& config) {
  return run_many({&config}, 1).front();
}

}  // namespace storewatch::probes
