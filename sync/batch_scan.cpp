#include "sync/batch_scan.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "config/config.h"

namespace storewatch::wire {
namespace {

// Deeper than this, the full parser decides (the scan recurses).
constexpr int kMaxDepth = 64;

// A double holds up to about 1.8e308: a number with at most this many
// digits before its point, after its exponent is applied, is finite.
constexpr int kSafeMagnitude = 300;

// What one event of the batch holds, as spans of the payload.
struct Found {
  std::string_view text, state_text;
  std::int64_t seq = 0;
  std::string_view uid, incident, type, at, actor;
  std::optional<std::string_view> state, probe, severity, t_detect;
  bool has_uid = false;
};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A run of digits that is a positive integer below 10^18, or nullopt.
std::optional<std::int64_t> small_positive(std::string_view digits) {
  if (digits.empty() || digits.size() > 18 || digits.front() == '0') return std::nullopt;
  std::int64_t n = 0;
  for (const char c : digits) {
    if (!is_digit(c)) return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return n;
}

class Scanner {
 public:
  explicit Scanner(std::string_view s) : p_(s.data()), end_(s.data() + s.size()) {}

  std::optional<Batch> batch() {
    std::string_view store;
    bool have_v = false, have_store = false, have_events = false;
    if (!take('{')) return std::nullopt;
    if (!take('}')) {
      for (;;) {
        std::string_view name;
        if (!plain_key(name)) return std::nullopt;
        if (name == "v") {
          std::string_view text;
          bool integer = false;
          if (have_v || !number(text, integer) || !integer) return std::nullopt;
          if (small_positive(text) != std::int64_t{kVersion}) return std::nullopt;
          have_v = true;
        } else if (name == "store") {
          if (have_store || !plain_string(store)) return std::nullopt;
          have_store = true;
        } else if (name == "events") {
          if (have_events || !events()) return std::nullopt;
          have_events = true;
        } else if (!value(1)) {
          return std::nullopt;
        }
        if (next_member('}')) continue;
        if (!ended_) return std::nullopt;
        break;
      }
    }
    ws();
    if (p_ != end_) return std::nullopt;
    if (!have_v || !have_store || !have_events) return std::nullopt;
    if (!config::is_valid_store_id(store)) return std::nullopt;

    Batch b;
    b.store = std::string(store);
    b.events.reserve(found_.size());
    for (const Found& f : found_) {
      Event& e = b.events.emplace_back();
      e.body = nlohmann::json();
      e.seq = f.seq;
      e.uid = f.uid;
      e.incident = f.incident;
      e.type = f.type;
      e.at = f.at;
      e.actor = f.actor;
      e.sent_text = f.text;
      e.sent_state_text = f.state_text;
      e.sent_state = Event::StateFields{};
      Event::StateFields& s = *e.sent_state;
      if (f.state) s.state = std::string(*f.state);
      if (f.probe) s.probe = std::string(*f.probe);
      if (f.severity) s.severity = std::string(*f.severity);
      if (f.t_detect) s.t_detect = std::string(*f.t_detect);
      s.has_uid = f.has_uid;
    }
    return b;
  }

 private:
  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  // Past whitespace and `c` when `c` comes next (a container's opening, or
  // the closing of an empty one right after it); false otherwise.
  bool take(char c) {
    ws();
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }

  // After a member or element: true at a comma (another follows); false
  // otherwise, with ended_ set when the container was closed by `c`.
  bool next_member(char c) {
    ws();
    ended_ = false;
    if (p_ == end_) return false;
    if (*p_ == ',') {
      ++p_;
      return true;
    }
    if (*p_ == c) {
      ++p_;
      ended_ = true;
    }
    return false;
  }

  // A member's key and its colon; `escaped` when the key holds an escape.
  bool key(std::string_view& text, bool& escaped) {
    ws();
    if (p_ == end_ || *p_ != '"' || !string(text, escaped)) return false;
    ws();
    if (p_ == end_ || *p_ != ':') return false;
    ++p_;
    ws();
    return true;
  }

  // A key without an escape (one with an escape could mean a name the scan
  // compares wrongly).
  bool plain_key(std::string_view& text) {
    bool escaped = false;
    return key(text, escaped) && !escaped;
  }

  // A string value without an escape, its text between the quotes.
  bool plain_string(std::string_view& text) {
    bool escaped = false;
    return p_ != end_ && *p_ == '"' && string(text, escaped) && !escaped;
  }

  // At the opening quote: past the closing one, `raw` the text between.
  bool string(std::string_view& raw, bool& escaped) {
    const char* start = ++p_;
    for (;;) {
      // Eight bytes at a time while none is a quote, a backslash, a control
      // character or a byte of a multi-byte UTF-8 sequence.
      constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
      constexpr std::uint64_t kHighs = 0x8080808080808080ULL;
      while (end_ - p_ >= 8) {
        std::uint64_t w = 0;
        std::memcpy(&w, p_, 8);
        const std::uint64_t quote = w ^ (kOnes * '"');
        const std::uint64_t backslash = w ^ (kOnes * '\\');
        const std::uint64_t special = (w & kHighs) | ((quote - kOnes) & ~quote & kHighs) |
                                      ((backslash - kOnes) & ~backslash & kHighs) |
                                      ((w - kOnes * 0x20) & ~w & kHighs);
        if (special != 0) break;
        p_ += 8;
      }
      if (p_ == end_) return false;
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        raw = std::string_view(start, static_cast<std::size_t>(p_ - start));
        ++p_;
        return true;
      }
      if (c == '\\') {
        escaped = true;
        if (!escape()) return false;
      } else if (c < 0x20) {
        return false;
      } else if (c < 0x80) {
        ++p_;
      } else if (!utf8()) {
        return false;
      }
    }
  }

  // At a backslash: past the escape. A \u escape of a surrogate (half of a
  // pair, or alone and invalid) is left to the full parser.
  bool escape() {
    if (end_ - p_ < 2) return false;
    const char c = p_[1];
    p_ += 2;
    switch (c) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't': return true;
      case 'u': {
        if (end_ - p_ < 4) return false;
        int code = 0;
        for (int k = 0; k < 4; ++k) {
          const int h = hex_value(p_[k]);
          if (h < 0) return false;
          code = code * 16 + h;
        }
        p_ += 4;
        return code < 0xD800 || code > 0xDFFF;
      }
      default: return false;
    }
  }

  // At a byte above 0x7F: past one well-formed UTF-8 sequence (RFC 3629:
  // no overlong form, no surrogate, nothing above U+10FFFF).
  bool utf8() {
    const auto byte = [&](std::ptrdiff_t k) { return static_cast<unsigned char>(p_[k]); };
    const auto cont = [&](std::ptrdiff_t k, unsigned lo, unsigned hi) {
      return p_ + k < end_ && byte(k) >= lo && byte(k) <= hi;
    };
    const unsigned c = byte(0);
    int n = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = cont(1, 0x80, 0xBF) ? 2 : 0;
    } else if (c == 0xE0) {
      n = cont(1, 0xA0, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      n = cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
    } else if (c == 0xED) {
      n = cont(1, 0x80, 0x9F) && cont(2, 0x80, 0xBF) ? 3 : 0;
    } else if (c == 0xF0) {
      n = cont(1, 0x90, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    } else if (c >= 0xF1 && c <= 0xF3) {
      n = cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    } else if (c == 0xF4) {
      n = cont(1, 0x80, 0x8F) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    }
    p_ += n;
    return n > 0;
  }

  // A number as RFC 8259 writes it; `integer` when it has neither a
  // fraction nor an exponent. One that may not fit a double (the full
  // parser refuses it) is left to the full parser.
  bool number(std::string_view& text, bool& integer) {
    const char* start = p_;
    if (p_ != end_ && *p_ == '-') ++p_;
    if (p_ == end_ || !is_digit(*p_)) return false;
    const char* digits = p_;
    if (*p_ == '0') {
      ++p_;
    } else {
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    const auto int_digits = static_cast<int>(std::min<std::ptrdiff_t>(p_ - digits, 100'000));
    integer = true;
    if (p_ != end_ && *p_ == '.') {
      integer = false;
      ++p_;
      if (p_ == end_ || !is_digit(*p_)) return false;
      while (p_ != end_ && is_digit(*p_)) ++p_;
    }
    int magnitude = int_digits;
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      integer = false;
      ++p_;
      bool negative = false;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) negative = *p_++ == '-';
      if (p_ == end_ || !is_digit(*p_)) return false;
      int exponent = 0;
      while (p_ != end_ && is_digit(*p_)) {
        exponent = std::min(exponent * 10 + (*p_ - '0'), 100'000);
        ++p_;
      }
      // A negative exponent makes the number smaller (at worst 0: finite).
      if (!negative) magnitude += exponent;
    }
    if (magnitude > kSafeMagnitude) return false;
    text = std::string_view(start, static_cast<std::size_t>(p_ - start));
    return true;
  }

  bool literal(std::string_view word) {
    if (static_cast<std::size_t>(end_ - p_) < word.size() ||
        std::memcmp(p_, word.data(), word.size()) != 0) {
      return false;
    }
    p_ += word.size();
    return true;
  }

  // Any value, at nesting `depth`.
  bool value(int depth) {
    ws();
    if (p_ == end_) return false;
    switch (*p_) {
      case '"': {
        std::string_view raw;
        bool escaped = false;
        return string(raw, escaped);
      }
      case '{': {
        if (depth >= kMaxDepth) return false;
        ++p_;
        if (take('}')) return true;
        for (;;) {
          std::string_view name;
          bool escaped = false;
          if (!key(name, escaped) || !value(depth + 1)) return false;
          if (next_member('}')) continue;
          return ended_;
        }
      }
      case '[': {
        if (depth >= kMaxDepth) return false;
        ++p_;
        if (take(']')) return true;
        for (;;) {
          if (!value(depth + 1)) return false;
          if (next_member(']')) continue;
          return ended_;
        }
      }
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default: {
        std::string_view text;
        bool integer = false;
        return number(text, integer);
      }
    }
  }

  // The batch's "events": an array of event objects.
  bool events() {
    if (p_ == end_ || *p_ != '[') return false;
    ++p_;
    if (take(']')) return true;
    for (;;) {
      ws();
      if (!event()) return false;
      if (next_member(']')) continue;
      return ended_;
    }
  }

  bool event() {
    if (p_ == end_ || *p_ != '{') return false;
    const char* start = p_++;
    Found f;
    bool have_seq = false, have_state = false;
    if (take('}')) return false;  // an event without fields
    for (;;) {
      std::string_view name;
      if (!plain_key(name)) return false;
      std::string_view* header = nullptr;
      if (name == "seq") {
        std::string_view text;
        bool integer = false;
        if (have_seq || !number(text, integer) || !integer) return false;
        const auto seq = small_positive(text);
        if (!seq) return false;
        f.seq = *seq;
        have_seq = true;
      } else if (name == "uid") {
        header = &f.uid;
      } else if (name == "incident") {
        header = &f.incident;
      } else if (name == "type") {
        header = &f.type;
      } else if (name == "at") {
        header = &f.at;
      } else if (name == "actor") {
        header = &f.actor;
      } else if (name == "incident_state") {
        if (have_state || !state(f)) return false;
        have_state = true;
      } else if (!value(3)) {
        return false;
      }
      // A header field: a string without an escape, not empty, once.
      if (header != nullptr && (!header->empty() || !plain_string(*header) || header->empty())) {
        return false;
      }
      if (next_member('}')) continue;
      if (!ended_) return false;
      break;
    }
    if (!have_seq || !have_state || f.uid.empty() || f.incident.empty() || f.type.empty() ||
        f.at.empty() || f.actor.empty()) {
      return false;
    }
    f.text = std::string_view(start, static_cast<std::size_t>(p_ - start));
    found_.push_back(f);
    return true;
  }

  // An event's "incident_state" object, and the fields HQ keeps of it.
  bool state(Found& f) {
    if (p_ == end_ || *p_ != '{') return false;
    const char* start = p_++;
    unsigned seen = 0;  // a bit per field HQ keeps: named once at most
    if (!take('}')) {
      for (;;) {
        std::string_view name;
        if (!plain_key(name)) return false;
        std::optional<std::string_view>* field = nullptr;
        unsigned bit = 0;
        if (name == "state") {
          field = &f.state, bit = 1;
        } else if (name == "probe") {
          field = &f.probe, bit = 2;
        } else if (name == "severity") {
          field = &f.severity, bit = 4;
        } else if (name == "t_detect") {
          field = &f.t_detect, bit = 8;
        } else if (name == "uid") {
          if (f.has_uid) return false;
          f.has_uid = true;
        }
        if (field != nullptr) {
          // Kept only when a string (without an escape).
          if ((seen & bit) != 0) return false;
          seen |= bit;
          if (p_ != end_ && *p_ == '"') {
            std::string_view text;
            if (!plain_string(text)) return false;
            *field = text;
          } else if (!value(4)) {
            return false;
          }
        } else if (!value(4)) {
          return false;
        }
        if (next_member('}')) continue;
        if (!ended_) return false;
        break;
      }
    }
    f.state_text = std::string_view(start, static_cast<std::size_t>(p_ - start));
    return true;
  }

  const char* p_;
  const char* end_;
  bool ended_ = false;
  std::vector<Found> found_;
};

}  // namespace

std::optional<Batch> scan_batch(std::string_view payload) {
  return Scanner(payload).batch();
}

}  // namespace storewatch::wire
