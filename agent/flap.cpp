#include "agent/flap.h"

namespace storewatch::agent {

namespace {
constexpr std::uint32_t kMask = (1u << FlapHistory::kStates) - 1;
constexpr int kChanges = FlapHistory::kStates - 1;
constexpr double kFirstWeight = 0.75;
constexpr double kLastWeight = 1.25;
}  // namespace

void FlapHistory::push(bool failed) {
  bits_ = ((bits_ << 1) | (failed ? 1u : 0u)) & kMask;
  if (size_ < kStates) ++size_;
}

double FlapHistory::percent() const {
  // Change i sits between result i and result i+1 counted from the newest;
  // change 0 is the newest and weighs kLastWeight.
  double changed = 0;
  for (int i = 0; i + 1 < size_; ++i) {
    const bool a = ((bits_ >> i) & 1u) != 0;
    const bool b = ((bits_ >> (i + 1)) & 1u) != 0;
    if (a == b) continue;
    changed += kLastWeight - (kLastWeight - kFirstWeight) * i / (kChanges - 1);
  }
  return changed / kChanges * 100.0;
}

std::string FlapHistory::to_string() const {
  std::string out;
  out.reserve(static_cast<std::size_t>(size_));
  for (int i = size_ - 1; i >= 0; --i) out.push_back(((bits_ >> i) & 1u) != 0 ? '1' : '0');
  return out;
}

FlapHistory FlapHistory::parse(std::string_view text) {
  FlapHistory h;
  if (text.size() > static_cast<std::size_t>(kStates)) return h;
  for (char c : text) {
    if (c != '0' && c != '1') return FlapHistory{};
    h.push(c == '1');
  }
  return h;
}

}  // namespace storewatch::agent
