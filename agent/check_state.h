#pragma once
/// \file
/// Check level per probe (DESIGN §4): ok → soft_fail(n) → hard_fail after
/// `fail_after` consecutive failures; back to ok after `recover_after`
/// consecutive successes. Pure logic: time comes in with each result.

#include <optional>
#include <string_view>

#include "base/clock.h"

namespace storewatch::agent {

enum class CheckLevel { unknown, ok, soft_fail, hard_fail };

std::string_view to_string(CheckLevel level);
std::optional<CheckLevel> parse_check_level(std::string_view s);

class CheckState {
 public:
  enum class Transition {
    none,
    hard_failed,  ///< reached fail_after: an incident opens
    recovered,    ///< reached recover_after from hard_fail: the incident resolves
  };

  CheckState() = default;
  CheckState(CheckLevel level, int failures, int successes, std::optional<WallTime> t_fault,
             std::optional<WallTime> t_first_ok)
      : level_(level),
        failures_(failures),
        successes_(successes),
        t_fault_(t_fault),
        t_first_ok_(t_first_ok) {}

  /// Feeds one result.
  Transition apply(bool failed, WallTime at, int fail_after, int recover_after);

  CheckLevel level() const { return level_; }
  int failures() const { return failures_; }    ///< consecutive failures
  int successes() const { return successes_; }  ///< consecutive successes
  /// The first failing result of the current fault.
  std::optional<WallTime> t_fault() const { return t_fault_; }
  /// The first good result of the current recovery streak.
  std::optional<WallTime> t_first_ok() const { return t_first_ok_; }

  /// Forces hard_fail (an unresolved incident outlived a restart).
  void assume_hard_fail(std::optional<WallTime> t_fault);

 private:
  CheckLevel level_ = CheckLevel::unknown;
  int failures_ = 0;
  int successes_ = 0;
  std::optional<WallTime> t_fault_;
  std::optional<WallTime> t_first_ok_;
};

}  // namespace storewatch::agent
