#pragma once
// Test support: a fixture whose body runs inside a fiber of a fresh loop (like
// Seastar's SEASTAR_THREAD_TEST_CASE), and a teardown that asserts the loop left
// no fiber behind.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <string>
#include <utility>

#include <fiberloop/fiberloop.hpp>

namespace fiberloop::testing {

class LoopTest : public ::testing::Test {
 protected:
  /// Runs `body` on a fiber of loop_ with a default timeout, so a hung test fails
  /// instead of hanging.
  void run_in_fiber(std::function<void()> body, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  void TearDown() override;

  IOLoop loop_;
};

/// Spawns a fiber on `loop` that sleeps until the loop is destroyed and sets `closing`
/// when ~IOLoop unwinds it: lets another thread wait for the loop's destruction to
/// begin without guessing times.
void signal_when_closing(IOLoop& loop, std::atomic<bool>& closing);

/// Blocks the calling thread until `flag` is true.
void wait_until(const std::atomic<bool>& flag);

/// CPU time the calling thread has used, in milliseconds.
double thread_cpu_ms();

/// Milliseconds since `start`.
double elapsed_ms(std::chrono::steady_clock::time_point start);

/// The message of an exception (what()), or "non-std exception".
std::string what_of(const std::exception_ptr& error);

/// The message of the exception `future` fails with; a test failure when it succeeds
/// or fails with another type than `Expected`.
template <class Expected, class T>
std::string failure_of(Future<T> future) {
  try {
    wait_for_future(std::move(future));
    ADD_FAILURE() << "succeeded; expected a failure";
  } catch (const Expected& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "failed with another type: " << e.what();
  }
  return {};
}

}  // namespace fiberloop::testing

namespace fiberloop::testing {

/// Ticks on `loop` every `period` while it lives (Thread: the loop's): a loop that
/// something blocks shows as a long gap between two ticks.
class TimerRhythm {
 public:
  TimerRhythm(IOLoop& loop, std::chrono::milliseconds period);
  ~TimerRhythm();
  TimerRhythm(const TimerRhythm&) = delete;
  TimerRhythm& operator=(const TimerRhythm&) = delete;

  /// The longest time between two ticks (or since the start), in milliseconds.
  double largest_gap_ms() const;
  std::size_t ticks() const noexcept { return ticks_; }

 private:
  void tick();
  IOLoop& loop_;
  std::chrono::milliseconds period_;
  std::chrono::steady_clock::time_point last_;
  std::chrono::steady_clock::duration largest_{};
  std::size_t ticks_ = 0;
  TimeoutHandle timer_;
};

}  // namespace fiberloop::testing
