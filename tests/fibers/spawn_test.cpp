// IOLoop::spawn(), run_sync() bodies, in_fiber(), and what destroying a loop does to
// the fibers still on it.

#include <atomic>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::capture_stderr;
using testing::Counted;
using testing::CustomError;

class SpawnTest : public testing::LoopTest {};

// ---- results through the future ----------------------------------------------

TEST_F(SpawnTest, ReturnsValueVoidAndExceptionsThroughTheFuture) {
  run_in_fiber([&] {
    auto value = loop_.spawn([] { return std::string("hello"); });
    bool ran = false;
    auto nothing = loop_.spawn([&] { ran = true; });
    auto failure = loop_.spawn([]() -> int { throw CustomError(12); });
    auto move_only = loop_.spawn([] { return std::make_unique<int>(6); });
    EXPECT_EQ(wait_for_future(value), "hello");
    wait_for_future(nothing);
    EXPECT_TRUE(ran);
    try {
      wait_for_future(failure);
      ADD_FAILURE() << "no exception";
    } catch (const CustomError& e) {
      EXPECT_EQ(e.code(), 12);
    }
    ASSERT_TRUE(failure.exception());
    EXPECT_THROW(std::rethrow_exception(failure.exception()), CustomError);
    auto owned = wait_for_future(move_only);
    ASSERT_TRUE(owned);
    EXPECT_EQ(*owned, 6);
  });
}

TEST_F(SpawnTest, SpawnBeforeTheLoopRunsStartsWithRunSync) {
  std::vector<int> order;
  auto a = loop_.spawn([&] { order.push_back(1); });
  auto b = loop_.spawn([&] {
    order.push_back(2);
    return 2;
  });
  EXPECT_FALSE(a.done());
  EXPECT_EQ(loop_.live_fibers(), 2u);
  run_in_fiber([&] {
    order.push_back(3);
    wait_for_future(a);
    EXPECT_EQ(wait_for_future(b), 2);
  });
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST_F(SpawnTest, RunSyncReturnsAndRethrows) {
  EXPECT_EQ(loop_.run_sync([] { return 42; }), 42);
  EXPECT_THROW(loop_.run_sync([]() -> int { throw CustomError(1); }), CustomError);
  EXPECT_THROW(loop_.run_sync([] { sleep_for(60ms); }, 20ms), TimeoutError);
  // The timed-out fiber stays suspended; running the loop again finishes it.
  EXPECT_EQ(loop_.live_fibers(), 1u);
  loop_.run_sync([] { sleep_for(100ms); });
  EXPECT_EQ(loop_.live_fibers(), 0u);
}

TEST_F(SpawnTest, FibersSpawnFibers) {
  run_in_fiber([&] {
    // A binary tree of fibers, each waiting for its children: sum of the leaves.
    std::function<int(int)> tree = [&](int depth) -> int {
      if (depth == 0) return 1;
      auto left = loop_.spawn([&, depth] { return tree(depth - 1); });
      auto right = loop_.spawn([&, depth] { return tree(depth - 1); });
      return wait_for_future(left) + wait_for_future(right);
    };
    EXPECT_EQ(tree(8), 256);
  });
}

TEST_F(SpawnTest, SpawnOrderIsRunOrder) {
  run_in_fiber([&] {
    constexpr int kFibers = 200;
    std::vector<int> started;
    std::vector<Future<void>> fibers;
    for (int i = 0; i < kFibers; ++i) fibers.push_back(loop_.spawn([&, i] { started.push_back(i); }));
    for (auto& f : fibers) wait_for_future(f);
    ASSERT_EQ(started.size(), static_cast<std::size_t>(kFibers));
    for (int i = 0; i < kFibers; ++i) EXPECT_EQ(started[i], i);
  });
}

TEST_F(SpawnTest, SpawnFromAnotherThreadRunsOnTheLoopThread) {
  run_in_fiber([&] {
    const auto loop_thread = std::this_thread::get_id();
    constexpr int kFibers = 100;
    std::vector<Future<std::thread::id>> fibers(kFibers);
    std::vector<int> order;
    {
      std::jthread spawner([&] {
        for (int i = 0; i < kFibers; ++i)
          fibers[i] = loop_.spawn([&, i] {
            order.push_back(i);
            EXPECT_TRUE(in_fiber());
            return std::this_thread::get_id();
          });
      });
    }
    for (auto& f : fibers) EXPECT_EQ(wait_for_future(f), loop_thread);
    ASSERT_EQ(order.size(), static_cast<std::size_t>(kFibers));
    for (int i = 0; i < kFibers; ++i) EXPECT_EQ(order[i], i) << "spawns from one thread ran out of order";
  });
}

TEST_F(SpawnTest, SpawnFromAThreadPoolThread) {
  ThreadPoolExecutor pool(2);
  run_in_fiber([&] {
    const auto loop_thread = std::this_thread::get_id();
    auto inner = wait_for_future(pool.submit([&] { return loop_.spawn([] { return std::this_thread::get_id(); }); }));
    EXPECT_EQ(wait_for_future(inner), loop_thread);
  });
}

// ---- in_fiber ------------------------------------------------------------------

TEST_F(SpawnTest, InFiberTellsFibersFromEverythingElse) {
  EXPECT_FALSE(in_fiber());  // the main thread, loop idle
  bool in_callback = true, in_timer = true, in_spawned = false, in_nested = false;
  run_in_fiber([&] {
    EXPECT_TRUE(in_fiber());  // the run_sync body
    Promise<void> done;
    loop_.add_callback([&] {
      in_callback = in_fiber();
      loop_.call_later(1ms, [&] {
        in_timer = in_fiber();
        done.set_value();
      });
    });
    wait_for_future(done.get_future());
    wait_for_future(loop_.spawn([&] {
      in_spawned = in_fiber();
      wait_for_future(loop_.spawn([&] { in_nested = in_fiber(); }));
    }));
  });
  EXPECT_FALSE(in_callback);
  EXPECT_FALSE(in_timer);
  EXPECT_TRUE(in_spawned);
  EXPECT_TRUE(in_nested);
  EXPECT_FALSE(in_fiber());
}

TEST_F(SpawnTest, InFiberIsFalseOnPoolAndPlainThreadsWhileTheLoopRunsFibers) {
  ThreadPoolExecutor pool(1);
  run_in_fiber([&] {
    EXPECT_FALSE(wait_for_future(pool.submit([] { return in_fiber(); })));
    bool on_thread = true;
    std::jthread([&] { on_thread = in_fiber(); }).join();
    EXPECT_FALSE(on_thread);
    EXPECT_TRUE(in_fiber());
  });
}

TEST_F(SpawnTest, RunSyncOrStartInsideAFiberThrowsLogicErrorInsteadOfNesting) {
  run_in_fiber([&] {
    EXPECT_THROW(loop_.run_sync([] { return 1; }), std::logic_error);
    EXPECT_THROW(loop_.start(), std::logic_error);
    IOLoop other;  // another loop on this thread cannot run inside this one either
    EXPECT_THROW(other.run_sync([] {}), std::logic_error);
    EXPECT_EQ(other.live_fibers(), 0u) << "a refused run_sync left a fiber behind";
    EXPECT_TRUE(in_fiber());
  });
}

// ---- two loops on one thread ---------------------------------------------------

TEST(SpawnTwoLoopsTest, FibersStayWithTheirLoop) {
  IOLoop a;
  IOLoop b;
  Promise<int> pa;
  bool a_resumed = false;
  IOLoop* a_fiber_loop = nullptr;
  auto fa = a.spawn([&, f = pa.get_future()] {
    const int v = wait_for_future(f);
    a_resumed = true;
    a_fiber_loop = &IOLoop::current();
    return v;
  });
  a.run_sync([] {});  // a's fiber starts and suspends
  EXPECT_EQ(a.live_fibers(), 1u);
  b.run_sync([&] {
    pa.set_value(3);  // wakes a's fiber, which must wait for a to run
    sleep_for(10ms);
    EXPECT_FALSE(a_resumed) << "a fiber of loop a ran while loop b was running";
  });
  EXPECT_FALSE(a_resumed);
  EXPECT_EQ(a.run_sync([&] { return wait_for_future(fa); }), 3);
  EXPECT_TRUE(a_resumed);
  EXPECT_EQ(a_fiber_loop, &a);
  EXPECT_EQ(a.live_fibers(), 0u);
  EXPECT_EQ(b.live_fibers(), 0u);
}

TEST(SpawnThreadsTest, LoopsOnDifferentThreadsRunIndependently) {
  constexpr int kThreads = 4;
  constexpr int kFibers = 500;
  std::vector<long> sums(kThreads, 0);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        IOLoop loop;
        sums[t] = loop.run_sync(
            [&] {
              const auto me = std::this_thread::get_id();
              std::vector<Future<int>> fibers;
              for (int i = 0; i < kFibers; ++i)
                fibers.push_back(loop.spawn([&, i] {
                  sleep_for(std::chrono::milliseconds(i % 5));
                  EXPECT_EQ(std::this_thread::get_id(), me);
                  EXPECT_EQ(&IOLoop::current(), &loop);
                  return i;
                }));
              long sum = 0;
              for (auto& f : fibers) sum += wait_for_future(f);
              return sum;
            },
            20s);
        EXPECT_EQ(loop.live_fibers(), 0u);
      });
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(sums[t], static_cast<long>(kFibers) * (kFibers - 1) / 2);
}

// ---- destroying a loop with fibers on it ---------------------------------------

TEST(IOLoopDestructionTest, UnwindsSuspendedAndUnstartedFibers) {
  int unwound = 0;                        // Counted objects on fiber stacks destroyed
  int saw_closed = 0;                     // waits that threw LoopClosed
  auto token = std::make_shared<int>(0);  // captured by every fiber's function
  Promise<int> never;                     // outlives the loop
  Future<int> never_f = never.get_future();
  Future<int> spawned_while_closing;
  std::vector<Future<int>> futures;
  {
    auto loop = std::make_unique<IOLoop>();
    // Waiting on a future that never completes.
    futures.push_back(loop->spawn([&, token] {
      Counted guard(unwound);
      std::string heap(1000, 'x');  // freed only if the stack unwinds (ASan's leak check)
      try {
        return wait_for_future(never_f) + static_cast<int>(heap.size());
      } catch (const LoopClosed&) {
        ++saw_closed;
        throw;
      }
    }));
    // In sleep_for.
    futures.push_back(loop->spawn([&, token] {
      Counted guard(unwound);
      auto heap = std::make_unique<std::vector<int>>(100, 1);
      try {
        sleep_for(1h);
      } catch (const LoopClosed&) {
        ++saw_closed;
        throw;
      }
      return 0;
    }));
    // In a wait with a timeout.
    futures.push_back(loop->spawn([&, token] {
      Counted guard(unwound);
      try {
        return wait_for_future(never_f, 1h);
      } catch (const LoopClosed&) {
        ++saw_closed;
        throw;
      }
    }));
    // Waiting on a child fiber that waits: both unwind.
    futures.push_back(loop->spawn([&, token, l = loop.get()] {
      Counted guard(unwound);
      auto child = l->spawn([&, token] {
        Counted child_guard(unwound);
        return wait_for_future(never_f);
      });
      return wait_for_future(child);
    }));
    // Catches LoopClosed, tries to wait again and to spawn: both refused.
    futures.push_back(loop->spawn([&, token, l = loop.get()]() -> int {
      Counted guard(unwound);
      try {
        sleep_for(1h);
      } catch (const LoopClosed&) {
        ++saw_closed;
      }
      try {
        sleep_for(1ms);
        ADD_FAILURE() << "sleep_for() after LoopClosed returned";
      } catch (const LoopClosed&) {
        ++saw_closed;
      }
      spawned_while_closing = l->spawn([token] { return 1; });
      throw LoopClosed("rethrown by the test");
    }));
    loop->run_sync([] { sleep_for(5ms); });  // the fibers above start and suspend
    EXPECT_EQ(loop->live_fibers(), 6u);      // five fibers and one child
    // Spawned but never started.
    futures.push_back(loop->spawn([&, token, guard = Counted(unwound)] { return 1; }));
    EXPECT_EQ(loop->live_fibers(), 7u);
    for (auto& f : futures) EXPECT_FALSE(f.done());
    unwound = 0;  // the temporary Counted of the last spawn
  }
  for (std::size_t i = 0; i < futures.size(); ++i) {
    SCOPED_TRACE("fiber " + std::to_string(i));
    ASSERT_TRUE(futures[i].done());
    EXPECT_THROW(futures[i].result(), LoopClosed);
  }
  EXPECT_EQ(saw_closed, 5);
  EXPECT_EQ(unwound, 7);  // six on fiber stacks, and the unstarted fiber's captured copy
  ASSERT_TRUE(spawned_while_closing.valid());
  ASSERT_TRUE(spawned_while_closing.done());
  EXPECT_THROW(spawned_while_closing.result(), LoopClosed);
  EXPECT_EQ(token.use_count(), 1) << "a fiber's function was not destroyed";
  never.set_value(1);  // no waiter of a dead fiber may be left on it
  EXPECT_EQ(never_f.result(), 1);
}

TEST(IOLoopDestructionTest, FiberSpawnedFromAnotherThreadButNeverStartedEndsWithLoopClosed) {
  // spawn() from another thread hands the fiber to the loop thread through
  // add_callback; the loop is destroyed before it ever ran that callback. The fiber
  // was spawned and never started, like one spawned on the owner thread: its
  // future must end with LoopClosed (not hang, and not merely BrokenPromise).
  auto token = std::make_shared<int>(0);
  Future<int> remote;
  Future<int> local;
  {
    IOLoop loop;
    local = loop.spawn([token] { return 1; });
    std::jthread([&] { remote = loop.spawn([token] { return 2; }); }).join();
    EXPECT_FALSE(remote.done());
  }
  ASSERT_TRUE(local.done());
  EXPECT_THROW(local.result(), LoopClosed);
  ASSERT_TRUE(remote.done()) << "the future of a fiber spawned from another thread was left pending";
  try {
    remote.result();
    ADD_FAILURE() << "a fiber that never started returned a value";
  } catch (const LoopClosed&) {
  } catch (const std::exception& e) {
    ADD_FAILURE() << "ended with " << e.what() << " instead of LoopClosed";
  }
  EXPECT_EQ(token.use_count(), 1) << "a fiber's function was not destroyed";
}

TEST(IOLoopDestructionTest, TenThousandSuspendedFibersAllUnwind) {
  constexpr int kFibers = 10000;
  int unwound = 0, closed = 0;
  Promise<void> never;
  auto never_f = never.get_future();
  std::vector<Future<void>> futures;
  const auto start = Clock::now();
  {
    IOLoop::Options options;
    options.stack_size = 64 * 1024;
    IOLoop loop(options);
    for (int i = 0; i < kFibers; ++i)
      futures.push_back(loop.spawn([&, i] {
        Counted guard(unwound);
        try {
          if (i % 3 == 0) wait_for_future(never_f);
          else if (i % 3 == 1) sleep_for(1h);
          else wait_for_future(never_f, 1h);
        } catch (const LoopClosed&) {
          ++closed;
          throw;
        }
      }));
    loop.run_sync([] { sleep_for(1ms); });
    EXPECT_EQ(loop.live_fibers(), static_cast<std::size_t>(kFibers));
  }
  EXPECT_EQ(unwound, kFibers);
  EXPECT_EQ(closed, kFibers);
  for (auto& f : futures) {
    ASSERT_TRUE(f.done());
    EXPECT_THROW(f.result(), LoopClosed);
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 20.0);
}

TEST(IOLoopDestructionTest, DestroyingALoopWithOnlyFinishedFibersIsQuiet) {
  const std::string printed = capture_stderr([] {
    for (int i = 0; i < 10; ++i) {
      IOLoop loop;
      auto f = loop.spawn([] { return 1; });
      EXPECT_EQ(loop.run_sync([&] { return wait_for_future(f); }), 1);
      EXPECT_EQ(loop.live_fibers(), 0u);
    }
  });
  EXPECT_EQ(printed, "") << "destroying a loop whose fibers had all finished printed something";
}

TEST(IOLoopDestructionTest, LoopDestroyedWhileAnotherThreadCompletesTheFuture) {
  // A fiber's future is completed from another thread just as its loop is destroyed:
  // the remote wake and the unwinding race. Either way the fiber must have ended by
  // the time ~IOLoop returns (with the value or with LoopClosed).
#if defined(__SANITIZE_THREAD__)
  constexpr int kRounds = 1000;
#else
  constexpr int kRounds = 10000;
#endif
  int not_finished = 0, got_value = 0, got_closed = 0;
  for (int round = 0; round < kRounds; ++round) {
    Promise<int> p;
    auto f = p.get_future();
    Future<int> fiber;
    std::atomic<bool> go{false};
    std::jthread completer([&] {
      while (!go.load(std::memory_order_acquire)) {
      }
      p.set_value(7);
    });
    {
      IOLoop loop;
      fiber = loop.spawn([f] { return wait_for_future(f); });
      loop.run_sync([] {});
      go.store(true, std::memory_order_release);
    }  // ~IOLoop, while the completer sets the value
    completer.join();
    if (!fiber.done()) {
      ++not_finished;
    } else if (fiber.exception()) {
      EXPECT_THROW(fiber.result(), LoopClosed);
      ++got_closed;
    } else {
      EXPECT_EQ(fiber.result(), 7);
      ++got_value;
    }
  }
  EXPECT_EQ(not_finished, 0) << "fibers left behind (orphaned, future never completed) by ~IOLoop in " << not_finished
                             << " of " << kRounds << " rounds";
  std::printf("[          ] %d rounds: %d ended with the value, %d with LoopClosed, %d left unfinished\n", kRounds,
              got_value, got_closed, not_finished);
}


// A fiber waiting on a job of the user's own pool when its loop is destroyed: the job
// may reference the fiber's stack, so the fiber resumes only once the job has run —
// whether it was running or still queued then. (Before: unwound at once, while the
// jobs ran on; the queued one then wrote into a destroyed string.)
TEST(IOLoopDestructionTest, FiberWaitingOnAThreadPoolJobUnwindsOnlyAfterTheJobRan) {
  ThreadPoolExecutor pool(1);  // outlives the loop
  std::atomic<bool> closing{false}, running_started{false};
  std::atomic<bool> running_finished{false}, queued_finished{false};
  bool running_finished_when_unwound = false, queued_finished_when_unwound = false;
  struct Witness {
    const std::atomic<bool>& finished;
    bool& finished_when_unwound;
    ~Witness() { finished_when_unwound = finished.load(); }
  };
  {
    IOLoop loop;
    testing::signal_when_closing(loop, closing);
    (void)loop.spawn([&] {
      Witness witness{running_finished, running_finished_when_unwound};
      std::string on_stack = "running";
      wait_for_future(pool.submit([&] {
        running_started = true;
        testing::wait_until(closing);
        std::this_thread::sleep_for(20ms);
        on_stack += " job";
        running_finished = true;
      }));
      sleep_for(1h);  // the loop is closing: throws LoopClosed
    });
    (void)loop.spawn([&] {
      Witness witness{queued_finished, queued_finished_when_unwound};
      std::string on_stack = "queued";
      wait_for_future(pool.submit([&] {  // queued behind the running job (one thread)
        on_stack += " job";
        queued_finished = true;
      }));
    });
    loop.run_sync([&] {
      while (!running_started) sleep_for(1ms);
    });
  }
  EXPECT_TRUE(running_finished_when_unwound) << "unwound while its running pool job still ran";
  EXPECT_TRUE(queued_finished_when_unwound) << "unwound while its pool job was still queued";
}

}  // namespace
}  // namespace fiberloop
