#include "health/tracker.hpp"

#include <algorithm>

namespace fulcrum::health {

Tracker::Verdict Tracker::record(bool ok) {
  if (!checked_) {
    checked_ = true;
    passes_ = ok ? 1 : 0;
    fails_ = ok ? 0 : 1;
    if (ok) {
      up_ = true;
      return Verdict::WentUp;
    }
    return Verdict::Unchanged;  // Started down; stays down.
  }

  if (ok) {
    fails_ = 0;
    passes_ = std::min(passes_ + 1, rise_);
    if (!up_ && passes_ >= rise_) {
      up_ = true;
      return Verdict::WentUp;
    }
    return Verdict::Unchanged;
  }

  passes_ = 0;
  fails_ = std::min(fails_ + 1, fall_);
  if (up_ && fails_ >= fall_) {
    up_ = false;
    return Verdict::WentDown;
  }
  return Verdict::Unchanged;
}

void Tracker::forceDown() {
  checked_ = true;
  up_ = false;
  passes_ = 0;
  fails_ = fall_;
}

void Tracker::forceUp() {
  checked_ = true;
  up_ = true;
  passes_ = rise_;
  fails_ = 0;
}

uint32_t slowStartWeight(uint32_t weight, std::chrono::milliseconds elapsed,
                         std::chrono::milliseconds ramp) {
  if (weight == 0 || ramp.count() <= 0 || elapsed >= ramp) {
    return weight;
  }
  const uint64_t floor = std::max<uint64_t>(1, weight / 10);
  const auto done = static_cast<uint64_t>(std::max<int64_t>(0, elapsed.count()));
  const uint64_t span = weight - std::min<uint64_t>(weight, floor);
  const uint64_t w = floor + span * done / static_cast<uint64_t>(ramp.count());
  return static_cast<uint32_t>(std::clamp<uint64_t>(w, 1, weight));
}

}  // namespace fulcrum::health
