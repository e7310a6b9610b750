// wait_for_future() in each of its four situations, the timeout overload,
// with_timeout() and sleep_for().

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <boost/fiber/operations.hpp>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::CustomError;
using testing::elapsed_ms;
using testing::Pipe;
using testing::ReportLog;
using testing::Ticker;

class WaitForFutureTest : public testing::LoopTest {};

/// A future that a helper thread completes (with -1) after `after`, or as soon as
/// this object is destroyed. A wait that must throw but blocks instead then returns
/// late with a value, failing the test rather than hanging it.
class RescueThread {
 public:
  explicit RescueThread(std::chrono::milliseconds after)
      : thread_([this, after] {
          {
            std::unique_lock lock(mutex_);
            released_cv_.wait_for(lock, after, [this] { return released_; });
          }
          promise_.set_value(-1);
        }) {}
  ~RescueThread() {
    {
      std::lock_guard lock(mutex_);
      released_ = true;
    }
    released_cv_.notify_one();
    thread_.join();
  }
  Future<int> future() const { return future_; }

 private:
  std::mutex mutex_;
  std::condition_variable released_cv_;
  bool released_ = false;
  Promise<int> promise_;
  Future<int> future_ = promise_.get_future();
  std::thread thread_;  // last: starts once the members above exist
};

/// Runs `call` and checks it throws BlockingCallError at once, with a message that
/// points to spawn() and run_sync().
void expect_blocking_call_error(const char* what, const std::function<void()>& call) {
  const auto start = Clock::now();
  try {
    call();
    ADD_FAILURE() << what << " returned instead of throwing BlockingCallError";
  } catch (const BlockingCallError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("spawn()"), std::string::npos) << what << ": " << message;
    EXPECT_NE(message.find("run_sync()"), std::string::npos) << what << ": " << message;
  }
  EXPECT_LT(elapsed_ms(start), 500.0) << what << " blocked before throwing";
}

/// Busy-waits, so a completion lands at an arbitrary point of the waiter's work.
void spin_for(std::chrono::nanoseconds d) {
  const auto until = Clock::now() + d;
  while (Clock::now() < until) {
  }
}

/// How the rounds of race_timeouts_against_completions() whose completion was aimed
/// at the deadline ended.
struct RaceOutcomes {
  int in_time = 0;
  int timed_out = 0;
};

/// Races `wait(f, limit)` (a wait with a timeout) against the completion of `f` by a
/// thread of `pool`, for `rounds` rounds of three kinds in turn:
///  - completed within 100 µs against a 10 s timeout: must return the value;
///  - completed only once the wait has thrown, against a 100 µs timeout: must time out;
///  - completed around the moment the 100 µs deadline passes: either may win.
/// The first two check both outcomes on every run, however loaded the machine; the
/// third is the race itself. Every round, `f` ends with its own value and a timeout
/// never fires early. Returns how the third kind ended.
template <class Wait>
RaceOutcomes race_timeouts_against_completions(ThreadPoolExecutor& pool, int rounds, unsigned seed, Wait wait) {
  enum class Kind { in_time, late, around_the_deadline };
  constexpr std::chrono::microseconds kShort(100);
  std::mt19937 rng(seed);
  RaceOutcomes close;
  for (int i = 0; i < rounds && !::testing::Test::HasFailure(); ++i) {
    const auto kind = static_cast<Kind>(i % 3);
    const std::chrono::nanoseconds limit = kind == Kind::in_time ? std::chrono::nanoseconds(10s) : kShort;
    auto p = std::make_shared<Promise<int>>();
    Future<int> f = p->get_future();
    auto timed_out_seen = std::make_shared<std::atomic<bool>>(false);
    const auto start = Clock::now();
    // Spread over the 100 µs before the deadline and the 200 µs after it, in which
    // the waiter wakes (a completion that lands before it resumes still wins).
    const auto aim = start + std::chrono::microseconds(rng() % 300);
    const auto delay = std::chrono::microseconds(rng() % 100);
    auto job = pool.submit([p, timed_out_seen, kind, aim, delay, i] {
      if (kind == Kind::in_time) spin_for(delay);
      if (kind == Kind::around_the_deadline) spin_for(aim - Clock::now());
      if (kind == Kind::late) {  // a wait that never times out is caught by its 10 s spare
        const auto give_up = Clock::now() + 10s;
        while (!timed_out_seen->load() && Clock::now() < give_up) std::this_thread::yield();
      }
      p->set_value(i);
    });
    bool timed_out = false;
    try {
      EXPECT_EQ(wait(f, limit), i) << "round " << i;
    } catch (const TimeoutError&) {
      timed_out = true;
      const std::chrono::nanoseconds waited = Clock::now() - start;
      EXPECT_GE(waited.count(), limit.count()) << "round " << i << ": the timeout fired early";
    }
    timed_out_seen->store(true);
    switch (kind) {
      case Kind::in_time:
        EXPECT_FALSE(timed_out) << "round " << i << ": timed out with 10 s to spare";
        break;
      case Kind::late:
        EXPECT_TRUE(timed_out) << "round " << i << ": returned before the future was completed";
        break;
      case Kind::around_the_deadline:
        ++(timed_out ? close.timed_out : close.in_time);
        break;
    }
    EXPECT_EQ(wait_for_future(f), i) << "round " << i << ": the timeout touched the future";
    wait_for_future(job);
  }
  return close;
}

static_assert(std::is_base_of_v<std::logic_error, BlockingCallError>);
static_assert(std::is_base_of_v<Error, TimeoutError>);

// ---- (1) a done future ---------------------------------------------------------

TEST_F(WaitForFutureTest, DoneFutureInFiberReturnsWithoutSwitching) {
  run_in_fiber([&] {
    bool other_ran = false;
    auto other = loop_.spawn([&] { other_ran = true; });  // ready, not yet run
    EXPECT_EQ(wait_for_future(make_ready_future(5)), 5);
    wait_for_future(make_ready_future());
    try {
      wait_for_future(make_exceptional_future<int>(std::make_exception_ptr(CustomError(3))));
      ADD_FAILURE() << "no exception";
    } catch (const CustomError& e) {
      EXPECT_EQ(e.code(), 3);
    }
    EXPECT_FALSE(other_ran) << "waiting on a done future let another fiber run";
    wait_for_future(other);
    EXPECT_TRUE(other_ran);
  });
}

TEST_F(WaitForFutureTest, DoneFutureInCallbackReturnsInsteadOfThrowingBlockingCallError) {
  run_in_fiber([&] {
    Promise<void> checked;
    loop_.add_callback([&] {
      EXPECT_FALSE(in_fiber());
      EXPECT_EQ(wait_for_future(make_ready_future(std::string("ok"))), "ok");
      EXPECT_EQ(wait_for_future(make_ready_future(1), 1ms), 1);
      EXPECT_THROW(wait_for_future(make_exceptional_future<void>(std::make_exception_ptr(CustomError(1)))),
                   CustomError);
      checked.set_value();
    });
    wait_for_future(checked.get_future());
  });
}

TEST_F(WaitForFutureTest, DoneFutureOnPlainThreadReturnsAtOnce) {
  std::jthread([] {
    EXPECT_EQ(wait_for_future(make_ready_future(8)), 8);
    EXPECT_THROW(wait_for_future(make_exceptional_future<int>(std::make_exception_ptr(CustomError(2)))), CustomError);
  });
}

// ---- (2) in a fiber --------------------------------------------------------------

TEST_F(WaitForFutureTest, InFiberSuspendsOnlyThatFiberWhileTheLoopRunsEverythingElse) {
  Pipe pipe;
  run_in_fiber([&] {
    const auto loop_thread = std::this_thread::get_id();
    bool fiber_ran = false, callback_ran = false, timer_ran = false, handler_ran = false;
    Promise<int> p;
    auto f = p.get_future();
    auto other = loop_.spawn([&] {
      fiber_ran = true;
      return 1;
    });
    loop_.add_callback([&] { callback_ran = true; });
    // timer -> pipe -> fd handler -> promise: each link runs only if the loop does.
    loop_.call_later(5ms, [&] {
      timer_ran = true;
      pipe.write_byte();
    });
    loop_.add_handler(pipe.read_fd, Events::read, [&](int fd, Events) {
      pipe.read_byte();
      handler_ran = true;
      loop_.remove_handler(fd);
      p.set_value(42);
    });
    EXPECT_EQ(wait_for_future(f), 42);
    EXPECT_TRUE(fiber_ran);
    EXPECT_TRUE(callback_ran);
    EXPECT_TRUE(timer_ran);
    EXPECT_TRUE(handler_ran);
    EXPECT_EQ(std::this_thread::get_id(), loop_thread);
    EXPECT_TRUE(in_fiber());
    EXPECT_EQ(wait_for_future(other), 1);
  });
}

TEST_F(WaitForFutureTest, ManyFibersWaitAtOnceAndResumeAsTheirFuturesComplete) {
  run_in_fiber([&] {
    constexpr int kFibers = 100;
    std::vector<Promise<int>> promises(kFibers);
    std::vector<Future<int>> results;
    std::vector<int> resumed;
    for (int i = 0; i < kFibers; ++i)
      results.push_back(loop_.spawn([&, i, f = promises[i].get_future()] {
        const int v = wait_for_future(f);
        resumed.push_back(i);
        return v * 2;
      }));
    sleep_for(1ms);
    EXPECT_TRUE(resumed.empty());
    // Complete in reverse: each fiber resumes when its own future completes.
    for (int i = kFibers - 1; i >= 0; --i) loop_.add_callback([&, i] { promises[i].set_value(i); });
    for (int i = 0; i < kFibers; ++i) EXPECT_EQ(wait_for_future(results[i]), 2 * i);
    ASSERT_EQ(resumed.size(), static_cast<std::size_t>(kFibers));
    std::sort(resumed.begin(), resumed.end());
    for (int i = 0; i < kFibers; ++i) EXPECT_EQ(resumed[i], i);
  });
}

TEST_F(WaitForFutureTest, ExceptionKeepsItsDynamicType) {
  run_in_fiber([&] {
    Promise<int> p;
    auto f = p.get_future();
    loop_.call_later(1ms, [&] { p.set_exception(std::make_exception_ptr(CustomError(77))); });
    try {
      wait_for_future(f);
      ADD_FAILURE() << "no exception";
    } catch (const CustomError& e) {
      EXPECT_EQ(e.code(), 77);
      EXPECT_STREQ(e.what(), "custom error 77");
    }
    // And again: the stored exception stays for every waiter.
    EXPECT_THROW(wait_for_future(f), CustomError);
  });
}

TEST_F(WaitForFutureTest, ExceptionFromAnotherThreadKeepsItsDynamicType) {
  run_in_fiber([&] {
    Promise<void> p;
    auto f = p.get_future();
    std::jthread completer([&] {
      std::this_thread::sleep_for(2ms);
      p.set_exception(std::make_exception_ptr(CustomError(9)));
    });
    try {
      wait_for_future(f);
      ADD_FAILURE() << "no exception";
    } catch (const CustomError& e) {
      EXPECT_EQ(e.code(), 9);
    }
  });
}

TEST_F(WaitForFutureTest, BrokenPromiseFailsTheWaiter) {
  run_in_fiber([&] {
    auto p = std::make_unique<Promise<int>>();
    auto f = p->get_future();
    loop_.call_later(1ms, [&] { p.reset(); });
    EXPECT_THROW(wait_for_future(f), BrokenPromise);
  });
}

TEST_F(WaitForFutureTest, BrokenPromiseOnAnotherThreadFailsTheWaiter) {
  run_in_fiber([&] {
    auto p = std::make_unique<Promise<std::string>>();
    auto f = p->get_future();
    std::jthread breaker([p = std::move(p)]() mutable {
      std::this_thread::sleep_for(2ms);
      p.reset();
    });
    EXPECT_THROW(wait_for_future(f), BrokenPromise);
  });
}

TEST_F(WaitForFutureTest, CompletionFromOtherThreadsResumesFibersOnTheLoopThread) {
  constexpr int kFibers = 400;
  ThreadPoolExecutor pool(4);
  std::vector<std::jthread> plain_threads;
  run_in_fiber([&] {
    const auto loop_thread = std::this_thread::get_id();
    std::vector<Future<void>> fibers;
    std::atomic<int> completed_elsewhere{0};
    for (int i = 0; i < kFibers; ++i) {
      fibers.push_back(loop_.spawn([&, i] {
        auto p = std::make_shared<Promise<int>>();
        auto f = p->get_future();
        auto job = [p, i, loop_thread, &completed_elsewhere] {
          if (std::this_thread::get_id() != loop_thread) ++completed_elsewhere;
          p->set_value(i);
        };
        if (i % 4 == 0) {
          plain_threads.emplace_back(job);  // a plain OS thread
        } else {
          auto submitted = pool.submit(job);
        }
        EXPECT_EQ(wait_for_future(f), i);
        EXPECT_EQ(std::this_thread::get_id(), loop_thread);
      }));
    }
    for (auto& f : fibers) wait_for_future(f);
    EXPECT_EQ(completed_elsewhere.load(), kFibers);
  });
}

TEST_F(WaitForFutureTest, WaitInsideCatchBlocksKeepsEachFibersCurrentException) {
  // The common retry pattern `catch (...) { sleep_for(backoff); ... throw; }` in two
  // fibers whose waits end in the other order (not LIFO). The C++ runtime keeps the
  // "currently caught" exceptions in one per-thread stack; each fiber must see its
  // own, as if it ran on its own thread.
  run_in_fiber([&] {
    Promise<void> resume_a, resume_b;
    auto fa = resume_a.get_future(), fb = resume_b.get_future();
    Promise<void> b_caught;
    auto fiber = [](int code, Future<void> resume, Promise<void>* caught) {
      try {
        throw CustomError(code);
      } catch (const CustomError& e) {
        if (caught) caught->set_value();
        wait_for_future(resume);
        EXPECT_EQ(e.code(), code);
        const std::exception_ptr current = std::current_exception();
        try {
          std::rethrow_exception(current);
        } catch (const CustomError& seen) {
          EXPECT_EQ(seen.code(), code) << "std::current_exception() is another fiber's exception";
        }
        throw;  // rethrows the one this handler caught
      }
    };
    auto a = loop_.spawn([&] { fiber(1, fa, nullptr); });
    auto b = loop_.spawn([&] { fiber(2, fb, &b_caught); });
    wait_for_future(b_caught.get_future());  // a and b both wait inside their handlers
    resume_a.set_value();                    // a leaves its handler first, b is still in its
    try {
      wait_for_future(a);
      ADD_FAILURE() << "no exception";
    } catch (const CustomError& e) {
      EXPECT_EQ(e.code(), 1) << "fiber a rethrew another fiber's exception";
    }
    resume_b.set_value();
    try {
      wait_for_future(b);
      ADD_FAILURE() << "no exception";
    } catch (const CustomError& e) {
      EXPECT_EQ(e.code(), 2) << "fiber b rethrew another fiber's exception";
    }
    EXPECT_FALSE(std::current_exception()) << "an exception was left on the thread's caught stack";
  });
}

TEST_F(WaitForFutureTest, UncaughtExceptionsCountIsPerFiber) {
  // A fiber waits in a destructor while its stack unwinds (a guard flushing on
  // error); meanwhile another fiber, with nothing in flight, must see
  // std::uncaught_exceptions() == 0 (scope-success guards rely on it).
  run_in_fiber([&] {
    Promise<void> resume;
    auto resume_f = resume.get_future();
    Promise<void> unwinding;
    struct WaitsWhileUnwinding {
      Future<void> resume;
      Promise<void>* unwinding;
      ~WaitsWhileUnwinding() {
        EXPECT_EQ(std::uncaught_exceptions(), 1);
        unwinding->set_value();
        wait_for_future(resume);
        EXPECT_EQ(std::uncaught_exceptions(), 1);
      }
    };
    auto a = loop_.spawn([&] {
      WaitsWhileUnwinding guard{resume_f, &unwinding};
      throw CustomError(5);
    });
    wait_for_future(unwinding.get_future());
    int seen_by_other = -1;
    wait_for_future(loop_.spawn([&] { seen_by_other = std::uncaught_exceptions(); }));
    EXPECT_EQ(seen_by_other, 0) << "another fiber's unwinding leaked into this fiber";
    EXPECT_EQ(std::uncaught_exceptions(), 0);
    resume.set_value();
    EXPECT_THROW(wait_for_future(a), CustomError);
    EXPECT_EQ(std::uncaught_exceptions(), 0);
  });
}

// ---- (3) on the loop thread outside a fiber ------------------------------------

TEST_F(WaitForFutureTest, InCallbackDuringRunSyncThrowsBlockingCallError) {
  RescueThread rescue(2s);
  run_in_fiber([&] {
    Promise<void> checked;
    auto check_all = [&](const char* where) {
      EXPECT_FALSE(in_fiber()) << where;
      expect_blocking_call_error("wait_for_future()", [&] { (void)wait_for_future(rescue.future()); });
      expect_blocking_call_error("wait_for_future(f, timeout)", [&] { (void)wait_for_future(rescue.future(), 10s); });
      expect_blocking_call_error("sleep_for()", [] { sleep_for(1ms); });
    };
    loop_.add_callback([&] {
      check_all("callback");
      loop_.call_later(1ms, [&] {
        check_all("timeout");
        checked.set_value();
      });
    });
    wait_for_future(checked.get_future());
    EXPECT_FALSE(rescue.future().done());
  });
}

TEST_F(WaitForFutureTest, InFdHandlerThrowsBlockingCallError) {
  RescueThread rescue(2s);
  Pipe pipe;
  run_in_fiber([&] {
    Promise<void> checked;
    loop_.add_handler(pipe.write_fd, Events::write, [&](int fd, Events) {
      loop_.remove_handler(fd);
      expect_blocking_call_error("wait_for_future() in a handler", [&] { (void)wait_for_future(rescue.future()); });
      checked.set_value();
    });
    wait_for_future(checked.get_future());
  });
}

TEST_F(WaitForFutureTest, InCallbackDuringStartThrowsBlockingCallErrorAsLogicError) {
  RescueThread rescue(2s);
  bool caught = false;
  loop_.add_callback([&] {
    try {
      (void)wait_for_future(rescue.future());
    } catch (const std::logic_error& e) {  // BlockingCallError is a logic_error
      caught = dynamic_cast<const BlockingCallError*>(&e) != nullptr;
      const std::string message = e.what();
      EXPECT_NE(message.find("spawn()"), std::string::npos) << message;
      EXPECT_NE(message.find("run_sync()"), std::string::npos) << message;
    }
    loop_.stop();
  });
  const auto start = Clock::now();
  loop_.start();
  EXPECT_TRUE(caught);
  EXPECT_LT(elapsed_ms(start), 500.0);
}

// ---- (4) a thread with no running loop -------------------------------------------

TEST_F(WaitForFutureTest, PlainThreadBlocksUntilTheLoopCompletesTheFuture) {
  for (const bool from_fiber : {false, true}) {
    SCOPED_TRACE(from_fiber ? "completed by a fiber" : "completed by a callback");
    constexpr int kWaiters = 4;
    std::atomic<bool> set{false};
    std::vector<Promise<int>> seen(kWaiters);
    std::vector<Future<int>> seen_f;
    for (auto& s : seen) seen_f.push_back(s.get_future());
    Promise<int> p;
    auto f = p.get_future();
    {
      std::vector<std::jthread> waiters;
      // Destroyed before the waiters are joined: if the test fails before p is set,
      // the waiters wake with an error instead of hanging the join.
      struct FailIfUnset {
        Promise<int>& promise;
        ~FailIfUnset() {
          try {
            promise.set_exception(std::make_exception_ptr(std::runtime_error("the test did not complete p")));
          } catch (const PromiseAlreadySatisfied&) {
          }
        }
      } fail_if_unset{p};
      for (int w = 0; w < kWaiters; ++w)
        waiters.emplace_back([&, w] {
          try {
            const int v = wait_for_future(f);  // blocks this thread
            EXPECT_TRUE(set.load()) << "returned before the future was completed";
            EXPECT_FALSE(in_fiber());
            seen[w].set_value(v);
          } catch (...) {
            seen[w].set_exception(std::current_exception());
          }
        });
      run_in_fiber([&] {
        sleep_for(20ms);  // the waiters block meanwhile
        for (auto& s : seen_f) EXPECT_FALSE(s.done());
        if (from_fiber) {
          auto setter = loop_.spawn([&] {
            set = true;
            p.set_value(5);
          });
        } else {
          loop_.add_callback([&] {
            set = true;
            p.set_value(5);
          });
        }
        for (auto& s : seen_f) EXPECT_EQ(wait_for_future(s, 5s), 5);
      });
    }
  }
}

TEST_F(WaitForFutureTest, MainThreadWithAnIdleLoopBlocks) {
  // A loop exists on this thread but does not run: waiting blocks the thread until
  // the completer, which first sleeps 10 ms, sets the value.
  Promise<int> p;
  auto f = p.get_future();
  // Read before the completer starts, so its whole sleep lies after `start` however
  // late this thread gets the CPU back (the wait may even begin on a done future).
  const auto start = Clock::now();
  std::jthread completer([&] {
    std::this_thread::sleep_for(10ms);
    p.set_value(3);
  });
  EXPECT_EQ(wait_for_future(f, 5s), 3);
  // 1 ms spare: the sleep is timed on CLOCK_REALTIME, the elapsed time on the steady clock.
  EXPECT_GE(elapsed_ms(start), 9.0);
}

// ---- the timeout overload -----------------------------------------------------

TEST_F(WaitForFutureTest, TimeoutThrowsWhenLateAndLeavesTheFutureUntouched) {
  run_in_fiber([&] {
    Promise<int> p;
    auto f = p.get_future();
    const auto start = Clock::now();
    EXPECT_THROW(wait_for_future(f, 20ms), TimeoutError);
    const double waited = elapsed_ms(start);
    EXPECT_GE(waited, 19.0);
    EXPECT_LT(waited, 1000.0);
    EXPECT_FALSE(f.done());
    // The future still completes and can be waited for again, with and without a timeout.
    loop_.call_later(5ms, [&] { p.set_value(9); });
    EXPECT_EQ(wait_for_future(f), 9);
    EXPECT_EQ(wait_for_future(f, 1ms), 9);
    EXPECT_EQ(f.result(), 9);
  });
}

TEST_F(WaitForFutureTest, TimeoutReturnsTheValueWhenInTime) {
  run_in_fiber([&] {
    Promise<std::string> p;
    auto f = p.get_future();
    loop_.call_later(5ms, [&] { p.set_value("in time"); });
    const auto start = Clock::now();
    EXPECT_EQ(wait_for_future(f, 5s), "in time");
    EXPECT_LT(elapsed_ms(start), 1000.0);
    // The expired wait's timer must not disturb the fiber's next waits.
    Promise<int> q;
    auto g = q.get_future();
    loop_.call_later(30ms, [&] { q.set_value(1); });
    Promise<void> r;
    auto h = r.get_future();
    loop_.call_later(10ms, [&] { r.set_exception(std::make_exception_ptr(CustomError(4))); });
    EXPECT_THROW(wait_for_future(h, 20ms), CustomError);
    EXPECT_EQ(wait_for_future(g), 1);
  });
}

TEST_F(WaitForFutureTest, TimeoutOnPlainThread) {
  std::jthread([] {
    Promise<int> p;
    auto f = p.get_future();
    const auto start = Clock::now();
    EXPECT_THROW(wait_for_future(f, 20ms), TimeoutError);
    EXPECT_GE(elapsed_ms(start), 19.0);
    EXPECT_FALSE(f.done());
    std::jthread completer([&] {
      std::this_thread::sleep_for(5ms);
      p.set_value(2);
    });
    EXPECT_EQ(wait_for_future(f, 5s), 2);
  });
}

TEST_F(WaitForFutureTest, TimeoutRacingCompletionFromAnotherThreadInFiber) {
  ThreadPoolExecutor pool(1);
  RaceOutcomes close{};
  run_in_fiber(
      [&] {
        close = race_timeouts_against_completions(pool, 2000, 12345, [](Future<int> f, std::chrono::nanoseconds limit) {
          return wait_for_future(f, limit);
        });
      },
      60s);
  std::printf("[          ] fiber, completions around the deadline: %d in time, %d timed out\n", close.in_time,
              close.timed_out);
}

TEST_F(WaitForFutureTest, TimeoutRacingCompletionFromAnotherThreadOnPlainThread) {
  RaceOutcomes close{};
  std::jthread([&] {
    ThreadPoolExecutor pool(1);
    close = race_timeouts_against_completions(pool, 2000, 54321, [](Future<int> f, std::chrono::nanoseconds limit) {
      return wait_for_future(f, limit);
    });
  });
  std::printf("[          ] plain thread, completions around the deadline: %d in time, %d timed out\n",
              close.in_time, close.timed_out);
}

TEST_F(WaitForFutureTest, ZeroAndNegativeTimeoutsThrowAtOnceOnAPendingFuture) {
  run_in_fiber([&] {
    Promise<int> p;
    auto f = p.get_future();
    const auto start = Clock::now();
    EXPECT_THROW(wait_for_future(f, 0ms), TimeoutError);
    EXPECT_THROW(wait_for_future(f, -5ms), TimeoutError);
    EXPECT_THROW(wait_for_future(with_timeout(f, 0ms)), TimeoutError);
    sleep_for(0ms);
    sleep_for(-1s);
    EXPECT_LT(elapsed_ms(start), 500.0);
    EXPECT_FALSE(f.done());
    p.set_value(1);
    EXPECT_EQ(wait_for_future(f, 0ms), 1);  // done: no timeout can apply
  });
}

// ---- with_timeout --------------------------------------------------------------

TEST_F(WaitForFutureTest, WithTimeoutCompletesLikeTheFuture) {
  run_in_fiber([&] {
    Promise<int> p;
    auto f = p.get_future();
    auto t = with_timeout(f, 5s);
    loop_.call_later(5ms, [&] { p.set_value(11); });
    EXPECT_EQ(wait_for_future(t), 11);

    Promise<void> q;
    auto g = q.get_future();
    auto u = with_timeout(g, 5s);
    loop_.call_later(1ms, [&] { q.set_exception(std::make_exception_ptr(CustomError(5))); });
    try {
      wait_for_future(u);
      ADD_FAILURE() << "no exception";
    } catch (const CustomError& e) {
      EXPECT_EQ(e.code(), 5);
    }

    auto done = with_timeout(make_ready_future(4), 1ms);
    EXPECT_TRUE(done.done());
    EXPECT_EQ(done.result(), 4);
  });
}

TEST_F(WaitForFutureTest, WithTimeoutFailsWithTimeoutErrorAndLeavesTheFutureUntouched) {
  run_in_fiber([&] {
    Promise<int> p;
    auto f = p.get_future();
    const auto start = Clock::now();
    auto t = with_timeout(f, 20ms);
    EXPECT_THROW(wait_for_future(t), TimeoutError);
    EXPECT_GE(elapsed_ms(start), 19.0);
    EXPECT_FALSE(f.done());
    p.set_value(3);  // completing it later touches nothing of the timed-out race
    EXPECT_EQ(wait_for_future(f), 3);
    EXPECT_THROW(t.result(), TimeoutError);
  });
}

TEST_F(WaitForFutureTest, WithTimeoutFutureCompletedFromAnotherThread) {
  ReportLog reports(loop_);
  run_in_fiber([&] {
    std::vector<Future<int>> results;
    for (int i = 0; i < 50; ++i) {
      Promise<int> p;
      auto f = p.get_future();
      // Even rounds: completed while this fiber waits, long before the deadline.
      // Odd rounds: completed while the loop thread waits for the completer, so the
      // race is settled before the loop can run the 20 ms timer, which fires later.
      const bool settled_before_the_timer = i % 2 == 1;
      auto t = with_timeout(f, settled_before_the_timer ? std::chrono::nanoseconds(20ms) : std::chrono::nanoseconds(10s));
      std::jthread completer([&] { p.set_value(i); });
      if (settled_before_the_timer) {
        completer.join();
        EXPECT_TRUE(t.done()) << "round " << i << ": the completion on another thread did not settle the race";
      }
      EXPECT_EQ(wait_for_future(t), i);
      results.push_back(t);
    }
    sleep_for(30ms);  // the 20 ms timers fire now, on races already settled
    for (int i = 0; i < 50; ++i) EXPECT_EQ(results[i].result(), i) << "a late timer changed a settled result";
  });
  EXPECT_TRUE(reports.entries().empty()) << "a late timer reported an error";
}

TEST_F(WaitForFutureTest, WithTimeoutRacingCompletionFromAnotherThread) {
  // The completing thread and the loop's timer race to settle the result; exactly
  // one wins, and `f` itself always ends with its own value.
  ThreadPoolExecutor pool(1);
  RaceOutcomes close{};
  run_in_fiber(
      [&] {
        close = race_timeouts_against_completions(pool, 2000, 777, [](Future<int> f, std::chrono::nanoseconds limit) {
          return wait_for_future(with_timeout(f, limit));
        });
        sleep_for(1ms);  // timers of races the completion won fire harmlessly
      },
      60s);
  std::printf("[          ] with_timeout, completions around the deadline: %d in time, %d timed out\n",
              close.in_time, close.timed_out);
}

// ---- sleep_for ------------------------------------------------------------------

TEST_F(WaitForFutureTest, SleepForSuspendsOnlyThatFiber) {
  run_in_fiber([&] {
    Ticker ticker(loop_);
    Clock::time_point slept_from, slept_until;
    wait_for_future(loop_.spawn([&] {
      slept_from = Clock::now();
      sleep_for(40ms);
      slept_until = Clock::now();
    }));
    ticker.stop();
    const double slept_ms = std::chrono::duration<double, std::milli>(slept_until - slept_from).count();
    EXPECT_GE(slept_ms, 39.0);
    EXPECT_TRUE(ticker.ran_between(slept_from, slept_until)) << "no other fiber ran while one slept";
  });
}

TEST_F(WaitForFutureTest, SleepsRunConcurrently) {
  run_in_fiber([&] {
    const auto start = Clock::now();
    std::vector<Future<void>> sleepers;
    for (int i = 1; i <= 20; ++i) sleepers.push_back(loop_.spawn([i] { sleep_for(std::chrono::milliseconds(2 * i)); }));
    for (auto& s : sleepers) wait_for_future(s);
    const double ms = elapsed_ms(start);
    EXPECT_GE(ms, 39.0);
    EXPECT_LT(ms, 300.0) << "sleeps ran one after another";  // the sum would be 420 ms
  });
}

TEST_F(WaitForFutureTest, SleepForOnPlainThreadSleepsTheThread) {
  std::jthread([] {
    const auto start = Clock::now();
    sleep_for(20ms);
    EXPECT_GE(elapsed_ms(start), 19.0);
  });
}


// ---- huge and negative timeouts (issue 16, item 3) -------------------------------

/// Each timeout of `check` against a future completed 10 ms later: a huge timeout
/// waits for it, it does not overflow into the past and fire at once.
template <class Check>
void for_each_huge_timeout(Check check) {
  check(std::chrono::nanoseconds::max(), "nanoseconds::max()");
  check(std::chrono::hours::max(), "hours::max()");
  check(std::chrono::seconds::max(), "seconds::max()");
  check(std::chrono::duration<double>(1e300), "duration<double>(1e300)");
}

template <class Check>
void for_each_most_negative_timeout(Check check) {
  check(std::chrono::nanoseconds::min(), "nanoseconds::min()");
  check(std::chrono::hours::min(), "hours::min()");
  check(std::chrono::seconds::min(), "seconds::min()");
  check(std::chrono::duration<double>(-1e300), "duration<double>(-1e300)");
  check(-1ns, "-1ns");
}

TEST_F(WaitForFutureTest, HugeTimeoutsWaitForTheFutureInsteadOfFiringAtOnce) {
  run_in_fiber([&] {
    for_each_huge_timeout([&](auto timeout, const char* name) {
      SCOPED_TRACE(name);
      auto p = std::make_shared<Promise<int>>();
      loop_.call_later(10ms, [p] { p->set_value(7); });
      EXPECT_EQ(wait_for_future(p->get_future(), timeout), 7);
      auto q = std::make_shared<Promise<int>>();
      auto timed = with_timeout(q->get_future(), timeout);
      loop_.call_later(10ms, [q] { q->set_value(8); });
      EXPECT_EQ(wait_for_future(timed), 8);
    });
  });
}

TEST_F(WaitForFutureTest, HugeTimeoutsOnAPlainThreadWaitForTheFuture) {
  for_each_huge_timeout([&](auto timeout, const char* name) {
    SCOPED_TRACE(name);
    Promise<int> p;
    auto f = p.get_future();
    std::thread completer([&] {
      std::this_thread::sleep_for(10ms);
      p.set_value(9);
    });
    EXPECT_EQ(wait_for_future(f, timeout), 9);
    completer.join();
  });
}

TEST_F(WaitForFutureTest, MostNegativeTimeoutsTimeOutAtOnce) {
  run_in_fiber([&] {
    Promise<int> never;
    auto f = never.get_future();
    for_each_most_negative_timeout([&](auto timeout, const char* name) {
      SCOPED_TRACE(name);
      const auto start = Clock::now();
      EXPECT_THROW(wait_for_future(f, timeout), TimeoutError);
      EXPECT_THROW(wait_for_future(with_timeout(f, timeout)), TimeoutError);
      sleep_for(timeout);
      EXPECT_LT(elapsed_ms(start), 1000.0);  // generous: "at once" is the next iteration
    });
    for_each_most_negative_timeout([&](auto timeout, const char* name) {  // on a plain thread
      SCOPED_TRACE(name);
      std::thread([&] {
        EXPECT_THROW(wait_for_future(f, timeout), TimeoutError);
        sleep_for(timeout);
      }).join();
    });
  });
}

TEST(SleepForHugeTest, HugeSleepsLastUntilTheLoopIsDestroyed) {
  std::vector<Future<void>> sleepers;
  {
    IOLoop loop;
    for_each_huge_timeout([&](auto timeout, const char*) {
      sleepers.push_back(loop.spawn([timeout] { sleep_for(timeout); }));
    });
    loop.run_sync([] { sleep_for(20ms); });
    for (auto& s : sleepers) EXPECT_FALSE(s.done()) << "a huge sleep_for ended at once";
  }
  for (auto& s : sleepers) EXPECT_THROW(s.result(), LoopClosed);
}

// ---- with_timeout and loops that come and go (issue 16, item 2) ------------------

// Timer ids start over in every loop, and a loop may be built where the last one was:
// the done callback of a with_timeout made on a destroyed loop must not remove the
// timer the next loop gave the same id. (Before: `fired` stayed false.)
TEST(WithTimeoutLoopsTest, CompletionAfterItsLoopIsGoneLeavesTheNextLoopsTimersAlone) {
  Promise<int> p;
  Future<int> timed;
  std::optional<IOLoop> loop;
  loop.emplace();
  loop->run_sync([&] { timed = with_timeout(p.get_future(), 10s); });
  loop.reset();
  loop.emplace();  // in the same storage
  bool fired = false;
  loop->run_sync([&] {
    loop->call_later(5ms, [&] { fired = true; });
    p.set_value(1);
    sleep_for(20ms);
  });
  EXPECT_TRUE(fired) << "with_timeout removed a timer of another loop";
  ASSERT_TRUE(timed.done());
  EXPECT_EQ(timed.result(), 1);
}

// ---- no waiting inside done callbacks (issue 16, item 5) -------------------------

/// Runs `wait`, returning the message of the BlockingCallError it threw, or what
/// happened instead.
template <class Wait>
std::string blocking_call_error_of(Wait wait) {
  try {
    wait();
    return "returned";
  } catch (const BlockingCallError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("threw something else: ") + e.what();
  }
}

TEST_F(WaitForFutureTest, WaitingInsideADoneCallbackThrowsBlockingCallError) {
  run_in_fiber([&] {
    Promise<int> never;
    auto pending = never.get_future();
    std::vector<std::string> errors;
    Promise<int> p;
    p.get_future().add_done_callback([&](const Future<int>&) {
      errors.push_back(blocking_call_error_of([&] { wait_for_future(pending, 50ms); }));
      errors.push_back(blocking_call_error_of([&] { wait_for_future(pending); }));
      errors.push_back(blocking_call_error_of([&] { sleep_for(1ms); }));
      errors.push_back(blocking_call_error_of([&] { run_blocking([] {}); }));
      // A done future needs no wait: allowed.
      EXPECT_EQ(wait_for_future(make_ready_future(3)), 3);
    });
    p.set_value(1);  // runs the callback here, on this fiber
    ASSERT_EQ(errors.size(), 4u);
    for (const auto& e : errors) EXPECT_NE(e.find("done callback"), std::string::npos) << e;
    sleep_for(1ms);  // outside the callback, the fiber waits as usual
  });
}

// On a plain thread a wait blocks that thread, done callback or not (the contract's
// rule for threads with no running loop): nothing there can be suspended half-way.
TEST_F(WaitForFutureTest, WaitingInsideADoneCallbackOnAPlainThreadBlocksThatThread) {
  Promise<int> later;
  auto pending = later.get_future();
  int got = 0;
  bool timed_out = false;
  Promise<int> p;
  p.get_future().add_done_callback([&](const Future<int>&) {
    got = wait_for_future(pending, 10s);
    try {
      Promise<int> never;
      (void)wait_for_future(never.get_future(), 1ms);
    } catch (const TimeoutError&) {
      timed_out = true;
    }
  });
  std::thread completer([&] {
    std::this_thread::sleep_for(10ms);
    later.set_value(7);
  });
  std::thread([&] { p.set_value(1); }).join();
  completer.join();
  EXPECT_EQ(got, 7);
  EXPECT_TRUE(timed_out);
}

// The rule follows the callback, not the thread: a callback that lets other fibers run
// (a Boost.Fiber yield) does not make their waits fail.
TEST_F(WaitForFutureTest, OtherFibersWaitNormallyWhileADoneCallbackYields) {
  run_in_fiber([&] {
    bool other_slept = false;
    auto other = loop_.spawn([&] {
      sleep_for(1ms);
      other_slept = true;
    });
    Promise<int> p;
    p.get_future().add_done_callback([&](const Future<int>&) {
      for (int i = 0; i < 1000 && !other_slept; ++i) boost::this_fiber::yield();
    });
    p.set_value(1);
    EXPECT_NO_THROW(wait_for_future(other));
    EXPECT_TRUE(other_slept);
  });
}

}  // namespace
}  // namespace fiberloop
