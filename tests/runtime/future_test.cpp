// Tests for Future<T> / Promise<T> (runtime/include/fiberloop/future.hpp).

#include <gtest/gtest.h>

#include <atomic>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fiberloop/fiberloop.hpp>

#include "support/helpers.hpp"

namespace fiberloop {
namespace {

using testing::capture_stderr;
using testing::CustomError;
using testing::ReportLog;

TEST(FutureTest, DefaultConstructedIsInvalid) {
  Future<int> f;
  EXPECT_FALSE(f.valid());
  EXPECT_FALSE(f.done());
  EXPECT_THROW((void)f.result(), FutureNotDone);
  EXPECT_THROW((void)f.exception(), FutureNotDone);
  Future<void> v;
  EXPECT_FALSE(v.valid());
  EXPECT_FALSE(v.done());
}

TEST(FutureTest, NotDoneUntilSetValue) {
  Promise<int> p;
  Future<int> f = p.get_future();
  EXPECT_TRUE(f.valid());
  EXPECT_FALSE(f.done());
  EXPECT_THROW((void)f.result(), FutureNotDone);
  EXPECT_THROW((void)f.exception(), FutureNotDone);
  p.set_value(42);
  EXPECT_TRUE(f.done());
  EXPECT_EQ(f.result(), 42);
  EXPECT_EQ(f.exception(), nullptr);
}

TEST(FutureTest, FutureNotDoneIsALogicError) {
  Promise<int> p;
  Future<int> f = p.get_future();
  EXPECT_THROW((void)f.result(), std::logic_error);
  p.set_value(1);
}

TEST(FutureTest, CopiesShareTheResult) {
  Promise<std::string> p;
  Future<std::string> a = p.get_future();
  Future<std::string> b = a;
  Future<std::string> c;
  c = b;
  p.set_value("shared");
  EXPECT_TRUE(a.done());
  EXPECT_TRUE(b.done());
  EXPECT_TRUE(c.done());
  EXPECT_EQ(a.result(), "shared");
  EXPECT_EQ(&a.result(), &c.result());
}

TEST(FutureTest, VoidFutureCompletes) {
  Promise<void> p;
  Future<void> f = p.get_future();
  EXPECT_FALSE(f.done());
  p.set_value();
  EXPECT_TRUE(f.done());
  EXPECT_NO_THROW(f.result());
  EXPECT_EQ(f.exception(), nullptr);
}

TEST(FutureTest, ResultRethrowsStoredException) {
  Promise<int> p;
  Future<int> f = p.get_future();
  p.set_exception(std::make_exception_ptr(std::runtime_error("boom")));
  ASSERT_TRUE(f.done());
  EXPECT_NE(f.exception(), nullptr);
  try {
    (void)f.result();
    FAIL() << "result() did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
  // Rethrows every time, not only the first.
  EXPECT_THROW((void)f.result(), std::runtime_error);
}

TEST(FutureTest, VoidResultRethrowsStoredException) {
  Promise<void> p;
  Future<void> f = p.get_future();
  p.set_exception(std::make_exception_ptr(std::out_of_range("range")));
  EXPECT_THROW(f.result(), std::out_of_range);
}

TEST(FutureTest, ExceptionKeepsItsDynamicType) {
  Promise<int> p;
  Future<int> f = p.get_future();
  p.set_exception(std::make_exception_ptr(CustomError("custom", 17)));
  try {
    (void)f.result();
    FAIL() << "result() did not throw";
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code(), 17);
    EXPECT_STREQ(e.what(), "custom");
  } catch (...) {
    FAIL() << "the exception lost its dynamic type";
  }
  try {
    std::rethrow_exception(f.exception());
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code(), 17);
  } catch (...) {
    FAIL() << "exception() lost the dynamic type";
  }
}

TEST(FutureTest, SecondSetValueThrowsPromiseAlreadySatisfied) {
  Promise<int> p;
  Future<int> f = p.get_future();
  p.set_value(1);
  EXPECT_THROW(p.set_value(2), PromiseAlreadySatisfied);
  EXPECT_THROW(p.set_exception(std::make_exception_ptr(std::runtime_error("late"))), PromiseAlreadySatisfied);
  EXPECT_EQ(f.result(), 1);
  EXPECT_EQ(f.exception(), nullptr);
}

TEST(FutureTest, SecondSetExceptionThrowsPromiseAlreadySatisfied) {
  Promise<void> p;
  Future<void> f = p.get_future();
  p.set_exception(std::make_exception_ptr(CustomError("first", 1)));
  EXPECT_THROW(p.set_exception(std::make_exception_ptr(CustomError("second", 2))), PromiseAlreadySatisfied);
  EXPECT_THROW(p.set_value(), PromiseAlreadySatisfied);
  try {
    f.result();
    FAIL();
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code(), 1);
  }
}

TEST(FutureTest, PromiseAlreadySatisfiedIsALogicError) {
  Promise<int> p;
  p.set_value(1);
  EXPECT_THROW(p.set_value(2), std::logic_error);
}

TEST(FutureTest, GetFutureTwiceThrowsLogicError) {
  Promise<int> p;
  Future<int> f = p.get_future();
  EXPECT_THROW((void)p.get_future(), std::logic_error);
  p.set_value(5);
  EXPECT_EQ(f.result(), 5);
}

TEST(FutureTest, DestroyedUnsetPromiseBreaksTheFuture) {
  Future<int> f;
  {
    Promise<int> p;
    f = p.get_future();
    EXPECT_FALSE(f.done());
  }
  ASSERT_TRUE(f.done());
  EXPECT_THROW((void)f.result(), BrokenPromise);
  EXPECT_THROW((void)f.result(), Error);
}

TEST(FutureTest, DestroyedUnsetVoidPromiseRunsCallbacksWithBrokenPromise) {
  std::exception_ptr seen;
  bool called = false;
  {
    Promise<void> p;
    p.get_future().add_done_callback([&](const Future<void>& f) {
      called = true;
      seen = f.exception();
    });
  }
  ASSERT_TRUE(called);
  EXPECT_THROW(std::rethrow_exception(seen), BrokenPromise);
}

TEST(FutureTest, MovedFromPromiseDoesNotBreakTheFuture) {
  Promise<int> a;
  Future<int> f = a.get_future();
  Promise<int> b(std::move(a));
  {
    Promise<int> dead(std::move(a));  // moved-from twice; destroying it must do nothing
  }
  EXPECT_FALSE(f.done());
  b.set_value(9);
  EXPECT_EQ(f.result(), 9);
}

TEST(FutureTest, MoveAssigningOverUnsetPromiseBreaksItsFuture) {
  Promise<int> a;
  Future<int> fa = a.get_future();
  Promise<int> b;
  Future<int> fb = b.get_future();
  a = std::move(b);  // a's old state is abandoned
  EXPECT_TRUE(fa.done());
  EXPECT_THROW((void)fa.result(), BrokenPromise);
  EXPECT_FALSE(fb.done());
  a.set_value(3);
  EXPECT_EQ(fb.result(), 3);
}

TEST(FutureTest, MoveOnlyValue) {
  Promise<std::unique_ptr<int>> p;
  Future<std::unique_ptr<int>> f = p.get_future();
  p.set_value(std::make_unique<int>(11));
  ASSERT_TRUE(f.done());
  ASSERT_NE(f.result(), nullptr);
  EXPECT_EQ(*f.result(), 11);
}

TEST(FutureTest, MakeReadyFuture) {
  Future<int> f = make_ready_future(7);
  EXPECT_TRUE(f.valid());
  EXPECT_TRUE(f.done());
  EXPECT_EQ(f.result(), 7);
  EXPECT_EQ(f.exception(), nullptr);

  std::string s = "text";
  Future<std::string> fs = make_ready_future(s);
  EXPECT_EQ(fs.result(), "text");

  Future<void> v = make_ready_future();
  EXPECT_TRUE(v.valid());
  EXPECT_TRUE(v.done());
  EXPECT_NO_THROW(v.result());
}

TEST(FutureTest, MakeExceptionalFuture) {
  Future<int> f = make_exceptional_future<int>(std::make_exception_ptr(CustomError("bad", 5)));
  EXPECT_TRUE(f.done());
  EXPECT_NE(f.exception(), nullptr);
  try {
    (void)f.result();
    FAIL();
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code(), 5);
  }
  Future<void> v = make_exceptional_future<void>(std::make_exception_ptr(std::runtime_error("v")));
  EXPECT_TRUE(v.done());
  EXPECT_THROW(v.result(), std::runtime_error);
}

TEST(FutureTest, AddDoneCallbackRunsAtOnceWhenDone) {
  Future<int> f = make_ready_future(3);
  int seen = 0;
  f.add_done_callback([&](const Future<int>& done) {
    EXPECT_TRUE(done.done());
    seen = done.result();
  });
  EXPECT_EQ(seen, 3);  // ran before add_done_callback returned
}

TEST(FutureTest, AddDoneCallbackRunsOnCompletion) {
  Promise<int> p;
  Future<int> f = p.get_future();
  int seen = 0;
  f.add_done_callback([&](const Future<int>& done) { seen = done.result(); });
  EXPECT_EQ(seen, 0);
  p.set_value(8);
  EXPECT_EQ(seen, 8);
}

TEST(FutureTest, AddDoneCallbackSeesException) {
  Promise<int> p;
  std::exception_ptr seen;
  p.get_future().add_done_callback([&](const Future<int>& done) { seen = done.exception(); });
  p.set_exception(std::make_exception_ptr(CustomError("cb", 2)));
  ASSERT_NE(seen, nullptr);
  EXPECT_THROW(std::rethrow_exception(seen), CustomError);
}

TEST(FutureTest, DoneCallbacksRunInTheOrderAdded) {
  Promise<void> p;
  Future<void> f = p.get_future();
  std::vector<int> order;
  for (int i = 0; i < 10; ++i) f.add_done_callback([&order, i](const Future<void>&) { order.push_back(i); });
  EXPECT_TRUE(order.empty());
  p.set_value();
  ASSERT_EQ(order.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
  f.add_done_callback([&order](const Future<void>&) { order.push_back(10); });
  EXPECT_EQ(order.size(), 11u);
}

TEST(FutureTest, DoneCallbackRunsOnTheCompletingThread) {
  Promise<int> p;
  Future<int> f = p.get_future();
  std::thread::id callback_thread;
  std::atomic<int> calls{0};
  f.add_done_callback([&](const Future<int>& done) {
    callback_thread = std::this_thread::get_id();
    EXPECT_EQ(done.result(), 99);
    calls.fetch_add(1);
  });
  std::thread::id completer;
  std::thread t([&] {
    completer = std::this_thread::get_id();
    p.set_value(99);
  });
  t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(callback_thread, completer);
  EXPECT_NE(callback_thread, std::this_thread::get_id());
}

TEST(FutureTest, ThrowingDoneCallbackIsReportedAndOthersStillRun) {
  // Completed while a loop runs on this thread: the report goes to the loop's
  // unhandled-exception handler.
  IOLoop loop;
  ReportLog reports(loop);
  Promise<int> p;
  Future<int> f = p.get_future();
  std::vector<int> order;
  f.add_done_callback([&](const Future<int>&) { order.push_back(1); });
  f.add_done_callback([&](const Future<int>&) {
    order.push_back(2);
    throw std::runtime_error("from callback 2");
  });
  f.add_done_callback([&](const Future<int>&) { order.push_back(3); });
  bool set_threw = false;
  loop.add_callback([&] {
    try {
      p.set_value(1);
    } catch (...) {
      set_threw = true;
    }
    loop.stop();
  });
  loop.start();
  EXPECT_FALSE(set_threw) << "an exception of a done callback escaped set_value()";
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].first, "from callback 2");
  EXPECT_FALSE(reports[0].second.empty());
}

TEST(FutureTest, ThrowingDoneCallbackWithoutLoopIsReportedToStderr) {
  Promise<int> p;
  Future<int> f = p.get_future();
  std::vector<int> order;
  f.add_done_callback([&](const Future<int>&) { order.push_back(1); });
  f.add_done_callback([&](const Future<int>&) {
    order.push_back(2);
    throw std::runtime_error("callback-error-marker");
  });
  f.add_done_callback([&](const Future<int>&) { order.push_back(3); });
  const std::string err = capture_stderr([&] {
    EXPECT_NO_THROW(p.set_value(1));
    // Also when added to a future that is already done.
    EXPECT_NO_THROW(f.add_done_callback([&](const Future<int>&) {
      order.push_back(4);
      throw std::runtime_error("late-callback-marker");
    }));
  });
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_NE(err.find("callback-error-marker"), std::string::npos) << err;
  EXPECT_NE(err.find("late-callback-marker"), std::string::npos) << err;
}

TEST(FutureTest, SetValueRacingFromManyThreadsExactlyOneWins) {
  for (int round = 0; round < 20; ++round) {
    Promise<int> p;
    Future<int> f = p.get_future();
    constexpr int kThreads = 8;
    std::atomic<int> ready{0};
    std::atomic<int> wins{0};
    std::atomic<int> rejected{0};
    std::atomic<int> winner{-1};
    std::atomic<int> callbacks{0};
    f.add_done_callback([&](const Future<int>&) { callbacks.fetch_add(1); });
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        try {
          if (i % 2 == 0) {
            p.set_value(i);
          } else {
            p.set_exception(std::make_exception_ptr(CustomError("thread", i)));
          }
          wins.fetch_add(1);
          winner.store(i);
        } catch (const PromiseAlreadySatisfied&) {
          rejected.fetch_add(1);
        }
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(wins.load(), 1) << "round " << round;
    EXPECT_EQ(rejected.load(), kThreads - 1);
    EXPECT_EQ(callbacks.load(), 1);
    ASSERT_TRUE(f.done());
    const int w = winner.load();
    if (w % 2 == 0) {
      EXPECT_EQ(f.result(), w);
    } else {
      try {
        (void)f.result();
        FAIL();
      } catch (const CustomError& e) {
        EXPECT_EQ(e.code(), w);
      }
    }
  }
}

TEST(FutureTest, CallbacksAddedWhileAnotherThreadCompletesRunExactlyOnce) {
  // add_done_callback racing with set_value: each callback runs exactly once,
  // either on the completing thread or at once on the adding thread.
  for (int round = 0; round < 50; ++round) {
    Promise<int> p;
    Future<int> f = p.get_future();
    std::atomic<int> calls{0};
    std::atomic<bool> go{false};
    std::thread completer([&] {
      while (!go.load()) {
      }
      p.set_value(round);
    });
    go.store(true);
    for (int i = 0; i < 100; ++i) f.add_done_callback([&](const Future<int>& d) {
      EXPECT_EQ(d.result(), round);
      calls.fetch_add(1);
    });
    completer.join();
    EXPECT_EQ(calls.load(), 100);
  }
}

TEST(FutureTest, ExceptionFromAnotherThreadKeepsItsType) {
  Promise<std::string> p;
  Future<std::string> f = p.get_future();
  std::thread t([&] {
    try {
      throw CustomError("from thread", 41);
    } catch (...) {
      p.set_exception(std::current_exception());
    }
  });
  t.join();
  try {
    (void)f.result();
    FAIL();
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code(), 41);
  }
}

}  // namespace
}  // namespace fiberloop
