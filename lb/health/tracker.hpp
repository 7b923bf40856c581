#pragma once

// The rise/fall state machine of one backend's health, and the slow-start ramp. Pure logic
// with no clock or I/O of its own, so unit tests drive it with scripted results.

#include <chrono>
#include <cstdint>

namespace fulcrum::health {

class Tracker {
 public:
  enum class Verdict { Unchanged, WentUp, WentDown };

  // A tracker starts down and unchecked: its first result decides at once (a pass brings it
  // up without waiting for rise passes), so a healthy backend takes traffic from the first
  // probe and an unhealthy one never does. After that, rise passes in a row bring a down
  // backend up and fall failures in a row take an up backend down.
  Tracker(uint32_t rise, uint32_t fall) : rise_(rise), fall_(fall) {}

  Verdict record(bool ok);

  // Passive detection or an operator decided the backend is down; the next pass counts as
  // the first of rise.
  void forceDown();
  // A cooldown (no active check) or an operator decided the backend is up.
  void forceUp();

  bool up() const { return up_; }
  bool checked() const { return checked_; }
  // A change is in progress: results against the current state have started to arrive, so
  // the checker probes at fast_interval.
  bool changing() const { return up_ ? fails_ > 0 : passes_ > 0; }
  uint32_t passes() const { return passes_; }
  uint32_t fails() const { return fails_; }

 private:
  uint32_t rise_;
  uint32_t fall_;
  bool up_ = false;
  bool checked_ = false;
  uint32_t passes_ = 0;  // In a row.
  uint32_t fails_ = 0;   // In a row.
};

// Effective weight of a backend elapsed into its slow start of length ramp: from a tenth of
// weight (at least 1) up to weight, linearly. A weight of 0 stays 0; no ramp means weight.
uint32_t slowStartWeight(uint32_t weight, std::chrono::milliseconds elapsed,
                         std::chrono::milliseconds ramp);

}  // namespace fulcrum::health
