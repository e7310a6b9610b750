// detail/clock_math.hpp: deadline arithmetic that saturates instead of overflowing.

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>

#include <fiberloop/detail/clock_math.hpp>

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;
using time_point = std::chrono::steady_clock::time_point;
using detail::saturating_add;
using detail::saturating_nanoseconds;

TEST(ClockMathTest, InRangeDurationsConvertExactly) {
  EXPECT_EQ(saturating_nanoseconds(5ms), 5'000'000ns);
  EXPECT_EQ(saturating_nanoseconds(-3h), nanoseconds(-3LL * 3600 * 1'000'000'000));
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<int, std::milli>(-7)), -7ms);
  EXPECT_EQ(saturating_nanoseconds(nanoseconds::max()), nanoseconds::max());
  EXPECT_EQ(saturating_nanoseconds(nanoseconds::min()), nanoseconds::min());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<long long, std::pico>(2500)), 2ns);
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<unsigned, std::micro>(4)), 4us);
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<double>(0.5)), 500ms);
  static_assert(saturating_nanoseconds(1s) == 1'000'000'000ns);
}

TEST(ClockMathTest, OutOfRangeDurationsSaturate) {
  EXPECT_EQ(saturating_nanoseconds(std::chrono::hours::max()), nanoseconds::max());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::hours::min()), nanoseconds::min());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::seconds::max()), nanoseconds::max());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::seconds::min()), nanoseconds::min());
  // Just past the edge for a multiplier: 9 223 372 037 s is more than nanoseconds hold.
  EXPECT_EQ(saturating_nanoseconds(std::chrono::seconds(9'223'372'037)), nanoseconds::max());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::seconds(9'223'372'036)), nanoseconds(9'223'372'036'000'000'000));
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<double>(1e300)), nanoseconds::max());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<double>(-1e300)), nanoseconds::min());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<double>(std::numeric_limits<double>::infinity())),
            nanoseconds::max());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<double>(std::nan(""))), nanoseconds::zero());
  EXPECT_EQ(saturating_nanoseconds(std::chrono::duration<unsigned long long>(~0ULL)), nanoseconds::max());
}

TEST(ClockMathTest, DeadlinesSaturateAtTheEndsOfTheClock) {
  const time_point now = std::chrono::steady_clock::now();
  EXPECT_EQ(saturating_add(now, nanoseconds::max()), time_point::max());
  EXPECT_EQ(saturating_add(now, std::chrono::hours::max()), time_point::max());
  EXPECT_EQ(saturating_add(time_point(-1h), nanoseconds::min()), time_point::min());
  EXPECT_EQ(saturating_add(now, nanoseconds::min()), now + nanoseconds::min());  // representable: exact
  EXPECT_EQ(saturating_add(now, 1s), now + 1s);
  EXPECT_EQ(saturating_add(time_point::max(), -1ns), time_point::max() - 1ns);
  EXPECT_GE(detail::deadline_after(std::chrono::duration<double>(1e300)), time_point::max());
  EXPECT_LE(detail::deadline_after(-1h), std::chrono::steady_clock::now());
}

// What is left of a deadline: never negative, and no overflow for the deadline a
// hugely negative timeout saturates to (time_point::min() - now overflows).
TEST(ClockMathTest, TimeLeftIsZeroOncePastEvenForTheEarliestDeadline) {
  const time_point now = std::chrono::steady_clock::now();
  EXPECT_EQ(detail::time_left(now + 5s, now), nanoseconds(5s));
  EXPECT_EQ(detail::time_left(now - 5s, now), nanoseconds::zero());
  EXPECT_EQ(detail::time_left(time_point::min(), now), nanoseconds::zero());
  EXPECT_EQ(detail::time_left(time_point::max(), now), time_point::max() - now);
  EXPECT_EQ(detail::time_left(detail::deadline_after(nanoseconds::min())), nanoseconds::zero());
}

}  // namespace
}  // namespace fiberloop
