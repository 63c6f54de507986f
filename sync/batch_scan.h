#pragma once
/// \file
/// HQ's fast path for an event batch it stores as it came
/// (wire::decode_batch_for_store): one pass over the payload that checks it
/// is JSON as strictly as nlohmann's parser does (RFC 8259; UTF-8 as RFC
/// 3629; no number that overflows a double) and takes out what HQ keeps,
/// without a JSON tree, a token string per value or a second scan for the
/// events' texts. A draining HQ worker spent a third of its CPU on those.
///
/// It only ever says yes. A payload that is not of the plain shape a
/// storewatch agent sends — not JSON, a field missing or of the wrong type,
/// an escape in a key or in a field HQ keeps, a member named twice, a \u
/// escape of a surrogate, a number with an exponent it cannot vouch for,
/// nesting deeper than 64 — gives nullopt, and the caller decodes it with
/// nlohmann's parser, which gives the verdict and the error.
/// tests/fuzz/fuzz_wire checks that both give the same on every input.

#include <optional>
#include <string_view>

#include "sync/wire.h"

namespace storewatch::wire {

/// The batch, with each event's seq, header fields, sent_text,
/// sent_state_text and sent_state set and `body` empty (as
/// decode_batch_for_store() gives it); nullopt when the payload needs the
/// full parser. The caller has checked the size cap and that it holds no
/// NUL byte.
std::optional<Batch> scan_batch(std::string_view payload);

}  // namespace storewatch::wire
