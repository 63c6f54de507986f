#include "probes/run_once.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <optional>

#include "probes/registry.h"

namespace storewatch::probes {

ProbeResult timed_out(Millis timeout, std::chrono::microseconds latency) {
  ProbeResult r;
  r.status = ProbeStatus::fail;
  r.latency = latency;
  r.message = fmt::format("timed out after {}", format_duration(timeout));
  return r;
}

ProbeResult run_once(const config::ProbeConfig& config) {
  boost::asio::io_context io;
  std::optional<ProbeResult> result;
  const auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                 started);
  };
  auto probe = create(config, io.get_executor());
  boost::asio::steady_timer deadline(io, config.timeout);
  deadline.async_wait([&](const boost::system::error_code& ec) {
    if (ec || result) return;
    probe->cancel();
    result = timed_out(config.timeout, elapsed());
  });
  probe->start([&](ProbeResult r) {
    if (result) return;
    result = std::move(r);
    deadline.cancel();
  });
  // Runs until the result is in and every handler the probe left behind
  // (a cancelled read, a reaped child) has completed.
  while (!result && io.run_one() > 0) {
  }
  probe.reset();
  io.poll();
  if (!result) {
    ProbeResult r;
    r.message = "the probe finished without a result";
    r.latency = elapsed();
    return r;
  }
  return *result;
}

}  // namespace storewatch::probes
