// run_blocking(): a blocking call made from a fiber runs on the loop's pool while the
// loop carries on.

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::CustomError;
using testing::elapsed_ms;
using testing::signal_when_closing;
using testing::Ticker;
using testing::wait_until;

class RunBlockingTest : public testing::LoopTest {};

TEST_F(RunBlockingTest, RunsOnAnotherThreadAndReturnsOnTheLoopThread) {
  run_in_fiber([&] {
    const auto loop_thread = std::this_thread::get_id();
    const auto worker = run_blocking([] { return std::this_thread::get_id(); });
    EXPECT_NE(worker, loop_thread);
    EXPECT_EQ(std::this_thread::get_id(), loop_thread);
    EXPECT_TRUE(in_fiber());
    EXPECT_EQ(run_blocking([] { return std::string("result"); }), "result");
    bool ran = false;
    run_blocking([&] { ran = true; });
    EXPECT_TRUE(ran);
    auto owned = run_blocking([] { return std::make_unique<int>(4); });
    ASSERT_TRUE(owned);
    EXPECT_EQ(*owned, 4);
  });
}

TEST_F(RunBlockingTest, PropagatesExceptionsFromThePoolThreadWithTheirType) {
  run_in_fiber([&] {
    const auto loop_thread = std::this_thread::get_id();
    try {
      run_blocking([]() -> int { throw CustomError(31); });
      ADD_FAILURE() << "no exception";
    } catch (const CustomError& e) {
      EXPECT_EQ(e.code(), 31);
    }
    EXPECT_EQ(std::this_thread::get_id(), loop_thread);
  });
}

TEST_F(RunBlockingTest, OtherFibersKeepRunningWhileAPoolThreadBlocks) {
  run_in_fiber([&] {
    Ticker ticker(loop_);
    const auto from = Clock::now();
    run_blocking([] { std::this_thread::sleep_for(50ms); });  // a genuinely blocking call
    const auto until = Clock::now();
    ticker.stop();
    EXPECT_TRUE(ticker.ran_between(from, until)) << "the loop stood still during run_blocking()";
  });
}

TEST(RunBlockingPoolTest, ManyFibersBlockConcurrentlyOnPoolThreads) {
  IOLoop::Options options;
  options.blocking_threads = 8;
  IOLoop loop(options);
  const auto start = Clock::now();
  loop.run_sync(
      [&] {
        std::vector<Future<std::thread::id>> fibers;
        for (int i = 0; i < 16; ++i)
          fibers.push_back(loop.spawn([] {
            return run_blocking([] {
              std::this_thread::sleep_for(50ms);
              return std::this_thread::get_id();
            });
          }));
        std::vector<std::thread::id> workers;
        for (auto& f : fibers) workers.push_back(wait_for_future(f));
        std::sort(workers.begin(), workers.end());
        EXPECT_GT(std::unique(workers.begin(), workers.end()) - workers.begin(), 1);
      },
      20s);
  const double ms = elapsed_ms(start);
  EXPECT_GE(ms, 99.0);   // 16 jobs on 8 threads: two rounds
  EXPECT_LT(ms, 600.0);  // one after another would be 800 ms
  EXPECT_EQ(loop.live_fibers(), 0u);
}

TEST_F(RunBlockingTest, OnTheLoopThreadOutsideAFiberThrowsBlockingCallError) {
  run_in_fiber([&] {
    bool called = false;
    Promise<void> checked;
    loop_.add_callback([&] {
      try {
        run_blocking([&] { called = true; });
        ADD_FAILURE() << "run_blocking() in a callback did not throw";
      } catch (const BlockingCallError& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("spawn()"), std::string::npos) << message;
        EXPECT_NE(message.find("run_sync()"), std::string::npos) << message;
      }
      checked.set_value();
    });
    wait_for_future(checked.get_future());
    EXPECT_FALSE(called);
  });
}

TEST_F(RunBlockingTest, OnAPlainThreadRunsInline) {
  std::thread::id runner, caller;
  std::jthread([&] {
    caller = std::this_thread::get_id();
    runner = run_blocking([] { return std::this_thread::get_id(); });
    EXPECT_THROW(run_blocking([]() -> int { throw CustomError(2); }), CustomError);
  }).join();
  EXPECT_EQ(runner, caller);
  // On an executor thread, too.
  ThreadPoolExecutor pool(1);
  auto ids = pool.submit([] {
    return std::make_pair(std::this_thread::get_id(), run_blocking([] { return std::this_thread::get_id(); }));
  });
  const auto [outer, inner] = wait_for_future(ids);
  EXPECT_EQ(outer, inner);
  // And on this thread, whose loop exists but is not running.
  EXPECT_EQ(run_blocking([] { return std::this_thread::get_id(); }), std::this_thread::get_id());
}

TEST(RunBlockingDestructionTest, LoopDestroyedWhileAPoolThreadRunsTheFibersJob) {
  std::atomic<bool> job_started{false}, job_finished{false};
  Future<int> fiber;
  bool saw_closed = false;
  {
    IOLoop loop;
    fiber = loop.spawn([&] {
      try {
        return run_blocking([&] {
          job_started = true;
          std::this_thread::sleep_for(30ms);
          job_finished = true;
          return 1;
        });
      } catch (const LoopClosed&) {
        saw_closed = true;
        throw;
      }
    });
    loop.run_sync([&] {
      while (!job_started) sleep_for(1ms);  // running, not queued: queued jobs never run
    });
  }
  // The job may use the fiber's stack: ~IOLoop let it run to its end before resuming
  // the fiber, whose run_blocking then returned the job's result.
  EXPECT_TRUE(job_finished);
  EXPECT_FALSE(saw_closed);
  ASSERT_TRUE(fiber.done());
  EXPECT_EQ(fiber.result(), 1);
}

// ---- a fiber's stack outlives its blocking job (issue 16, item 1) ----------------

/// Records, when the fiber unwinds past it, whether the job had finished by then.
struct UnwindWitness {
  const std::atomic<bool>& job_finished;
  bool& finished_when_unwound;
  ~UnwindWitness() { finished_when_unwound = job_finished.load(); }
};

TEST(RunBlockingDestructionTest, FiberUnwindsOnlyAfterItsRunningJobFinished) {
  std::atomic<bool> job_started{false}, job_finished{false}, closing{false};
  bool finished_when_unwound = false;
  Future<void> fiber;
  {
    IOLoop::Options options;
    options.pooled_stacks = 0;  // a finished fiber's stack is unmapped at once
    IOLoop loop(options);
    signal_when_closing(loop, closing);
    fiber = loop.spawn([&] {
      UnwindWitness witness{job_finished, finished_when_unwound};
      run_blocking([&] {
        job_started = true;
        wait_until(closing);                  // ~IOLoop has begun
        std::this_thread::sleep_for(20ms);  // and would have unwound the fiber by now
        job_finished = true;
      });
    });
    loop.run_sync([&] {
      while (!job_started) sleep_for(1ms);
    });
  }
  EXPECT_TRUE(finished_when_unwound) << "the fiber's stack was unwound while its run_blocking job still ran";
  ASSERT_TRUE(fiber.done());
  // The job finished before the fiber resumed: run_blocking returned its result and
  // the fiber ended normally (a later wait would have thrown LoopClosed).
  EXPECT_NO_THROW(fiber.result());
}

// The scenario: the job writes into a buffer on the fiber's stack while the
// loop is being destroyed. Before the fix: SIGSEGV on the pool thread (the fiber had
// been unwound and its stack unmapped).
TEST(RunBlockingDestructionTest, JobWritingIntoTheFibersStackDuringTheLoopsDestructionIsSafe) {
  std::atomic<bool> job_started{false}, closing{false};
  int seen = 0;
  {
    IOLoop::Options options;
    options.pooled_stacks = 0;
    IOLoop loop(options);
    signal_when_closing(loop, closing);
    (void)loop.spawn([&] {
      char buffer[4096] = {};
      run_blocking([&] {
        job_started = true;
        wait_until(closing);
        std::this_thread::sleep_for(20ms);
        std::memset(buffer, 1, sizeof buffer);
      });
      seen = buffer[0] + buffer[sizeof buffer - 1];
    });
    loop.run_sync([&] {
      while (!job_started) sleep_for(1ms);
    });
  }
  EXPECT_EQ(seen, 2);  // the fiber read back what the job wrote, then ended
}

TEST(RunBlockingDestructionTest, QueuedJobsThatNeverStartedFailWithLoopClosedAndNeverRun) {
  std::atomic<bool> first_started{false}, first_finished{false}, second_ran{false}, closing{false};
  bool first_finished_when_unwound = false;
  Future<void> second;
  {
    IOLoop::Options options;
    options.blocking_threads = 1;  // the second job queues behind the first
    IOLoop loop(options);
    signal_when_closing(loop, closing);
    (void)loop.spawn([&] {
      UnwindWitness witness{first_finished, first_finished_when_unwound};
      run_blocking([&] {
        first_started = true;
        wait_until(closing);
        std::this_thread::sleep_for(20ms);
        first_finished = true;
      });
    });
    second = loop.spawn([&] { run_blocking([&] { second_ran = true; }); });
    loop.run_sync([&] {
      while (!first_started) sleep_for(1ms);
    });
  }
  EXPECT_TRUE(first_finished_when_unwound);
  EXPECT_FALSE(second_ran) << "a job queued behind a running one ran after its loop was destroyed";
  ASSERT_TRUE(second.done());
  EXPECT_THROW(second.result(), LoopClosed);
}

// A blocking job that hands work back to its loop (spawn from the pool thread) and
// waits for it must not hang the loop's destruction: the handed-over fiber never
// starts and fails with LoopClosed, which ends the job, which lets the fiber go.
TEST(RunBlockingDestructionTest, JobWaitingOnItsLoopDuringTheLoopsDestructionDoesNotHang) {
  std::atomic<bool> job_started{false}, job_saw_closed{false}, closing{false};
  {
    IOLoop loop;
    signal_when_closing(loop, closing);
    (void)loop.spawn([&] {
      run_blocking([&] {
        job_started = true;
        wait_until(closing);
        try {
          wait_for_future(loop.spawn([] { return 1; }));
        } catch (const LoopClosed&) {
          job_saw_closed = true;
        }
      });
    });
    loop.run_sync([&] {
      while (!job_started) sleep_for(1ms);
    });
  }
  EXPECT_TRUE(job_saw_closed);
}

}  // namespace
}  // namespace fiberloop
