// run_blocking(): a blocking call made from a fiber runs on the loop's pool while the
// loop carries on.

#include <algorithm>
#include <atomic>
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
using testing::Ticker;

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
  std::atomic<bool> job_finished{false};
  Future<int> fiber;
  bool saw_closed = false;
  {
    IOLoop loop;
    fiber = loop.spawn([&] {
      try {
        return run_blocking([&] {
          std::this_thread::sleep_for(30ms);
          job_finished = true;
          return 1;
        });
      } catch (const LoopClosed&) {
        saw_closed = true;
        throw;
      }
    });
    loop.run_sync([] { sleep_for(5ms); });
  }
  // The loop's pool was shut down and joined: the job ran to its end.
  EXPECT_TRUE(job_finished);
  EXPECT_TRUE(saw_closed);
  ASSERT_TRUE(fiber.done());
  EXPECT_THROW(fiber.result(), LoopClosed);
}

}  // namespace
}  // namespace fiberloop
