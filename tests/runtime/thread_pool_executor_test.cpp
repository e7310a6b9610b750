// Tests for ThreadPoolExecutor (runtime/include/fiberloop/thread_pool_executor.hpp).

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fiberloop/fiberloop.hpp>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using fiberloop::testing::CustomError;
using fiberloop::testing::elapsed_ms;

TEST(ThreadPoolExecutorTest, AtLeastOneThread) {
  ThreadPoolExecutor zero(0);
  EXPECT_EQ(zero.thread_count(), 1u);
  EXPECT_EQ(wait_for_future(zero.submit([] { return 1; }), 5s), 1);
  ThreadPoolExecutor three(3);
  EXPECT_EQ(three.thread_count(), 3u);
}

TEST(ThreadPoolExecutorTest, SubmitReturnsResultThroughFuture) {
  ThreadPoolExecutor pool(2);
  Future<int> f = pool.submit([] { return 40 + 2; });
  EXPECT_EQ(wait_for_future(f, 5s), 42);
  EXPECT_TRUE(f.done());
  EXPECT_EQ(f.exception(), nullptr);

  Future<std::string> s = pool.submit([] { return std::string("hello"); });
  EXPECT_EQ(wait_for_future(s, 5s), "hello");

  Future<std::unique_ptr<int>> m = pool.submit([] { return std::make_unique<int>(5); });
  std::unique_ptr<int> p = wait_for_future(m, 5s);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 5);
}

TEST(ThreadPoolExecutorTest, SubmitVoid) {
  ThreadPoolExecutor pool(1);
  std::atomic<bool> ran{false};
  Future<void> f = pool.submit([&] { ran = true; });
  wait_for_future(f, 5s);
  EXPECT_TRUE(ran.load());
  EXPECT_TRUE(f.done());
}

TEST(ThreadPoolExecutorTest, ExceptionComesBackThroughFutureWithItsType) {
  ThreadPoolExecutor pool(2);
  Future<int> f = pool.submit([]() -> int { throw CustomError(13); });
  try {
    (void)wait_for_future(f, 5s);
    FAIL() << "no exception";
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code(), 13);
  } catch (...) {
    FAIL() << "the task's exception lost its dynamic type";
  }
  EXPECT_NE(f.exception(), nullptr);
  Future<void> v = pool.submit([] { throw std::out_of_range("oor"); });
  EXPECT_THROW(wait_for_future(v, 5s), std::out_of_range);
  // The worker survives a throwing task.
  EXPECT_EQ(wait_for_future(pool.submit([] { return 7; }), 5s), 7);
}

TEST(ThreadPoolExecutorTest, TasksRunOnWorkerThreadsAndCompleteThere) {
  ThreadPoolExecutor pool(2);
  const auto main_id = std::this_thread::get_id();
  std::thread::id task_thread;
  std::thread::id callback_thread;
  std::atomic<bool> callback_done{false};
  Promise<void> gate;
  Future<void> gate_f = gate.get_future();
  Future<std::thread::id> f = pool.submit([&] {
    wait_for_future(gate_f);  // a worker has no running loop: this blocks the worker
    task_thread = std::this_thread::get_id();
    return task_thread;
  });
  f.add_done_callback([&](const Future<std::thread::id>&) {
    callback_thread = std::this_thread::get_id();
    callback_done = true;
  });
  gate.set_value();
  EXPECT_NE(wait_for_future(f, 5s), main_id);
  for (int i = 0; i < 5000 && !callback_done.load(); ++i) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(callback_done.load());
  EXPECT_EQ(callback_thread, task_thread) << "the future did not complete on the worker thread";
  EXPECT_NE(callback_thread, main_id);
}

TEST(ThreadPoolExecutorTest, RunsTasksConcurrentlyOnAllThreads) {
  // Four tasks that each wait until all four are running at once: only possible on
  // four threads.
  ThreadPoolExecutor pool(4);
  std::atomic<int> arrived{0};
  std::vector<Future<bool>> futures;
  for (int i = 0; i < 4; ++i) {
    futures.push_back(pool.submit([&] {
      arrived.fetch_add(1);
      const auto deadline = Clock::now() + 5s;
      while (arrived.load() < 4) {
        if (Clock::now() > deadline) return false;
        std::this_thread::sleep_for(100us);
      }
      return true;
    }));
  }
  for (auto& f : futures) EXPECT_TRUE(wait_for_future(f, 10s));
}

TEST(ThreadPoolExecutorTest, BlockingTasksRunInParallelWhileLoopTimerKeepsRhythm) {
  // Eight blocking tasks on four threads take two rounds of kTask; a loop timer ticks
  // every kPeriod meanwhile. The checks are chosen so a loaded machine's scheduling
  // delays cannot fail them: a pool running fewer tasks at a time needs a third
  // round, and a loop blocked by a task could not tick at all while it ran.
  static constexpr auto kTask = 200ms;
  constexpr double kTaskMs = 200.0;
  ThreadPoolExecutor pool(4);
  IOLoop loop;
  std::vector<Clock::time_point> ticks;
  std::mutex tasks_mutex;
  std::vector<std::pair<Clock::time_point, Clock::time_point>> task_intervals;
  Clock::time_point started{};
  Clock::time_point finished{};
  int done = 0;
  int failed = 0;
  std::vector<std::thread::id> done_on;

  constexpr auto kPeriod = 5ms;
  std::function<void()> tick = [&] {
    ticks.push_back(Clock::now());
    loop.call_later(kPeriod, tick);
  };
  loop.add_callback([&] {
    started = Clock::now();
    loop.call_later(kPeriod, tick);
    for (int i = 0; i < 8; ++i) {
      loop.add_future<int>(pool.submit([&, i] {
                             const auto from = Clock::now();
                             std::this_thread::sleep_for(kTask);  // a blocking call
                             std::lock_guard lock(tasks_mutex);
                             task_intervals.emplace_back(from, Clock::now());
                             return i;
                           }),
                           [&](Future<int> f) {
                             done_on.push_back(std::this_thread::get_id());
                             if (f.exception()) ++failed;
                             if (++done == 8) {
                               finished = Clock::now();
                               loop.stop();
                             }
                           });
    }
  });
  bool guard_fired = false;
  loop.call_later(5s, [&] {
    guard_fired = true;
    loop.stop();
  });
  loop.start();
  ASSERT_FALSE(guard_fired);
  EXPECT_EQ(failed, 0);
  for (const auto& id : done_on) EXPECT_EQ(id, std::this_thread::get_id()) << "add_future ran off the loop thread";

  const double total_ms = std::chrono::duration<double, std::milli>(finished - started).count();
  EXPECT_GE(total_ms, 2 * kTaskMs - 5) << "eight tasks on four threads finished too early";
  EXPECT_LT(total_ms, 3 * kTaskMs) << "the pool did not run four tasks at a time";

  // The loop kept ticking while each task blocked its pool thread.
  ASSERT_EQ(task_intervals.size(), 8u);
  for (const auto& [from, until] : task_intervals)
    EXPECT_TRUE(std::any_of(ticks.begin(), ticks.end(), [&](Clock::time_point t) { return from < t && t < until; }))
        << "the loop stood still while a task blocked";
}

TEST(ThreadPoolExecutorTest, SubmitAfterShutdownThrowsExecutorShutdown) {
  ThreadPoolExecutor pool(2);
  EXPECT_EQ(wait_for_future(pool.submit([] { return 1; }), 5s), 1);
  pool.shutdown();
  EXPECT_THROW((void)pool.submit([] { return 2; }), ExecutorShutdown);
  EXPECT_THROW((void)pool.submit([] {}), Error);
  EXPECT_NO_THROW(pool.shutdown());  // twice is fine
}

TEST(ThreadPoolExecutorTest, SubmitAfterShutdownWithoutWaitThrowsExecutorShutdown) {
  ThreadPoolExecutor pool(1);
  pool.shutdown(false);
  EXPECT_THROW((void)pool.submit([] { return 2; }), ExecutorShutdown);
}

TEST(ThreadPoolExecutorTest, ShutdownWaitsForQueuedTasks) {
  ThreadPoolExecutor pool(1);
  std::atomic<int> finished{0};
  std::vector<Future<int>> futures;
  for (int i = 0; i < 5; ++i) {
    futures.push_back(pool.submit([&finished, i] {
      std::this_thread::sleep_for(10ms);
      finished.fetch_add(1);
      return i;
    }));
  }
  pool.shutdown(true);
  EXPECT_EQ(finished.load(), 5) << "shutdown(true) returned before the queued tasks ran";
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(futures[static_cast<std::size_t>(i)].done());
    EXPECT_EQ(futures[static_cast<std::size_t>(i)].result(), i);
  }
}

TEST(ThreadPoolExecutorTest, ShutdownWithoutWaitStillRunsQueuedTasks) {
  std::atomic<int> finished{0};
  std::vector<Future<void>> futures;
  {
    ThreadPoolExecutor pool(1);
    for (int i = 0; i < 3; ++i)
      futures.push_back(pool.submit([&finished] {
        std::this_thread::sleep_for(10ms);
        finished.fetch_add(1);
      }));
    pool.shutdown(false);
    for (auto& f : futures) EXPECT_NO_THROW(wait_for_future(f, 5s));
    EXPECT_EQ(finished.load(), 3);
  }
}

TEST(ThreadPoolExecutorTest, DestructorJoinsAfterRunningQueuedTasks) {
  std::atomic<int> finished{0};
  std::vector<Future<int>> futures;
  {
    ThreadPoolExecutor pool(2);
    for (int i = 0; i < 6; ++i)
      futures.push_back(pool.submit([&finished, i] {
        std::this_thread::sleep_for(10ms);
        finished.fetch_add(1);
        return i;
      }));
  }
  EXPECT_EQ(finished.load(), 6) << "the destructor returned before the queued tasks ran";
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(futures[static_cast<std::size_t>(i)].done());
    EXPECT_EQ(futures[static_cast<std::size_t>(i)].result(), i);
  }
}

TEST(ThreadPoolExecutorTest, SubmitFromManyThreadsConcurrently) {
  ThreadPoolExecutor pool(4);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  std::atomic<int> executed{0};
  std::atomic<int> ready{0};
  std::vector<std::vector<Future<int>>> futures(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      for (int i = 0; i < kPerThread; ++i) {
        futures[static_cast<std::size_t>(t)].push_back(pool.submit([&executed, t, i] {
          executed.fetch_add(1);
          return t * 10000 + i;
        }));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(futures[static_cast<std::size_t>(t)].size(), static_cast<std::size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i)
      ASSERT_EQ(wait_for_future(futures[static_cast<std::size_t>(t)][static_cast<std::size_t>(i)], 10s), t * 10000 + i);
  }
  EXPECT_EQ(executed.load(), kThreads * kPerThread);
}

TEST(ThreadPoolExecutorTest, SubmitRacingWithShutdownEitherRunsOrThrows) {
  // Four threads submit while another shuts the pool down. Each submitter keeps going
  // until it is refused, and the shutdown waits until each has had a task accepted:
  // so every round sees both outcomes on every thread, whatever the timing. A task
  // accepted must run; once a submit is refused, every later one is refused too.
  constexpr int kThreads = 4;
  for (int round = 0; round < 10; ++round) {
    std::atomic<int> executed{0};
    std::atomic<int> accepted_total{0};
    std::atomic<int> threads_with_an_accepted_task{0};
    int accepted[kThreads] = {};
    int accepted_after_refusal[kThreads] = {};
    bool refused[kThreads] = {};
    std::vector<Future<void>> futures[kThreads];
    {
      ThreadPoolExecutor pool(2);
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          const auto give_up = Clock::now() + 10s;  // a pool that never refuses fails below, not hangs
          while (!refused[t] && Clock::now() < give_up) {
            try {
              futures[t].push_back(pool.submit([&] { executed.fetch_add(1); }));
              accepted_total.fetch_add(1);
              if (++accepted[t] == 1) threads_with_an_accepted_task.fetch_add(1);
              if (accepted[t] > 100) std::this_thread::sleep_for(20us);  // no pile of tasks if shutdown is late
            } catch (const ExecutorShutdown&) {
              refused[t] = true;
            }
          }
          for (int i = 0; i < 10; ++i) {  // refused once: refused for good
            try {
              futures[t].push_back(pool.submit([&] { executed.fetch_add(1); }));
              accepted_total.fetch_add(1);
              ++accepted_after_refusal[t];
            } catch (const ExecutorShutdown&) {
            }
          }
        });
      }
      while (threads_with_an_accepted_task.load() < kThreads) std::this_thread::yield();
      pool.shutdown(true);
      for (auto& th : threads) th.join();
    }
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_GE(accepted[t], 1) << "round " << round << ", thread " << t;
      EXPECT_TRUE(refused[t]) << "round " << round << ", thread " << t << ": submit after shutdown() was accepted";
      EXPECT_EQ(accepted_after_refusal[t], 0) << "round " << round << ", thread " << t;
    }
    EXPECT_EQ(executed.load(), accepted_total.load()) << "an accepted task was dropped";
    for (auto& v : futures)
      for (auto& f : v) EXPECT_TRUE(f.done());
  }
}

TEST(ThreadPoolExecutorTest, ResultsReachAFiberOnTheLoopThread) {
  IOLoop loop;
  ThreadPoolExecutor pool(2);
  const auto owner = std::this_thread::get_id();
  const int r = loop.run_sync([&] {
    Future<int> a = pool.submit([] {
      std::this_thread::sleep_for(5ms);
      return 20;
    });
    Future<int> b = pool.submit([]() -> int { throw CustomError(3); });
    int sum = wait_for_future(a);
    EXPECT_EQ(std::this_thread::get_id(), owner);
    try {
      sum += wait_for_future(b);
    } catch (const CustomError& e) {
      sum += e.code();
    }
    EXPECT_EQ(std::this_thread::get_id(), owner);
    return sum;
  }, std::chrono::seconds(10));
  EXPECT_EQ(r, 23);
}

}  // namespace
}  // namespace fiberloop
