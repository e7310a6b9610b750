// Semaphore: permits cap concurrency, waiters are served first come first served with
// no barging, timeouts fail only their waiter (also when racing a handover), and the
// waits follow wait_for_future's rules (BlockingCallError, LoopClosed).

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fiberloop/semaphore.hpp>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::elapsed_ms;

class SemaphoreTest : public testing::LoopTest {};

/// Fiber: lets the loop turn until `ready()` holds (at most ~5 s, then a test failure).
template <class Ready>
void turn_until(Ready ready) {
  for (int i = 0; i < 5000 && !ready(); ++i) sleep_for(1ms);
  ASSERT_TRUE(ready()) << "the condition never held";
}

TEST_F(SemaphoreTest, PermitsCapHowManyFibersAreInsideAtOnce) {
  run_in_fiber([&] {
    constexpr std::size_t permits = 3;
    Semaphore semaphore(permits);
    std::size_t inside = 0, most_inside = 0;
    std::vector<Future<void>> fibers;
    for (int i = 0; i < 20; ++i)
      fibers.push_back(loop_.spawn([&] {
        semaphore.acquire();
        most_inside = std::max(most_inside, ++inside);
        sleep_for(1ms);  // all 20 are in line before the first one leaves
        --inside;
        semaphore.release();
      }));
    for (auto& f : fibers) wait_for_future(f);
    EXPECT_EQ(most_inside, permits);
    EXPECT_EQ(semaphore.available(), permits);
    EXPECT_EQ(semaphore.waiting(), 0u);
  });
}

TEST_F(SemaphoreTest, WaitersGetPermitsInTheOrderTheyCame) {
  run_in_fiber([&] {
    Semaphore semaphore(1);
    semaphore.acquire();
    std::vector<int> order;
    std::vector<Future<void>> fibers;
    for (int i = 0; i < 5; ++i)
      fibers.push_back(loop_.spawn([&, i] {
        semaphore.acquire();
        order.push_back(i);
        sleep_for(1ms);  // the others stay in line meanwhile
        semaphore.release();
      }));
    turn_until([&] { return semaphore.waiting() == 5; });
    semaphore.release();
    for (auto& f : fibers) wait_for_future(f);
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
    EXPECT_EQ(semaphore.available(), 1u);
  });
}

TEST_F(SemaphoreTest, ReleaseHandsThePermitToTheWaiterSoNobodyBargesIn) {
  run_in_fiber([&] {
    Semaphore semaphore(1);
    semaphore.acquire();
    bool waiter_got_it = false;
    auto waiter = loop_.spawn([&] {
      semaphore.acquire();
      waiter_got_it = true;
      semaphore.release();
    });
    turn_until([&] { return semaphore.waiting() == 1; });
    semaphore.release();
    // The waiter has not run yet, but the permit is already its own.
    EXPECT_FALSE(waiter_got_it);
    EXPECT_EQ(semaphore.available(), 0u);
    EXPECT_FALSE(semaphore.try_acquire()) << "a newcomer took the permit released for the waiter";
    EXPECT_THROW(semaphore.acquire(0ns), TimeoutError);
    wait_for_future(waiter);
    EXPECT_TRUE(waiter_got_it);
    EXPECT_EQ(semaphore.available(), 1u);
    EXPECT_TRUE(semaphore.try_acquire());
  });
}

TEST_F(SemaphoreTest, TimeoutFailsOnlyThatWaiterAndGivesItsPlaceInLineBack) {
  run_in_fiber([&] {
    Semaphore semaphore(1);
    semaphore.acquire();
    std::string impatient_error;
    double impatient_waited_ms = 0;
    auto impatient = loop_.spawn([&] {
      const auto start = Clock::now();
      try {
        semaphore.acquire(20ms);
        ADD_FAILURE() << "acquired a permit nobody released";
      } catch (const TimeoutError& e) {
        impatient_error = e.what();
      }
      impatient_waited_ms = elapsed_ms(start);
    });
    bool patient_got_it = false;
    auto patient = loop_.spawn([&] {
      semaphore.acquire(10s);
      patient_got_it = true;
    });
    turn_until([&] { return semaphore.waiting() == 2; });
    wait_for_future(impatient);
    EXPECT_NE(impatient_error.find("Semaphore::acquire()"), std::string::npos) << impatient_error;
    EXPECT_GE(impatient_waited_ms, 20.0);
    EXPECT_EQ(semaphore.waiting(), 1u) << "the timed-out waiter is still in line";
    EXPECT_FALSE(patient_got_it);
    semaphore.release();
    wait_for_future(patient);
    EXPECT_TRUE(patient_got_it);
    EXPECT_EQ(semaphore.available(), 0u) << "the patient fiber holds the one permit";
    semaphore.release();
    EXPECT_EQ(semaphore.available(), 1u);
    EXPECT_EQ(semaphore.waiting(), 0u);
  });
}

// The waiter's timeout and the release are due in the same loop turn: the timeout
// runs first and wakes the waiter, then the release hands it the permit before it
// resumes. The permit is then the waiter's: acquire() returns (a TimeoutError here
// would lose the permit for good). The loop thread is held past both deadlines so
// both are due together however loaded the machine.
TEST_F(SemaphoreTest, PermitHandedOverInTheTurnTheTimeoutFiredIsTheWaiters) {
  run_in_fiber([&] {
    Semaphore semaphore(1);
    semaphore.acquire();
    bool acquired = false;
    auto waiter = loop_.spawn([&] {
      semaphore.acquire(10ms);  // its deadline comes before the release's (set later)
      acquired = true;
    });
    turn_until([&] { return semaphore.waiting() == 1; });
    loop_.call_later(10ms, [&] { semaphore.release(); });
    std::this_thread::sleep_for(50ms);  // holds the loop: both are due when it turns
    wait_for_future(waiter);
    EXPECT_TRUE(acquired);
    EXPECT_EQ(semaphore.available(), 0u);
    EXPECT_EQ(semaphore.waiting(), 0u);
    semaphore.release();
    EXPECT_EQ(semaphore.available(), 1u);
  });
}

TEST_F(SemaphoreTest, ZeroOrNegativeTimeoutNeverWaits) {
  run_in_fiber([&] {
    Semaphore semaphore(1);
    bool other_ran = false;
    auto other = loop_.spawn([&] { other_ran = true; });  // ready: runs if we suspend
    semaphore.acquire(0ns);  // a free permit: taken
    EXPECT_EQ(semaphore.available(), 0u);
    EXPECT_THROW(semaphore.acquire(0ns), TimeoutError);
    EXPECT_THROW(semaphore.acquire(-1s), TimeoutError);
    EXPECT_THROW(semaphore.acquire(std::chrono::nanoseconds::min()), TimeoutError);
    EXPECT_FALSE(other_ran) << "a zero timeout suspended the fiber";
    EXPECT_EQ(semaphore.waiting(), 0u);
    semaphore.release();
    EXPECT_EQ(semaphore.available(), 1u);
    wait_for_future(other);
  });
}

TEST_F(SemaphoreTest, LongestTimeoutWaitsForThePermit) {
  run_in_fiber([&] {
    Semaphore semaphore(1);
    semaphore.acquire();
    loop_.call_later(20ms, [&] { semaphore.release(); });
    // now() + nanoseconds::max() overflows into the past: it would time out at once.
    semaphore.acquire(std::chrono::nanoseconds::max());
    EXPECT_EQ(semaphore.available(), 0u);
    semaphore.release();
  });
}

TEST_F(SemaphoreTest, WaitingOnTheLoopThreadOutsideAFiberThrowsBlockingCallError) {
  run_in_fiber([&] {
    Semaphore semaphore(1);
    Promise<void> checked;
    loop_.add_callback([&] {
      EXPECT_FALSE(in_fiber());
      semaphore.acquire();  // free: no wait needed, so allowed
      try {
        semaphore.acquire();
        ADD_FAILURE() << "acquire() returned without a free permit";
      } catch (const BlockingCallError& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("Semaphore::acquire()"), std::string::npos) << message;
        EXPECT_NE(message.find("spawn()"), std::string::npos) << message;
      }
      EXPECT_THROW(semaphore.acquire(1s), BlockingCallError);
      EXPECT_EQ(semaphore.waiting(), 0u) << "a refused wait stayed in line";
      semaphore.release();  // release() from a callback is fine
      checked.set_value();
    });
    wait_for_future(checked.get_future());
    EXPECT_EQ(semaphore.available(), 1u);
  });
}

// Destroying the loop wakes the waiter with LoopClosed (or, when the holder unwinds
// first and releases, hands it the permit, which it gives back as it unwinds): either
// way nothing hangs, the line is empty and every permit is back.
TEST(SemaphoreDestructionTest, LoopDestroyedWhileWaitingThrowsLoopClosedAndTakesNoPermit) {
  Semaphore semaphore(1);
  Future<void> holder, waiter;
  {
    IOLoop loop;
    holder = loop.spawn([&] {
      semaphore.acquire();
      struct Release {
        Semaphore& s;
        ~Release() { s.release(); }
      } release{semaphore};
      sleep_for(1h);
    });
    waiter = loop.spawn([&] {
      semaphore.acquire();
      struct Release {
        Semaphore& s;
        ~Release() { s.release(); }
      } release{semaphore};
      sleep_for(1h);
    });
    loop.run_sync([&] {
      turn_until([&] { return semaphore.waiting() == 1; });
    });
  }
  ASSERT_TRUE(holder.done() && waiter.done());
  EXPECT_THROW(holder.result(), LoopClosed);
  EXPECT_THROW(waiter.result(), LoopClosed);
  EXPECT_EQ(semaphore.waiting(), 0u);
  EXPECT_EQ(semaphore.available(), 1u);
}

// The permit is held outside the loop, so no handover can come: the loop's destruction
// must take the waiter out of the line (its promise dies with its stack).
TEST(SemaphoreDestructionTest, WaiterUnwoundByItsLoopLeavesTheLine) {
  Semaphore semaphore(1);
  semaphore.acquire(0ns);  // held for good: no handover can come
  Future<void> waiter;
  {
    IOLoop loop;
    waiter = loop.spawn([&] { semaphore.acquire(); });
    loop.run_sync([&] {
      turn_until([&] { return semaphore.waiting() == 1; });
    });
  }
  ASSERT_TRUE(waiter.done());
  EXPECT_THROW(waiter.result(), LoopClosed);
  EXPECT_EQ(semaphore.waiting(), 0u) << "a dead fiber's promise is still in line";
  EXPECT_EQ(semaphore.available(), 0u);
  semaphore.release();
  EXPECT_EQ(semaphore.available(), 1u);
}

TEST_F(SemaphoreTest, DestroyedSemaphoreFailsItsWaitersWithBrokenPromise) {
  run_in_fiber([&] {
    auto semaphore = std::make_unique<Semaphore>(1);
    semaphore->acquire();
    std::vector<Future<void>> waiters;
    for (int i = 0; i < 3; ++i) waiters.push_back(loop_.spawn([&] { semaphore->acquire(10s); }));
    turn_until([&] { return semaphore->waiting() == 3; });
    semaphore.reset();  // the waiters must not touch it when they resume (ASan checks)
    for (auto& w : waiters) {
      const std::string message = testing::failure_of<BrokenPromise>(w);
      EXPECT_NE(message.find("Semaphore was destroyed"), std::string::npos) << message;
    }
  });
}

}  // namespace
}  // namespace fiberloop
