// The load generator's latency histogram (bench/loadgen/histogram.hpp): buckets no wider
// than 1/32 of their values, quantiles by rank, merging, and the overflow bucket. The bench
// reports p50/p99/p99.9 from it, so a wrong bucket would misreport every run.

#include <catch2/catch.hpp>

#include <cstdint>

// A bench header, not part of fulcrum_core; it depends on the standard library only.
#include "../../bench/loadgen/histogram.hpp"

using fulcrum::bench::Histogram;

TEST_CASE("histogram is exact below 64 ns and within 1/32 above") {
  for (uint64_t v : {0ull, 1ull, 17ull, 63ull}) {
    Histogram h;
    h.record(v);
    CHECK(h.quantile(0.5) == v);
  }
  for (uint64_t v = 64; v < 50'000'000'000ull; v = v * 3 + 7) {
    Histogram h;
    h.record(v);
    const auto got = static_cast<double>(h.quantile(0.5));
    const auto want = static_cast<double>(v);
    INFO("value " << v << " reported as " << got);
    CHECK(got >= want * (1.0 - 1.0 / 32));
    CHECK(got <= want * (1.0 + 1.0 / 32));
  }
}

TEST_CASE("histogram quantiles follow ranks") {
  Histogram h;
  // 1..1000 microseconds, one sample each.
  for (uint64_t us = 1; us <= 1000; ++us) {
    h.record(us * 1000);
  }
  CHECK(h.total() == 1000);
  CHECK(h.quantile(0.50) == Approx(500'000).epsilon(1.0 / 32));
  CHECK(h.quantile(0.99) == Approx(990'000).epsilon(1.0 / 32));
  CHECK(h.quantile(0.999) == Approx(999'000).epsilon(1.0 / 32));
  CHECK(h.quantile(1.0) == Approx(1'000'000).epsilon(1.0 / 32));
  CHECK(h.quantile(0.0) == Approx(1'000).epsilon(1.0 / 32));
}

TEST_CASE("histogram merge adds counts; empty and overflow behave") {
  Histogram empty;
  CHECK(empty.quantile(0.99) == 0);

  Histogram a;
  Histogram b;
  for (int i = 0; i < 99; ++i) {
    a.record(1'000);
  }
  b.record(10'000'000);
  a.merge(b);
  CHECK(a.total() == 100);
  CHECK(a.quantile(0.99) == Approx(1'000).epsilon(1.0 / 32));
  CHECK(a.quantile(1.0) == Approx(10'000'000).epsilon(1.0 / 32));

  // Beyond the last bucket (about 18 minutes) values are clamped, not lost.
  Histogram big;
  big.record(UINT64_MAX);
  CHECK(big.total() == 1);
  CHECK(big.quantile(1.0) > 1'000'000'000'000ull);
}
