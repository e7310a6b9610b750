// Stack contexts: ExceptionStackContext, ContextLocal and wrap(), captured at every
// registration point and re-entered when the work runs, on the loop thread and on
// others. (Fiber-specific behaviour: tests/fibers/fiber_context_test.cpp.)

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <mutex>
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

using testing::ReportLog;
using testing::what_of;

/// Runs the loop until a callback queued now has run (callbacks run FIFO).
void run_queued(IOLoop& loop) {
  loop.add_callback([&loop] { loop.stop(); });
  loop.start();
}

class StackContextTest : public testing::LoopTest {
 protected:
  ContextLocal<std::string> tag_;
};

// ---- ContextLocal ---------------------------------------------------------------

TEST(ContextLocalTest, GetIsNullWhereUnsetAndScopesNestAndRestore) {
  ContextLocal<std::string> name;
  ContextLocal<int> other;
  EXPECT_EQ(name.get(), nullptr);
  {
    auto outer = name.set("outer");
    ASSERT_NE(name.get(), nullptr);
    EXPECT_EQ(*name.get(), "outer");
    EXPECT_EQ(other.get(), nullptr) << "a ContextLocal sees only its own values";
    {
      auto number = other.set(7);
      auto inner = name.set("inner");
      EXPECT_EQ(*name.get(), "inner");
      EXPECT_EQ(*other.get(), 7);
    }
    EXPECT_EQ(*name.get(), "outer");
    EXPECT_EQ(other.get(), nullptr);
  }
  EXPECT_EQ(name.get(), nullptr);
}

// ---- ExceptionStackContext ------------------------------------------------------

TEST(ExceptionStackContextTest, CallbackErrorReachesTheHandlerAfterItsScopeEnded) {
  IOLoop loop;
  ReportLog reports(loop);
  std::vector<std::string> handled;
  bool scope_ended = false;
  {
    ExceptionStackContext context([&](std::exception_ptr error) {
      EXPECT_TRUE(scope_ended) << "the handler ran before the callback was even due";
      handled.push_back(what_of(error));
      return true;
    });
    loop.add_callback([] { throw std::runtime_error("thrown later"); });
  }
  scope_ended = true;
  bool loop_went_on = false;
  loop.add_callback([&] { loop_went_on = true; });
  run_queued(loop);
  EXPECT_EQ(handled, std::vector<std::string>{"thrown later"});
  EXPECT_TRUE(loop_went_on);
  EXPECT_TRUE(reports.entries().empty());
}

TEST(ExceptionStackContextTest, HandlerReturningFalseOrThrowingPassesTheErrorOutward) {
  IOLoop loop;
  ReportLog reports(loop);
  std::vector<std::string> log;
  {
    ExceptionStackContext outer([&](std::exception_ptr error) {
      log.push_back("outer:" + what_of(error));
      return what_of(error) != "nobody handles";
    });
    ExceptionStackContext inner([&](std::exception_ptr error) {
      const std::string what = what_of(error);
      log.push_back("inner:" + what);
      if (what == "inner throws") throw std::logic_error("thrown by the inner handler");
      return what == "inner handles";
    });
    loop.add_callback([] { throw std::runtime_error("inner handles"); });
    loop.add_callback([] { throw std::runtime_error("inner passes"); });
    loop.add_callback([] { throw std::runtime_error("inner throws"); });
    loop.add_callback([] { throw std::runtime_error("nobody handles"); });
  }
  run_queued(loop);
  EXPECT_EQ(log, (std::vector<std::string>{"inner:inner handles", "inner:inner passes", "outer:inner passes",
                                           "inner:inner throws", "outer:thrown by the inner handler",
                                           "inner:nobody handles", "outer:nobody handles"}));
  const auto entries = reports.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].first, "nobody handles");
  EXPECT_EQ(entries[0].second, "a callback");
}

TEST(ExceptionStackContextTest, HandlerRunsUnderTheContextsOutsideIt) {
  IOLoop loop;
  ContextLocal<int> depth;
  int seen_by_handler = -1;
  std::vector<int> seen_by_callbacks;
  {
    auto one = depth.set(1);
    ExceptionStackContext context([&](std::exception_ptr) {
      seen_by_handler = depth.get() ? *depth.get() : 0;
      // Registered by the handler: outside the handler's own context.
      loop.add_callback([&] { seen_by_callbacks.push_back(depth.get() ? *depth.get() : 0); });
      return true;
    });
    auto two = depth.set(2);
    loop.add_callback([&] {
      seen_by_callbacks.push_back(*depth.get());
      throw std::runtime_error("x");
    });
  }
  run_queued(loop);
  run_queued(loop);
  EXPECT_EQ(seen_by_handler, 1);
  EXPECT_EQ(seen_by_callbacks, (std::vector<int>{2, 1}));
}

TEST(ExceptionStackContextTest, UncaughtErrorIsReportedAndTheLoopGoesOn) {
  IOLoop loop;
  ReportLog reports(loop);
  {
    ExceptionStackContext context([](std::exception_ptr) { return false; });
    loop.call_later(0ms, [] { throw std::out_of_range("from a timeout"); });
  }
  int after = 0;
  loop.call_later(0ms, [&] { ++after; });
  loop.call_later(1ms, [&] { loop.stop(); });
  loop.start();
  EXPECT_EQ(after, 1);
  const auto entries = reports.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].first, "from a timeout");
  EXPECT_EQ(entries[0].second, "a timeout callback");
}

TEST(NullContextTest, WorkRegisteredUnderItBelongsToNoContext) {
  IOLoop loop;
  ReportLog reports(loop);
  ContextLocal<int> value;
  std::vector<std::string> log;
  {
    auto scope = value.set(1);
    ExceptionStackContext context([&](std::exception_ptr error) {
      log.push_back("handled " + what_of(error));
      return true;
    });
    {
      NullContext none;
      EXPECT_EQ(value.get(), nullptr);
      loop.add_callback([&] {
        log.push_back(value.get() ? "value set" : "value unset");
        throw std::runtime_error("housekeeping");
      });
    }
    EXPECT_EQ(*value.get(), 1);
    loop.add_callback([] { throw std::runtime_error("request"); });
  }
  run_queued(loop);
  EXPECT_EQ(log, (std::vector<std::string>{"value unset", "handled request"}));
  const auto entries = reports.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].first, "housekeeping");
}

// ---- registration points ----------------------------------------------------------

TEST_F(StackContextTest, EveryLoopRegistrationPointCapturesAndReentersTheChain) {
  std::vector<std::string> seen;
  std::vector<std::string> handled;
  run_in_fiber([&] {
    IOLoop& loop = loop_;
    const int kinds = 6;  // error-throwing registrations below
    Promise<void> all_handled;
    Future<void> all_handled_future = all_handled.get_future();
    int handled_count = 0;
    Promise<int> for_add_future;
    Promise<int> for_done_callback;
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    auto work = [&](const std::string& name) {
      seen.push_back(name + "=" + (tag_.get() ? *tag_.get() : "unset"));
      throw std::runtime_error(name);
    };
    {
      ExceptionStackContext context([&](std::exception_ptr error) {
        handled.push_back(what_of(error));
        if (++handled_count == kinds) all_handled.set_value();
        return true;
      });
      auto scope = tag_.set("request");
      loop.add_callback([&] { work("add_callback"); });
      loop.call_later(1ms, [&] { work("call_later"); });
      loop.call_at(IOLoop::clock::now() + 1ms, [&] { work("call_at"); });
      loop.add_future<int>(for_add_future.get_future(), [&](Future<int>) { work("add_future"); });
      for_done_callback.get_future().add_done_callback([&](const Future<int>&) { work("add_done_callback"); });
      loop.add_handler(fd, Events::read, [&](int ready_fd, Events) {
        loop.remove_handler(ready_fd);
        work("add_handler");
      });
      Future<void> child = loop.spawn([&] { seen.push_back("spawn=" + *tag_.get()); });
      wait_for_future(child);
    }
    EXPECT_EQ(tag_.get(), nullptr);
    // Completed after the scope ended, outside any context.
    for_add_future.set_value(1);
    for_done_callback.set_value(2);
    const std::uint64_t one = 1;
    ASSERT_EQ(::write(fd, &one, sizeof one), static_cast<ssize_t>(sizeof one));
    wait_for_future(all_handled_future, 5s);
    ::close(fd);
  });
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<std::string>{"add_callback=request", "add_done_callback=request",
                                            "add_future=request", "add_handler=request", "call_at=request",
                                            "call_later=request", "spawn=request"}));
  std::sort(handled.begin(), handled.end());
  EXPECT_EQ(handled, (std::vector<std::string>{"add_callback", "add_done_callback", "add_future", "add_handler",
                                               "call_at", "call_later"}));
}

TEST_F(StackContextTest, RegisteredFromInsideAWrappedCallbackKeepsTheChain) {
  std::vector<std::string> seen;
  run_in_fiber([&] {
    Promise<void> handled;
    Future<void> handled_future = handled.get_future();
    std::function<void()> first;
    {
      ExceptionStackContext context([&](std::exception_ptr error) {
        seen.push_back("handled " + what_of(error));
        handled.set_value();
        return true;
      });
      auto scope = tag_.set("kept");
      first = wrap([&] {
        seen.push_back("first=" + *tag_.get());
        loop_.call_later(1ms, [&] {
          seen.push_back("second=" + *tag_.get());
          loop_.add_callback([&] {
            seen.push_back("third=" + *tag_.get());
            throw std::runtime_error("from the third");
          });
        });
      });
    }
    loop_.add_callback(first);  // registered with no context active
    wait_for_future(handled_future, 5s);
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"first=kept", "second=kept", "third=kept", "handled from the third"}));
}

TEST_F(StackContextTest, LoopRunsWithNoContextAndWorkFromOtherThreadsBringsItsOwn) {
  auto outside = tag_.set("around run_sync");
  std::string in_fiber, in_plain_callback, in_wrapped_callback;
  run_in_fiber([&] {
    in_fiber = tag_.get() ? *tag_.get() : "unset";
    Promise<void> ran;
    Future<void> ran_future = ran.get_future();
    std::function<void()> wrapped;
    {
      auto scope = tag_.set("wrapped");
      wrapped = wrap([&] { in_wrapped_callback = *tag_.get(); });
    }
    std::thread other([&] {
      loop_.add_callback([&] { in_plain_callback = tag_.get() ? *tag_.get() : "unset"; });
      loop_.add_callback(wrapped);
      loop_.add_callback([&] { ran.set_value(); });
    });
    other.join();
    wait_for_future(ran_future, 5s);
  });
  EXPECT_EQ(in_fiber, "around run_sync") << "a fiber starts with its spawner's contexts";
  EXPECT_EQ(in_plain_callback, "unset");
  EXPECT_EQ(in_wrapped_callback, "wrapped");
  EXPECT_EQ(*tag_.get(), "around run_sync");
}

// ---- other threads (also run under TSan) --------------------------------------------

TEST_F(StackContextTest, DoneCallbackOnAnotherThreadRunsUnderTheChainAndItsErrorReachesTheLoopThread) {
  std::string seen_on_completer;
  std::thread::id handler_thread;
  std::string handled;
  run_in_fiber([&] {
    Promise<int> promise;
    Future<int> future = promise.get_future();
    Promise<void> done;
    Future<void> done_future = done.get_future();
    {
      ExceptionStackContext context([&](std::exception_ptr error) {
        handler_thread = std::this_thread::get_id();
        handled = what_of(error);
        done.set_value();
        return true;
      });
      auto scope = tag_.set("request 1");
      future.add_done_callback([&](const Future<int>& f) {
        seen_on_completer = *tag_.get() + " got " + std::to_string(f.result());
        throw std::runtime_error("thrown on the completing thread");
      });
    }
    std::thread completer([&] { promise.set_value(5); });
    wait_for_future(done_future, 5s);
    completer.join();
  });
  EXPECT_EQ(seen_on_completer, "request 1 got 5");
  EXPECT_EQ(handled, "thrown on the completing thread");
  EXPECT_EQ(handler_thread, std::this_thread::get_id()) << "the handler runs on its loop's thread";
}

TEST_F(StackContextTest, ExecutorJobsRunUnderTheChainAndWhatTheyRegisterKeepsIt) {
  ThreadPoolExecutor pool(2);
  std::string on_worker, on_loop, via_run_blocking;
  std::string handled;
  run_in_fiber([&] {
    Promise<void> done;
    Future<void> done_future = done.get_future();
    Future<int> job;
    {
      ExceptionStackContext context([&](std::exception_ptr error) {
        handled = what_of(error);
        done.set_value();
        return true;
      });
      auto scope = tag_.set("job");
      job = pool.submit([&] {
        on_worker = *tag_.get();
        loop_.add_callback([&] {
          on_loop = *tag_.get();
          throw std::runtime_error("from the job's callback");
        });
        return 42;
      });
      via_run_blocking = run_blocking([&] { return *tag_.get(); });
    }
    EXPECT_EQ(wait_for_future(job, 5s), 42);
    wait_for_future(done_future, 5s);
  });
  EXPECT_EQ(on_worker, "job");
  EXPECT_EQ(on_loop, "job");
  EXPECT_EQ(via_run_blocking, "job");
  EXPECT_EQ(handled, "from the job's callback");
}

TEST_F(StackContextTest, WrapIsCopyableAndRunsUnderItsChainOnAnyThread) {
  std::mutex mutex;
  std::vector<std::string> seen;
  std::vector<std::thread::id> handler_threads;
  run_in_fiber([&] {
    Promise<void> done;
    Future<void> done_future = done.get_future();
    std::function<void()> stored;
    std::function<int(int)> with_result;
    {
      ExceptionStackContext context([&](std::exception_ptr error) {
        EXPECT_EQ(what_of(error), "from the wrapped function");
        handler_threads.push_back(std::this_thread::get_id());
        if (handler_threads.size() == 3) done.set_value();
        return true;
      });
      auto scope = tag_.set("captured");
      stored = wrap([&] {
        {
          std::lock_guard lock(mutex);
          seen.push_back(tag_.get() ? *tag_.get() : "unset");
        }
        throw std::runtime_error("from the wrapped function");
      });
      with_result = wrap([&](int x) {
        if (x < 0) throw std::invalid_argument("negative");
        return x + static_cast<int>(tag_.get()->size());
      });
    }
    const std::function<void()> copy = stored;
    stored();  // here: the error goes to the handler and the call returns normally
    EXPECT_EQ(tag_.get(), nullptr) << "the wrapped call restored the contexts around it";
    std::thread a(copy);
    std::thread b(stored);
    a.join();
    b.join();
    EXPECT_EQ(with_result(1), 9);  // "captured" has 8 characters
    EXPECT_THROW(with_result(-1), std::invalid_argument) << "a wrapped function's result or error goes to its caller";
    wait_for_future(done_future, 5s);
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"captured", "captured", "captured"}));
  ASSERT_EQ(handler_threads.size(), 3u);
  for (const auto& id : handler_threads) EXPECT_EQ(id, std::this_thread::get_id());
}

TEST(StackContextThreadTest, ContextsOnAPlainThreadWorkWithoutALoop) {
  ContextLocal<int> value;
  std::vector<std::string> handled;
  std::function<void()> wrapped;
  std::thread worker([&] {
    ExceptionStackContext context([&](std::exception_ptr error) {
      handled.push_back(what_of(error));
      return true;
    });
    auto scope = value.set(3);
    wrapped = wrap([&] {
      EXPECT_EQ(*value.get(), 3);
      throw std::runtime_error("no loop anywhere");
    });
  });
  worker.join();
  wrapped();  // no loop made the handler: it runs right here
  EXPECT_EQ(handled, std::vector<std::string>{"no loop anywhere"});
  EXPECT_EQ(value.get(), nullptr);
}

TEST(ContextLocalTest, ValuesThatCannotBePrintedWorkWithoutAReportName) {
  struct Opaque {
    std::vector<int> parts;
  };
  ContextLocal<Opaque> local;
  {
    auto scope = local.set(Opaque{{1, 2, 3}});
    ASSERT_NE(local.get(), nullptr);
    EXPECT_EQ(local.get()->parts.size(), 3u);
  }
  EXPECT_EQ(local.get(), nullptr);
  ContextLocal<std::string> named("user");
  auto scope = named.set("ada");
  EXPECT_EQ(*named.get(), "ada");
  EXPECT_EQ(detail::report_values_of(detail::tls_active_chain), "user=ada");
}

}  // namespace
}  // namespace fiberloop
