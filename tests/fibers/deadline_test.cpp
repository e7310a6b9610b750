// Deadline: bounds every wait of a fiber (and of the fibers and jobs it hands work
// to) in time, whatever longer timeout a wait was given; nested ones take the earliest.

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include <fiberloop/fiberloop.hpp>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::elapsed_ms;

class DeadlineTest : public testing::LoopTest {};

// Upper bounds are loose: a loaded 2-vCPU machine under a sanitizer runs late.
constexpr double kLateMs = 600;

TEST_F(DeadlineTest, CutsAWaitWithoutTimeoutAtTheDeadline) {
  run_in_fiber([&] {
    Promise<int> never;
    const auto start = Clock::now();
    Deadline deadline(100ms);
    try {
      wait_for_future(never.get_future());
      FAIL() << "the wait returned";
    } catch (const TimeoutError& e) {
      EXPECT_NE(std::string(e.what()).find("Deadline"), std::string::npos) << e.what();
    }
    EXPECT_GE(elapsed_ms(start), 95);
    EXPECT_LT(elapsed_ms(start), kLateMs);
  });
}

TEST_F(DeadlineTest, CutsALongerTimeoutButLeavesAShorterOneToTheWait) {
  run_in_fiber([&] {
    Promise<void> never;
    const Future<void> never_done = never.get_future();
    {
      Deadline deadline(100ms);
      const auto start = Clock::now();
      EXPECT_THROW(wait_for_future(never_done, 10s), TimeoutError);
      EXPECT_LT(elapsed_ms(start), kLateMs);
    }
    Deadline deadline(10s);
    try {
      wait_for_future(never_done, 10ms);  // its own timeout comes first
      FAIL() << "the wait returned";
    } catch (const TimeoutError& e) {
      EXPECT_NE(std::string(e.what()).find("timed out after"), std::string::npos) << e.what();
    }
  });
}

TEST_F(DeadlineTest, AWaitOnADoneFutureStillReturnsItsValue) {
  run_in_fiber([&] {
    Deadline deadline(0ms);
    EXPECT_EQ(wait_for_future(make_ready_future(7)), 7);
  });
}

TEST_F(DeadlineTest, NestedDeadlinesTakeTheEarliestAndEndInOrder) {
  run_in_fiber([&] {
    EXPECT_FALSE(Deadline::current());
    Deadline outer(150ms);
    {
      Deadline later(10s);  // cannot extend the outer one
      EXPECT_EQ(later.when(), outer.when());
      EXPECT_EQ(Deadline::current(), outer.when());
      const auto start = Clock::now();
      EXPECT_THROW(sleep_for(10s), TimeoutError);
      EXPECT_GE(elapsed_ms(start), 140);
      EXPECT_LT(elapsed_ms(start), kLateMs);
    }
    EXPECT_EQ(Deadline::current(), outer.when());
  });
  run_in_fiber([&] {
    Deadline outer(10s);
    {
      Deadline sooner(50ms);
      EXPECT_LT(sooner.when(), outer.when());
      Promise<void> never;
      EXPECT_THROW(wait_for_future(never.get_future()), TimeoutError);
    }
    EXPECT_EQ(Deadline::current(), outer.when());
    sleep_for(1ms);  // the outer deadline still far: no timeout
  });
}

TEST_F(DeadlineTest, SleepEndsAtTheDeadlineWithTimeoutError) {
  run_in_fiber([&] {
    const auto start = Clock::now();
    Deadline deadline(80ms);
    EXPECT_THROW(sleep_for(5s), TimeoutError);
    EXPECT_LT(elapsed_ms(start), kLateMs);
    EXPECT_THROW(sleep_for(0ms), TimeoutError);  // passed: even a zero sleep waits past it
  });
}

TEST_F(DeadlineTest, FibersSpawnedUnderADeadlineCaptureIt) {
  run_in_fiber([&] {
    Promise<void> never;
    Future<void> never_done = never.get_future();
    Future<void> child;
    {
      Deadline deadline(100ms);
      child = loop_.spawn([never_done] { wait_for_future(never_done); });
    }
    EXPECT_FALSE(Deadline::current());  // the spawner's scope ended, the child's did not
    const auto start = Clock::now();
    testing::failure_of<TimeoutError>(child);
    EXPECT_LT(elapsed_ms(start), kLateMs);
  });
}

TEST_F(DeadlineTest, CallbacksRegisteredUnderADeadlineSeeIt) {
  run_in_fiber([&] {
    Promise<bool> seen;
    {
      Deadline deadline(5s);
      loop_.add_callback([&seen] { seen.set_value(Deadline::current().has_value()); });
    }
    EXPECT_TRUE(wait_for_future(seen.get_future()));
  });
}

TEST_F(DeadlineTest, ARunningBlockingJobIsWaitedOutThenTimesOut) {
  run_in_fiber([&] {
    std::atomic<bool> finished{false};
    const auto start = Clock::now();
    Deadline deadline(50ms);
    // The job may use this fiber's stack: the fiber cannot leave before it ends.
    EXPECT_THROW(run_blocking([&] {
                   std::this_thread::sleep_for(200ms);
                   finished = true;
                 }),
                 TimeoutError);
    EXPECT_TRUE(finished.load());
    EXPECT_GE(elapsed_ms(start), 195);
    // Past the deadline, no job starts at all.
    bool ran = false;
    EXPECT_THROW(run_blocking([&] { ran = true; }), TimeoutError);
    EXPECT_FALSE(ran);
  });
}

TEST_F(DeadlineTest, ExecutorJobsCaptureTheDeadlineAndAPlainThreadWaitObeysIt) {
  run_in_fiber([&] {
    Promise<void> never;
    Future<void> never_done = never.get_future();
    Future<bool> timed_out;
    {
      Deadline deadline(100ms);
      timed_out = loop_.blocking_executor().submit([never_done] {
        try {
          wait_for_future(never_done);  // blocks the worker thread, up to the deadline
          return false;
        } catch (const TimeoutError&) {
          return true;
        }
      });
    }
    EXPECT_TRUE(wait_for_future(timed_out, 5s));
  });
}

TEST_F(DeadlineTest, SemaphoreAcquireObeysTheDeadline) {
  run_in_fiber([&] {
    Semaphore semaphore(0);
    Deadline deadline(50ms);
    EXPECT_THROW(semaphore.acquire(10s), TimeoutError);
    EXPECT_THROW(semaphore.acquire(), TimeoutError);
  });
}

TEST_F(DeadlineTest, OnAPlainThreadTheWaitBlocksOnlyUntilTheDeadline) {
  Promise<void> never;
  const auto start = Clock::now();
  Deadline deadline(50ms);
  EXPECT_THROW(wait_for_future(never.get_future()), TimeoutError);
  EXPECT_THROW(sleep_for(10s), TimeoutError);
  EXPECT_LT(elapsed_ms(start), kLateMs);
}

}  // namespace
}  // namespace fiberloop
