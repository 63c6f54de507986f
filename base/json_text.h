#pragma once
/// \file
/// JSON written straight into a string, for the few hot paths that would
/// otherwise build an nlohmann tree only to dump it at once (the store
/// writer's event snapshots, tens of thousands a second). Elsewhere, use
/// nlohmann::json.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace storewatch::json_text {

/// Appends `s` as a JSON string literal: quotes, backslashes and control
/// characters escaped as nlohmann::json does; bytes that are not valid UTF-8
/// become U+FFFD (nlohmann::json::dump would throw on them).
void append_string(std::string& out, std::string_view s);

/// Appends `"key":` (the key is trusted: a literal without escapes).
inline void append_key(std::string& out, std::string_view key) {
  out += '"';
  out += key;
  out += "\":";
}

/// Builds one JSON object, member by member.
class Object {
 public:
  explicit Object(std::string& out) : out_(out) { out_ += '{'; }
  Object(const Object&) = delete;
  Object& operator=(const Object&) = delete;

  Object& string(std::string_view key, std::string_view value) {
    next(key);
    append_string(out_, value);
    return *this;
  }
  Object& string_or_null(std::string_view key, const std::optional<std::string>& value) {
    next(key);
    if (value) {
      append_string(out_, *value);
    } else {
      out_ += "null";
    }
    return *this;
  }
  Object& boolean(std::string_view key, bool value) {
    next(key);
    out_ += value ? "true" : "false";
    return *this;
  }
  Object& integer(std::string_view key, std::int64_t value) {
    next(key);
    out_ += std::to_string(value);
    return *this;
  }
  /// `value` is already JSON text.
  Object& raw(std::string_view key, std::string_view value) {
    next(key);
    out_ += value;
    return *this;
  }
  void close() { out_ += '}'; }

 private:
  void next(std::string_view key) {
    if (!first_) out_ += ',';
    first_ = false;
    append_key(out_, key);
  }

  std::string& out_;
  bool first_ = true;
};

}  // namespace storewatch::json_text
