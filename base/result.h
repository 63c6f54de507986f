#pragma once
/// \file
/// The checked result every storewatch module returns for expected failures
/// (a device is down, the disk is full, a payload is malformed). Exceptions
/// from third-party libraries are caught where they enter and turned into one.

#include <string>
#include <utility>
#include <variant>

namespace storewatch {

/// What went wrong, in words a store technician can act on.
struct Error {
  std::string message;
  /// The library's own code where one is known (SQLite's primary result
  /// code, with an ENOSPC/EDQUOT I/O error counted as SQLITE_FULL); 0 when
  /// none. Lets a caller tell a failure a retry may fix from one it cannot.
  int code = 0;
};

/// A value or an Error; `std::expected` is not available under C++20.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  /// The value, or `fallback` when there is an error.
  T value_or(T fallback) const& { return ok() ? value() : std::move(fallback); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

/// Success or an Error, for operations with nothing to return.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error)
      : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

  static Status success() { return {}; }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace storewatch
