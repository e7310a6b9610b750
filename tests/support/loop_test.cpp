#include "support/loop_test.hpp"

#include <time.h>

#include <thread>

namespace fiberloop::testing {

void LoopTest::run_in_fiber(std::function<void()> body, std::chrono::milliseconds timeout) {
  loop_.run_sync(std::move(body), timeout);
}

void LoopTest::TearDown() { EXPECT_EQ(loop_.live_fibers(), 0u) << "a test left fibers suspended on its loop"; }

void signal_when_closing(IOLoop& loop, std::atomic<bool>& closing) {
  (void)loop.spawn([&closing] {
    struct OnUnwind {
      std::atomic<bool>& flag;
      ~OnUnwind() { flag = true; }
    } on_unwind{closing};
    sleep_for(std::chrono::hours(1));
  });
}

void wait_until(const std::atomic<bool>& flag) {
  while (!flag) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

double thread_cpu_ms() {
  timespec now{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) * 1e3 + static_cast<double>(now.tv_nsec) / 1e6;
}

double elapsed_ms(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

std::string what_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "non-std exception";
  }
}

}  // namespace fiberloop::testing

namespace fiberloop::testing {

TimerRhythm::TimerRhythm(IOLoop& loop, std::chrono::milliseconds period)
    : loop_(loop), period_(period), last_(std::chrono::steady_clock::now()) {
  timer_ = loop_.call_later(period_, [this] { tick(); });
}

TimerRhythm::~TimerRhythm() { loop_.remove_timeout(timer_); }

void TimerRhythm::tick() {
  const auto now = std::chrono::steady_clock::now();
  largest_ = std::max(largest_, now - last_);
  last_ = now;
  ++ticks_;
  timer_ = loop_.call_later(period_, [this] { tick(); });
}

double TimerRhythm::largest_gap_ms() const {
  const auto since_last = std::chrono::steady_clock::now() - last_;
  return std::chrono::duration<double, std::milli>(std::max(largest_, since_last)).count();
}

}  // namespace fiberloop::testing
