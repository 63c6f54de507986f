#include "agent/check_state.h"

namespace storewatch::agent {

std::string_view to_string(CheckLevel level) {
  switch (level) {
    case CheckLevel::unknown: return "unknown";
    case CheckLevel::ok: return "ok";
    case CheckLevel::soft_fail: return "soft_fail";
    case CheckLevel::hard_fail: return "hard_fail";
  }
  return "unknown";
}

std::optional<CheckLevel> parse_check_level(std::string_view s) {
  for (auto l :
       {CheckLevel::unknown, CheckLevel::ok, CheckLevel::soft_fail, CheckLevel::hard_fail}) {
    if (to_string(l) == s) return l;
  }
  return std::nullopt;
}

CheckState::Transition CheckState::apply(bool failed, WallTime at, int fail_after,
                                         int recover_after) {
  if (failed) {
    successes_ = 0;
    t_first_ok_.reset();
    if (level_ == CheckLevel::hard_fail) {
      ++failures_;
      return Transition::none;
    }
    if (failures_ == 0) t_fault_ = at;
    ++failures_;
    if (failures_ >= fail_after) {
      level_ = CheckLevel::hard_fail;
      return Transition::hard_failed;
    }
    level_ = CheckLevel::soft_fail;
    return Transition::none;
  }

  if (level_ == CheckLevel::hard_fail) {
    if (successes_ == 0) t_first_ok_ = at;
    ++successes_;
    if (successes_ >= recover_after) {
      level_ = CheckLevel::ok;
      failures_ = 0;
      t_fault_.reset();
      return Transition::recovered;
    }
    return Transition::none;
  }
  // A soft failure that recovers before fail_after never was an incident.
  level_ = CheckLevel::ok;
  failures_ = 0;
  ++successes_;
  t_fault_.reset();
  t_first_ok_.reset();
  return Transition::none;
}

void CheckState::assume_hard_fail(std::optional<WallTime> t_fault) {
  if (level_ == CheckLevel::hard_fail) return;
  level_ = CheckLevel::hard_fail;
  failures_ = failures_ > 0 ? failures_ : 1;
  successes_ = 0;
  t_first_ok_.reset();
  if (t_fault) t_fault_ = t_fault;
}

}  // namespace storewatch::agent
