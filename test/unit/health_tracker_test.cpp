#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "health/tracker.hpp"

using fulcrum::health::slowStartWeight;
using fulcrum::health::Tracker;
using Verdict = Tracker::Verdict;
using std::chrono::milliseconds;

namespace {

// Feeds a script of results ('+' pass, '-' fail) and returns the state after each, as a
// string of 'U' (up) and 'D' (down).
std::string run(Tracker& tracker, std::string_view script) {
  std::string states;
  for (char c : script) {
    tracker.record(c == '+');
    states.push_back(tracker.up() ? 'U' : 'D');
  }
  return states;
}

}  // namespace

TEST_CASE("tracker: the first result decides at once", "[health]") {
  Tracker up(3, 3);
  CHECK_FALSE(up.up());
  CHECK_FALSE(up.checked());
  CHECK(up.record(true) == Verdict::WentUp);
  CHECK(up.up());

  Tracker down(3, 3);
  CHECK(down.record(false) == Verdict::Unchanged);
  CHECK_FALSE(down.up());
  CHECK(down.checked());
}

TEST_CASE("tracker: fall failures in a row take an up backend down", "[health]") {
  Tracker t(2, 3);
  CHECK(run(t, "+--+---") == "UUUUUUD");
  // A pass in between resets the count: two failures, a pass, three failures.
}

TEST_CASE("tracker: rise passes in a row bring a down backend up", "[health]") {
  Tracker t(3, 1);
  CHECK(run(t, "+-") == "UD");
  // Flapping never reaches rise = 3 passes in a row, so the backend stays down.
  CHECK(run(t, "+-+-++-++-") == "DDDDDDDDDD");
  CHECK(run(t, "+++") == "DDU");
}

TEST_CASE("tracker: verdicts fire once per transition", "[health]") {
  Tracker t(2, 2);
  std::vector<Verdict> verdicts;
  for (char c : std::string_view("+--- -++++")) {
    if (c == ' ') {
      continue;
    }
    verdicts.push_back(t.record(c == '+'));
  }
  const std::vector<Verdict> expected{Verdict::WentUp,    Verdict::Unchanged, Verdict::WentDown,
                                      Verdict::Unchanged, Verdict::Unchanged, Verdict::Unchanged,
                                      Verdict::WentUp,    Verdict::Unchanged, Verdict::Unchanged};
  CHECK(verdicts == expected);
}

TEST_CASE("tracker: changing() is true only while results disagree with the state",
          "[health]") {
  Tracker t(2, 3);
  t.record(true);
  CHECK_FALSE(t.changing());
  t.record(false);
  CHECK(t.changing());
  t.record(true);
  CHECK_FALSE(t.changing());
  t.record(false);
  t.record(false);
  t.record(false);
  CHECK_FALSE(t.up());
  CHECK_FALSE(t.changing());
  t.record(true);
  CHECK(t.changing());
}

TEST_CASE("tracker: a passive down needs rise passes to come back", "[health]") {
  Tracker t(2, 3);
  t.record(true);
  t.forceDown();
  CHECK_FALSE(t.up());
  CHECK(t.record(true) == Verdict::Unchanged);
  CHECK(t.record(true) == Verdict::WentUp);
  t.forceDown();
  t.forceUp();
  CHECK(t.up());
  // After forceUp, fall failures are needed again.
  CHECK(run(t, "--") == "UU");
  CHECK(run(t, "-") == "D");
}

TEST_CASE("slow start ramps from a tenth of the weight to all of it", "[health]") {
  const milliseconds ramp{10000};
  CHECK(slowStartWeight(100, milliseconds{0}, ramp) == 10);
  CHECK(slowStartWeight(100, milliseconds{5000}, ramp) == 55);
  CHECK(slowStartWeight(100, milliseconds{9999}, ramp) == 99);
  CHECK(slowStartWeight(100, milliseconds{10000}, ramp) == 100);
  CHECK(slowStartWeight(100, milliseconds{60000}, ramp) == 100);
  // Never zero while ramping, never above the weight; 0 and no ramp are passed through.
  CHECK(slowStartWeight(1, milliseconds{0}, ramp) == 1);
  CHECK(slowStartWeight(5, milliseconds{0}, ramp) == 1);
  CHECK(slowStartWeight(0, milliseconds{0}, ramp) == 0);
  CHECK(slowStartWeight(100, milliseconds{0}, milliseconds{0}) == 100);

  // Monotonic over the ramp.
  uint32_t last = 0;
  for (int t = 0; t <= 10000; t += 250) {
    const uint32_t w = slowStartWeight(1000, milliseconds{t}, ramp);
    CHECK(w >= last);
    last = w;
  }
  CHECK(last == 1000);
}
