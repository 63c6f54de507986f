#pragma once
/// \file
/// What sync needs from the agent's store; the agent implements it. Calls come
/// from the io_context thread.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "sync/wire.h"

namespace storewatch::sync {

class Outbox {
 public:
  virtual ~Outbox() = default;

  /// Committed events with seq > `after`, in seq order, at most `limit`.
  virtual Result<std::vector<wire::Event>> events_after(std::int64_t after, int limit) = 0;

  /// The highest seq written so far (0 when there are no events).
  virtual std::int64_t max_seq() = 0;

  /// The highest seq HQ has acknowledged, as last recorded.
  virtual std::int64_t hq_acked_seq() = 0;

  /// Records a higher acknowledgement durably (the write may complete later).
  virtual void record_hq_acked_seq(std::int64_t seq) = 0;

  /// The next session number; rises on every connect and survives restarts.
  virtual std::int64_t next_session() = 0;

  /// Open incidents by severity, for the birth message.
  virtual std::map<std::string, std::int64_t> open_by_severity() = 0;

  /// Events not yet acknowledged by HQ.
  virtual std::int64_t queued() = 0;
};

}  // namespace storewatch::sync
