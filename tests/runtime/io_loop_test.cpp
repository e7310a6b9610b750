// Tests for IOLoop (runtime/include/fiberloop/io_loop.hpp): callbacks, timeouts,
// fd handlers, add_future, start/stop, error reporting, current() and run_sync.

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "loop_internals.hpp"  // runtime/src: the epoll test seam
#include <fiberloop/fiberloop.hpp>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using fiberloop::testing::capture_stderr;
using fiberloop::testing::CustomError;
using fiberloop::testing::elapsed_ms;
using fiberloop::testing::Pipe;
using fiberloop::testing::what_of;

/// A connected AF_UNIX socket pair closed on scope exit.
struct SocketPair {
  int a = -1;
  int b = -1;
  SocketPair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0)
      throw std::system_error(errno, std::generic_category(), "socketpair");
    a = fds[0];
    b = fds[1];
  }
  ~SocketPair() {
    ::close(a);
    ::close(b);
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
};

/// Stops `loop` after `delay` and records that the guard (not the test's own
/// stop) ended the run, so a hung test fails instead of hanging.
struct Watchdog {
  bool fired = false;
  TimeoutHandle handle;
  Watchdog(IOLoop& loop, std::chrono::nanoseconds delay) {
    handle = loop.call_later(delay, [this, &loop] {
      fired = true;
      loop.stop();
    });
  }
};

/// Makes an exception reaching the loop's unhandled-exception report fail the test.
/// Where none is expected, a report means the loop called something it should not
/// have (a removed timeout's or handler's empty function, say).
void fail_on_unhandled(IOLoop& loop) {
  loop.set_unhandled_exception_handler([](std::exception_ptr error, const std::string& where) {
    ADD_FAILURE() << "unexpected unhandled exception in " << where << ": " << what_of(error);
  });
}

// ---- callbacks ------------------------------------------------------------------

TEST(IOLoopTest, AddCallbackRunsInFifoOrder) {
  IOLoop loop;
  fail_on_unhandled(loop);
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) loop.add_callback([&order, i] { order.push_back(i); });
  loop.add_callback([&] { loop.stop(); });
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
}

TEST(IOLoopTest, CallbackAddedFromCallbackRunsAfterOnesAlreadyQueued) {
  IOLoop loop;
  fail_on_unhandled(loop);
  std::vector<std::string> order;
  loop.add_callback([&] {
    order.push_back("a");
    loop.add_callback([&] {
      order.push_back("nested");
      loop.stop();
    });
  });
  loop.add_callback([&] { order.push_back("b"); });
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "nested"}));
}

TEST(IOLoopTest, SelfReschedulingCallbackDoesNotStarveIo) {
  IOLoop loop;
  fail_on_unhandled(loop);
  Pipe pipe;
  pipe.write_byte();
  long spins = 0;
  bool handler_ran = false;
  bool gave_up = false;
  std::function<void()> spin = [&] {
    if (handler_ran) return;  // stop re-adding once I/O got through
    if (++spins > 5'000'000) {
      gave_up = true;
      loop.stop();
      return;
    }
    loop.add_callback(spin);
  };
  loop.add_callback(spin);
  loop.add_handler(pipe.read_fd, Events::read, [&](int fd, Events events) {
    EXPECT_EQ(fd, pipe.read_fd);
    EXPECT_TRUE(any(events & Events::read));
    handler_ran = true;
    loop.remove_handler(fd);
    loop.stop();
  });
  loop.start();
  EXPECT_FALSE(gave_up) << "the fd handler never ran while a callback kept re-adding itself";
  EXPECT_TRUE(handler_ran);
}

TEST(IOLoopTest, SelfReschedulingCallbackDoesNotStarveTimers) {
  IOLoop loop;
  fail_on_unhandled(loop);
  long spins = 0;
  bool timer_ran = false;
  bool gave_up = false;
  std::function<void()> spin = [&] {
    if (timer_ran) return;
    if (++spins > 5'000'000) {
      gave_up = true;
      loop.stop();
      return;
    }
    loop.add_callback(spin);
  };
  loop.add_callback(spin);
  loop.call_later(2ms, [&] {
    timer_ran = true;
    loop.stop();
  });
  loop.start();
  EXPECT_FALSE(gave_up);
  EXPECT_TRUE(timer_ran);
}

// ---- timeouts ---------------------------------------------------------------------

TEST(IOLoopTest, EqualDeadlineTimersRunInSchedulingOrder) {
  IOLoop loop;
  fail_on_unhandled(loop);
  std::vector<int> order;
  const auto when = Clock::now() + 5ms;
  for (int i = 0; i < 50; ++i) loop.call_at(when, [&order, i] { order.push_back(i); });
  loop.call_at(when, [&] { loop.stop(); });
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
}

TEST(IOLoopTest, EqualDeadlinesInThePastRunInSchedulingOrder) {
  IOLoop loop;
  fail_on_unhandled(loop);
  std::vector<int> order;
  const auto when = Clock::now() - 1s;
  // Interleave with a later deadline so the heap has to reorder.
  for (int i = 0; i < 20; ++i) {
    loop.call_at(when, [&order, i] { order.push_back(i); });
    loop.call_at(when + 1ms, [&order, i] { order.push_back(100 + i); });
  }
  loop.call_at(when + 2ms, [&] { loop.stop(); });
  loop.start();
  ASSERT_EQ(order.size(), 40u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
    EXPECT_EQ(order[static_cast<std::size_t>(20 + i)], 100 + i);
  }
}

TEST(IOLoopTest, CallLaterRunsByDeadline) {
  IOLoop loop;
  fail_on_unhandled(loop);
  std::vector<int> order;
  const auto start = Clock::now();
  double first_ms = -1;
  loop.call_later(30ms, [&] {
    order.push_back(30);
    loop.stop();
  });
  loop.call_later(10ms, [&] {
    first_ms = elapsed_ms(start);
    order.push_back(10);
  });
  loop.call_later(20ms, [&] { order.push_back(20); });
  loop.call_later(0ns, [&] { order.push_back(0); });
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  EXPECT_EQ(order, (std::vector<int>{0, 10, 20, 30}));
  EXPECT_GE(first_ms, 9.0) << "a timeout ran before its deadline";
  EXPECT_GE(elapsed_ms(start), 29.0);
  EXPECT_LT(elapsed_ms(start), 1000.0);
}

TEST(IOLoopTest, CallAtInThePastRunsPromptly) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool ran = false;
  const auto start = Clock::now();
  loop.call_at(Clock::now() - 10s, [&] {
    ran = true;
    loop.stop();
  });
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_TRUE(ran);
  EXPECT_LT(elapsed_ms(start), 500.0);
}

TEST(IOLoopTest, RemoveTimeoutBeforeItRuns) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool removed_ran = false;
  bool kept_ran = false;
  TimeoutHandle h = loop.call_later(5ms, [&] { removed_ran = true; });
  loop.call_later(5ms, [&] { kept_ran = true; });
  loop.remove_timeout(h);
  loop.call_later(30ms, [&] { loop.stop(); });
  loop.start();
  EXPECT_FALSE(removed_ran);
  EXPECT_TRUE(kept_ran);
}

TEST(IOLoopTest, RemoveTimeoutFromCallbackBeforeDeadline) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool removed_ran = false;
  TimeoutHandle h = loop.call_later(10ms, [&] { removed_ran = true; });
  loop.add_callback([&] { loop.remove_timeout(h); });
  loop.call_later(40ms, [&] { loop.stop(); });
  loop.start();
  EXPECT_FALSE(removed_ran);
}

TEST(IOLoopTest, RemoveTimeoutFromAnotherTimeoutWithTheSameDeadline) {
  IOLoop loop;
  fail_on_unhandled(loop);
  const auto when = Clock::now() + 5ms;
  bool victim_ran = false;
  bool remover_ran = false;
  bool after_ran = false;
  TimeoutHandle victim;
  loop.call_at(when, [&] {
    remover_ran = true;
    loop.remove_timeout(victim);
  });
  victim = loop.call_at(when, [&] { victim_ran = true; });
  loop.call_at(when, [&] { after_ran = true; });
  loop.call_later(30ms, [&] { loop.stop(); });
  loop.start();
  EXPECT_TRUE(remover_ran);
  EXPECT_FALSE(victim_ran) << "a timeout removed by an earlier timeout of the same batch still ran";
  EXPECT_TRUE(after_ran);
}

TEST(IOLoopTest, RemoveTimeoutFromTimeoutThenScheduleReusingTheSlot) {
  // The removed timeout's slot is freed and may be reused by a timeout added in the
  // same batch; the stale heap entry of the removed one must not run the new one early.
  IOLoop loop;
  fail_on_unhandled(loop);
  const auto start = Clock::now();
  const auto when = start + 5ms;
  bool victim_ran = false;
  double replacement_ms = -1;
  TimeoutHandle victim;
  loop.call_at(when, [&] {
    loop.remove_timeout(victim);
    loop.call_later(40ms, [&] { replacement_ms = elapsed_ms(start); });
  });
  victim = loop.call_at(when, [&] { victim_ran = true; });
  loop.call_later(100ms, [&] { loop.stop(); });
  loop.start();
  EXPECT_FALSE(victim_ran);
  EXPECT_GE(replacement_ms, 44.0) << "the replacement ran at the removed timeout's deadline";
}

TEST(IOLoopTest, RemoveTimeoutOfAlreadyRunHandleIsNoOp) {
  IOLoop loop;
  fail_on_unhandled(loop);
  int first_runs = 0;
  bool second_ran = false;
  bool third_ran = false;
  TimeoutHandle first;
  first = loop.call_later(0ns, [&] {
    ++first_runs;
    // Scheduled while `first` runs, so its storage may well be reused: removing the
    // stale handle must not cancel this one.
    loop.call_later(5ms, [&] { second_ran = true; });
    loop.add_callback([&] {
      loop.remove_timeout(first);
      loop.remove_timeout(first);
    });
  });
  loop.call_later(10ms, [&] {
    // Again from a later timeout, once the first has long run.
    loop.call_later(5ms, [&] {
      third_ran = true;
      loop.stop();
    });
    loop.remove_timeout(first);
  });
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired) << "removing an already-run handle cancelled another timeout";
  EXPECT_EQ(first_runs, 1);
  EXPECT_TRUE(second_ran) << "removing an already-run handle cancelled another timeout";
  EXPECT_TRUE(third_ran);
}

TEST(IOLoopTest, RemoveTimeoutTwiceAndDefaultHandleAreNoOps) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool ran = false;
  bool removed_ran = false;
  TimeoutHandle removed = loop.call_later(1ms, [&] { removed_ran = true; });
  loop.remove_timeout(removed);
  const TimeoutHandle kept = loop.call_later(5ms, [&] {
    ran = true;
    loop.stop();
  });
  // A default handle names no timeout; live handles name different ones, even when
  // one reuses the slot a removed timeout freed.
  EXPECT_FALSE(removed == TimeoutHandle{});
  EXPECT_FALSE(kept == TimeoutHandle{});
  EXPECT_FALSE(kept == removed);
  EXPECT_NO_THROW(loop.remove_timeout(TimeoutHandle{}));
  EXPECT_NO_THROW(loop.remove_timeout(removed));
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  EXPECT_TRUE(ran) << "removing a handle twice, or a default handle, cancelled another timeout";
  EXPECT_FALSE(removed_ran) << "a removed timeout ran";
}

TEST(IOLoopTest, ManyRemovedTimeoutsDoNotDisturbTheRest) {
  // Enough removals to trigger the heap's compaction.
  IOLoop loop;
  fail_on_unhandled(loop);
  std::vector<TimeoutHandle> handles;
  int removed_runs = 0;
  std::vector<int> kept;
  for (int i = 0; i < 3000; ++i) handles.push_back(loop.call_later(1ms + std::chrono::microseconds(i), [&] { ++removed_runs; }));
  for (int i = 0; i < 10; ++i) loop.call_later(2ms + std::chrono::microseconds(i), [&kept, i] { kept.push_back(i); });
  for (auto& h : handles) loop.remove_timeout(h);
  loop.call_later(20ms, [&] { loop.stop(); });
  loop.start();
  EXPECT_EQ(removed_runs, 0);
  EXPECT_EQ(kept, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

// ---- fd handlers ------------------------------------------------------------------

TEST(IOLoopTest, ReadHandlerRunsWhenPipeIsReadable) {
  IOLoop loop;
  fail_on_unhandled(loop);
  Pipe pipe;
  int calls = 0;
  loop.add_handler(pipe.read_fd, Events::read, [&](int fd, Events events) {
    ++calls;
    EXPECT_EQ(fd, pipe.read_fd);
    EXPECT_TRUE(any(events & Events::read));
    pipe.read_byte();
    loop.remove_handler(fd);
    loop.stop();
  });
  loop.call_later(10ms, [&] {
    EXPECT_EQ(calls, 0) << "read handler ran before data arrived";
    pipe.write_byte();
  });
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  EXPECT_EQ(calls, 1);
}

TEST(IOLoopTest, WriteHandlerRunsWhenSocketIsWritable) {
  IOLoop loop;
  fail_on_unhandled(loop);
  SocketPair sp;
  int calls = 0;
  loop.add_handler(sp.a, Events::write, [&](int fd, Events events) {
    ++calls;
    EXPECT_EQ(fd, sp.a);
    EXPECT_TRUE(any(events & Events::write));
    EXPECT_FALSE(any(events & Events::read));
    loop.remove_handler(fd);
    loop.stop();
  });
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  EXPECT_EQ(calls, 1);
}

TEST(IOLoopTest, UpdateHandlerSwitchesEvents) {
  IOLoop loop;
  fail_on_unhandled(loop);
  SocketPair sp;
  std::vector<Events> seen;
  loop.add_handler(sp.a, Events::read, [&](int fd, Events events) {
    seen.push_back(events);
    if (seen.size() == 1) {
      // Writable, not readable: now ask for reads and make one arrive.
      EXPECT_TRUE(any(events & Events::write));
      loop.update_handler(fd, Events::read);
      ASSERT_EQ(::write(sp.b, "y", 1), 1);
    } else {
      EXPECT_TRUE(any(events & Events::read));
      EXPECT_FALSE(any(events & Events::write)) << "update_handler(read) still reports writes";
      char c;
      EXPECT_EQ(::read(fd, &c, 1), 1);
      loop.remove_handler(fd);
      loop.stop();
    }
  });
  // Nothing to read: the handler must not run until it asks for writes.
  loop.call_later(10ms, [&] {
    EXPECT_TRUE(seen.empty());
    loop.update_handler(sp.a, Events::write);
  });
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  EXPECT_EQ(seen.size(), 2u);
}

TEST(IOLoopTest, UpdateHandlerWithoutHandlerThrows) {
  IOLoop loop;
  fail_on_unhandled(loop);
  Pipe pipe;
  EXPECT_ANY_THROW(loop.update_handler(pipe.read_fd, Events::read));
}

TEST(IOLoopTest, HandlerRemovedByAnotherHandlerInTheSameIterationDoesNotRun) {
  IOLoop loop;
  fail_on_unhandled(loop);
  Pipe p1;
  Pipe p2;
  p1.write_byte();
  p2.write_byte();  // both ready before the first poll: one epoll batch
  std::vector<int> ran;
  auto handler = [&](int self, int other) {
    return [&, self, other](int fd, Events) {
      EXPECT_EQ(fd, self);
      ran.push_back(self);
      loop.remove_handler(other);
      loop.remove_handler(self);
      loop.call_later(20ms, [&] { loop.stop(); });
    };
  };
  loop.add_handler(p1.read_fd, Events::read, handler(p1.read_fd, p2.read_fd));
  loop.add_handler(p2.read_fd, Events::read, handler(p2.read_fd, p1.read_fd));
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  EXPECT_EQ(ran.size(), 1u) << "a handler removed earlier in the same batch still ran";
}

TEST(IOLoopTest, HandlerRemovedAndReplacedByAnotherHandlerInTheSameIteration) {
  // The other fd gets a new handler (watching nothing) in the same batch: the stale
  // read event from the old registration must not reach the new handler.
  IOLoop loop;
  fail_on_unhandled(loop);
  SocketPair s1;
  SocketPair s2;
  ASSERT_EQ(::write(s1.b, "x", 1), 1);
  ASSERT_EQ(::write(s2.b, "x", 1), 1);
  std::vector<std::string> ran;
  bool replaced = false;
  auto make = [&](int self, int other) {
    return [&, self, other](int, Events events) {
      ran.push_back("old");
      if (replaced) return;
      replaced = true;
      EXPECT_TRUE(any(events & Events::read));
      loop.remove_handler(self);
      loop.remove_handler(other);
      loop.add_handler(other, Events::none, [&](int, Events ev) {
        ran.push_back(any(ev & Events::read) ? "new-read" : "new-other");
      });
      loop.call_later(20ms, [&, other] {
        loop.remove_handler(other);
        loop.stop();
      });
    };
  };
  loop.add_handler(s1.a, Events::read, make(s1.a, s2.a));
  loop.add_handler(s2.a, Events::read, make(s2.a, s1.a));
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  EXPECT_EQ(ran, (std::vector<std::string>{"old"}));
}

TEST(IOLoopTest, RemoveHandlerFromInsideItsOwnHandler) {
  IOLoop loop;
  fail_on_unhandled(loop);
  Pipe pipe;
  pipe.write_byte();  // stays unread: level-triggered, would fire every iteration
  int calls = 0;
  loop.add_handler(pipe.read_fd, Events::read, [&](int fd, Events) {
    ++calls;
    loop.remove_handler(fd);
  });
  loop.call_later(30ms, [&] { loop.stop(); });
  loop.start();
  EXPECT_EQ(calls, 1);
}

TEST(IOLoopTest, HandlerCanBeAddedAgainAfterRemoval) {
  IOLoop loop;
  fail_on_unhandled(loop);
  Pipe pipe;
  pipe.write_byte();
  std::vector<int> calls;
  loop.add_handler(pipe.read_fd, Events::read, [&](int fd, Events) {
    calls.push_back(1);
    loop.remove_handler(fd);
    loop.add_handler(fd, Events::read, [&](int fd2, Events) {
      calls.push_back(2);
      loop.remove_handler(fd2);
      loop.stop();
    });
  });
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  EXPECT_EQ(calls, (std::vector<int>{1, 2}));
}

TEST(IOLoopTest, AddHandlerTwiceThrowsSystemError) {
  IOLoop loop;
  fail_on_unhandled(loop);
  Pipe pipe;
  loop.add_handler(pipe.read_fd, Events::read, [](int, Events) {});
  EXPECT_THROW(loop.add_handler(pipe.read_fd, Events::read, [](int, Events) {}), std::system_error);
  loop.remove_handler(pipe.read_fd);
  EXPECT_NO_THROW(loop.add_handler(pipe.read_fd, Events::read, [](int, Events) {}));
  loop.remove_handler(pipe.read_fd);
}

TEST(IOLoopTest, AddHandlerOnInvalidFdThrowsSystemError) {
  IOLoop loop;
  fail_on_unhandled(loop);
  EXPECT_THROW(loop.add_handler(-1, Events::read, [](int, Events) {}), std::system_error);
  Pipe pipe;
  const int closed = ::dup(pipe.read_fd);
  ::close(closed);
  EXPECT_THROW(loop.add_handler(closed, Events::read, [](int, Events) {}), std::system_error);
}

TEST(IOLoopTest, RemoveHandlerOfUnwatchedFdIsNoOp) {
  IOLoop loop;
  fail_on_unhandled(loop);
  Pipe pipe;
  EXPECT_NO_THROW(loop.remove_handler(pipe.read_fd));
  EXPECT_NO_THROW(loop.remove_handler(-1));
  EXPECT_NO_THROW(loop.remove_handler(100000));
}

TEST(IOLoopTest, HangupIsReportedAsError) {
  IOLoop loop;
  fail_on_unhandled(loop);
  Pipe pipe;
  Events seen = Events::none;
  loop.add_handler(pipe.read_fd, Events::read, [&](int fd, Events events) {
    seen = events;
    loop.remove_handler(fd);
    loop.stop();
  });
  ::close(pipe.write_fd);
  pipe.write_fd = ::dup(pipe.read_fd);  // keep the destructor's close() harmless
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_FALSE(guard.fired);
  EXPECT_TRUE(any(seen & Events::error)) << "EPOLLHUP not reported as Events::error";
}

// ---- threads ----------------------------------------------------------------------

TEST(IOLoopTest, AddCallbackFromAnotherThreadWakesSleepingLoop) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool far_timer_ran = false;
  loop.call_later(10s, [&] {
    far_timer_ran = true;
    loop.stop();
  });
  std::atomic<Clock::time_point> sent{};
  double latency_ms = -1;
  std::thread other([&] {
    while (!loop.running()) std::this_thread::yield();
    std::this_thread::sleep_for(30ms);  // let the loop go to sleep in epoll
    sent.store(Clock::now());
    loop.add_callback([&] {
      latency_ms = elapsed_ms(sent.load());
      loop.stop();
    });
  });
  loop.start();
  other.join();
  EXPECT_FALSE(far_timer_ran);
  EXPECT_GE(latency_ms, 0.0);
  EXPECT_LT(latency_ms, 100.0) << "add_callback from another thread did not wake the loop promptly";
}

TEST(IOLoopTest, ManyThreadsAddCallbacksConcurrently) {
  IOLoop loop;
  fail_on_unhandled(loop);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::vector<int>> seen(kThreads);
  int total = 0;
  const auto owner = std::this_thread::get_id();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        loop.add_callback([&, t, i] {
          EXPECT_EQ(std::this_thread::get_id(), owner);
          seen[static_cast<std::size_t>(t)].push_back(i);
          if (++total == kThreads * kPerThread) loop.stop();
        });
      }
    });
  }
  Watchdog guard(loop, 10s);
  loop.start();
  for (auto& th : threads) th.join();
  EXPECT_FALSE(guard.fired);
  EXPECT_EQ(total, kThreads * kPerThread);
  // FIFO per producer thread.
  for (int t = 0; t < kThreads; ++t) {
    const auto& v = seen[static_cast<std::size_t>(t)];
    ASSERT_EQ(v.size(), static_cast<std::size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(v[static_cast<std::size_t>(i)], i);
  }
}

TEST(IOLoopTest, StopFromAnotherThread) {
  IOLoop loop;
  fail_on_unhandled(loop);
  loop.call_later(10s, [&] { loop.stop(); });  // only to bound the test
  std::thread other([&] {
    while (!loop.running()) std::this_thread::yield();
    std::this_thread::sleep_for(20ms);
    loop.stop();
  });
  const auto start = Clock::now();
  loop.start();
  other.join();
  EXPECT_LT(elapsed_ms(start), 1000.0) << "stop() from another thread did not end start() promptly";
  EXPECT_FALSE(loop.running());
}

TEST(IOLoopTest, StopBeforeStartReturnsAfterOneIteration) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool callback_ran = false;
  bool far_timer_ran = false;
  loop.call_later(10s, [&] { far_timer_ran = true; });
  loop.add_callback([&] { callback_ran = true; });
  loop.stop();
  const auto start = Clock::now();
  loop.start();
  EXPECT_LT(elapsed_ms(start), 1000.0);
  EXPECT_TRUE(callback_ran);
  EXPECT_FALSE(far_timer_ran);
  EXPECT_FALSE(loop.running());
  // The stop was consumed: the next start() runs until the next stop().
  int ticks = 0;
  std::function<void()> tick = [&] {
    if (++ticks == 3) {
      loop.stop();
      return;
    }
    loop.call_later(1ms, tick);
  };
  loop.call_later(1ms, tick);
  loop.start();
  EXPECT_EQ(ticks, 3);
}

TEST(IOLoopTest, RunningIsTrueOnlyWhileStarted) {
  IOLoop loop;
  fail_on_unhandled(loop);
  EXPECT_FALSE(loop.running());
  bool inside = false;
  loop.add_callback([&] {
    inside = loop.running();
    loop.stop();
  });
  loop.start();
  EXPECT_TRUE(inside);
  EXPECT_FALSE(loop.running());
}

TEST(IOLoopTest, StartOnNonOwnerThreadThrowsLogicError) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool start_threw = false;
  bool was_running = false;
  std::thread other([&] {
    try {
      loop.start();
    } catch (const std::logic_error&) {
      start_threw = true;
    }
    was_running = loop.running();
  });
  other.join();
  EXPECT_TRUE(start_threw);
  EXPECT_FALSE(was_running);
  EXPECT_FALSE(loop.running());
  // The owner can still run it.
  EXPECT_EQ(loop.run_sync([] { return 1; }), 1);
}

TEST(IOLoopTest, CallLaterFromNonOwnerThreadThrowsLogicError) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool call_later_threw = false;
  bool call_at_threw = false;
  bool add_handler_threw = false;
  bool run_sync_threw = false;
  bool ran = false;
  std::thread other([&] {
    try {
      (void)loop.call_later(1ms, [&] { ran = true; });
    } catch (const std::logic_error&) {
      call_later_threw = true;
    }
    try {
      (void)loop.call_at(Clock::now(), [&] { ran = true; });
    } catch (const std::logic_error&) {
      call_at_threw = true;
    }
    try {
      loop.add_handler(0, Events::read, [&](int, Events) { ran = true; });
    } catch (const std::logic_error&) {
      add_handler_threw = true;
    }
    try {
      loop.run_sync([&] { ran = true; });
    } catch (const std::logic_error&) {
      run_sync_threw = true;
    }
  });
  other.join();
  EXPECT_TRUE(call_later_threw);
  EXPECT_TRUE(call_at_threw);
  EXPECT_TRUE(add_handler_threw);
  EXPECT_TRUE(run_sync_threw);
  EXPECT_FALSE(loop.running());
  EXPECT_EQ(loop.live_fibers(), 0u);
  // Nothing was registered: a short run on the owner thread runs none of them.
  loop.call_later(20ms, [&] { loop.stop(); });
  loop.start();
  EXPECT_FALSE(ran);
}

TEST(IOLoopTest, FromAnotherThreadOnlyTheAnyThreadMethodsWork) {
  // The thread model: add_callback, add_future, spawn, stop and running may be called
  // from any thread; every other method that touches the loop throws
  // std::logic_error there and changes nothing. (stop: StopFromAnotherThread.)
  IOLoop loop;
  fail_on_unhandled(loop);
  Pipe pipe;
  bool handler_ran = false;
  loop.add_handler(pipe.read_fd, Events::read, [&](int, Events) { handler_ran = true; });
  const TimeoutHandle far_timeout = loop.call_later(1h, [] {});
  std::vector<std::string> not_refused;
  bool callback_ran = false, future_callback_ran = false, fiber_ran = false, running_seen = true;
  Promise<int> completed_elsewhere;
  Future<void> fiber;
  std::thread([&] {
    const auto expect_refused = [&](const char* what, const std::function<void()>& call) {
      try {
        call();
        not_refused.push_back(what);
      } catch (const std::logic_error& e) {
        if (std::string(e.what()).find("does not own the loop") == std::string::npos)
          not_refused.push_back(std::string(what) + " (refused for another reason: " + e.what() + ")");
      }
    };
    expect_refused("start", [&] { loop.start(); });
    expect_refused("run_sync", [&] { loop.run_sync([] {}); });
    expect_refused("call_later", [&] { (void)loop.call_later(1ms, [] {}); });
    expect_refused("call_at", [&] { (void)loop.call_at(Clock::now(), [] {}); });
    expect_refused("remove_timeout", [&] { loop.remove_timeout(far_timeout); });
    expect_refused("add_handler", [&] { loop.add_handler(pipe.write_fd, Events::write, [](int, Events) {}); });
    expect_refused("update_handler", [&] { loop.update_handler(pipe.read_fd, Events::read); });
    expect_refused("remove_handler", [&] { loop.remove_handler(pipe.read_fd); });
    expect_refused("set_unhandled_exception_handler", [&] { loop.set_unhandled_exception_handler(nullptr); });
    expect_refused("blocking_executor", [&] { (void)loop.blocking_executor(); });
    running_seen = loop.running();
    loop.add_callback([&] { callback_ran = true; });
    loop.add_future<int>(completed_elsewhere.get_future(),
                         [&](Future<int> f) { future_callback_ran = f.result() == 1; });
    fiber = loop.spawn([&] { fiber_ran = true; });
    completed_elsewhere.set_value(1);
  }).join();
  EXPECT_EQ(not_refused, std::vector<std::string>{}) << "called from another thread and not refused";
  EXPECT_FALSE(running_seen);
  pipe.write_byte();
  loop.run_sync([&] {
    wait_for_future(fiber);
    while (!handler_ran) sleep_for(1ms);  // the refused remove_handler left the handler in place
  }, 5s);
  EXPECT_TRUE(callback_ran);
  EXPECT_TRUE(future_callback_ran);
  EXPECT_TRUE(fiber_ran);
  loop.remove_handler(pipe.read_fd);
  loop.remove_timeout(far_timeout);
}

TEST(IOLoopTest, StartWhileRunningThrowsLogicError) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool threw = false;
  loop.add_callback([&] {
    try {
      loop.start();
    } catch (const std::logic_error&) {
      threw = true;
    }
    loop.stop();
  });
  loop.start();
  EXPECT_TRUE(threw);
}

TEST(IOLoopTest, TwoLoopsOnTwoThreadsRunIndependently) {
  std::atomic<int> ready{0};
  std::atomic<int> failures{0};
  auto body = [&](int id, int* ticks_out, int* result_out) {
    IOLoop loop;
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();
    if (&IOLoop::current() != &loop) failures.fetch_add(1);
    int ticks = 0;
    std::function<void()> tick = [&] {
      ++ticks;
      loop.call_later(1ms, tick);
    };
    loop.call_later(1ms, tick);
    *result_out = loop.run_sync([&] {
      int sum = 0;
      for (int i = 0; i < 20; ++i) {
        sleep_for(1ms);
        if (&IOLoop::current() != &loop) failures.fetch_add(1);
        sum += i;
      }
      return sum * id;
    });
    *ticks_out = ticks;
  };
  int ticks1 = 0, ticks2 = 0, r1 = 0, r2 = 0;
  const auto start = Clock::now();
  std::thread t1(body, 1, &ticks1, &r1);
  std::thread t2(body, 2, &ticks2, &r2);
  t1.join();
  t2.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(r1, 190);
  EXPECT_EQ(r2, 380);
  EXPECT_GT(ticks1, 3);
  EXPECT_GT(ticks2, 3);
  EXPECT_LT(elapsed_ms(start), 2000.0);
}

TEST(IOLoopTest, LoopOnAnotherThreadWhileOneRunsHere) {
  // A loop running on this thread must not be disturbed by one on another thread
  // being created, run and destroyed.
  // Ours ticks until theirs is done and then a few times more; how fast depends on
  // the machine's load, so only the watchdog's 10 s bound is about time.
  IOLoop loop;
  fail_on_unhandled(loop);
  std::atomic<bool> other_done{false};
  std::atomic<int> other_result{0};
  int ticks = 0, ticks_after_other_done = 0;
  std::function<void()> tick = [&] {
    ++ticks;
    if (other_done && ++ticks_after_other_done == 3) {
      loop.stop();
      return;
    }
    loop.call_later(1ms, tick);
  };
  loop.call_later(1ms, tick);
  std::thread other([&] {
    IOLoop theirs;
    other_result = theirs.run_sync([] {
      sleep_for(5ms);
      return 5;
    });
    other_done = true;
  });
  Watchdog guard(loop, 10s);
  loop.start();
  other.join();
  EXPECT_FALSE(guard.fired) << "our loop stopped ticking after " << ticks << " ticks";
  EXPECT_TRUE(other_done.load());
  EXPECT_EQ(other_result.load(), 5);
}

TEST(IOLoopTest, AddFutureRunsCallbackOnLoopThreadWhenCompletedOnAnotherThread) {
  IOLoop loop;
  fail_on_unhandled(loop);
  Promise<int> p;
  const auto owner = std::this_thread::get_id();
  std::thread::id ran_on;
  int value = 0;
  loop.add_future<int>(p.get_future(), [&](Future<int> f) {
    ran_on = std::this_thread::get_id();
    value = f.result();
    loop.stop();
  });
  std::thread other([&] {
    while (!loop.running()) std::this_thread::yield();
    std::this_thread::sleep_for(10ms);
    p.set_value(123);
  });
  Watchdog guard(loop, 5s);
  loop.start();
  other.join();
  EXPECT_FALSE(guard.fired);
  EXPECT_EQ(ran_on, owner);
  EXPECT_EQ(value, 123);
}

TEST(IOLoopTest, AddFutureOnDoneFutureRunsOnLaterIteration) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool ran = false;
  loop.add_future<void>(make_exceptional_future<void>(std::make_exception_ptr(CustomError(4))), [&](Future<void> f) {
    ran = true;
    EXPECT_THROW(f.result(), CustomError);
    loop.stop();
  });
  EXPECT_FALSE(ran) << "add_future ran its callback synchronously instead of on the loop";
  Watchdog guard(loop, 5s);
  loop.start();
  EXPECT_TRUE(ran);
}

// ---- unhandled exceptions ----------------------------------------------------------

TEST(IOLoopTest, ExceptionsEscapingCallbacksGoToUnhandledHandlerAndLoopGoesOn) {
  IOLoop loop;
  Pipe pipe;
  pipe.write_byte();
  std::vector<int> codes;
  std::vector<std::string> wheres;
  loop.set_unhandled_exception_handler([&](std::exception_ptr e, const std::string& where) {
    wheres.push_back(where);
    try {
      std::rethrow_exception(e);
    } catch (const CustomError& err) {
      codes.push_back(err.code());
    } catch (...) {
      codes.push_back(-1);
    }
  });
  loop.add_callback([] { throw CustomError(1); });
  loop.call_later(1ms, [] { throw CustomError(2); });
  loop.add_handler(pipe.read_fd, Events::read, [&](int fd, Events) {
    loop.remove_handler(fd);
    throw CustomError(3);
  });
  loop.call_later(5ms, [] { throw 42; });  // not even a std::exception
  bool later_ran = false;
  loop.call_later(20ms, [&] {
    later_ran = true;
    loop.stop();
  });
  Watchdog guard(loop, 5s);
  EXPECT_NO_THROW(loop.start());
  EXPECT_FALSE(guard.fired);
  EXPECT_TRUE(later_ran);
  ASSERT_EQ(codes.size(), 4u);
  std::vector<int> sorted = codes;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int>{-1, 1, 2, 3}));
  for (const auto& w : wheres) EXPECT_FALSE(w.empty());
}

TEST(IOLoopTest, ThrowingUnhandledHandlerDoesNotStopTheLoop) {
  IOLoop loop;
  loop.set_unhandled_exception_handler([](std::exception_ptr, const std::string&) { throw std::runtime_error("x"); });
  bool after = false;
  loop.add_callback([] { throw CustomError(1); });
  loop.add_callback([&] {
    after = true;
    loop.stop();
  });
  const std::string printed = capture_stderr([&] { EXPECT_NO_THROW(loop.start()); });
  EXPECT_TRUE(after);
  EXPECT_NE(printed.find("the unhandled-exception handler threw"), std::string::npos) << printed;
}

TEST(IOLoopTest, DefaultUnhandledHandlerPrintsToStderr) {
  IOLoop loop;
  loop.add_callback([] { throw std::runtime_error("default-report-marker"); });
  loop.add_callback([&] { loop.stop(); });
  const std::string err = capture_stderr([&] { loop.start(); });
  EXPECT_NE(err.find("default-report-marker"), std::string::npos) << err;
}

// ---- current() --------------------------------------------------------------------

TEST(IOLoopTest, CurrentReturnsRunningLoopElseMostRecentAlive) {
  IOLoop a;
  EXPECT_EQ(&IOLoop::current(), &a);
  {
    IOLoop b;
    EXPECT_EQ(&IOLoop::current(), &b);
    IOLoop* inside = nullptr;
    a.add_callback([&] {
      inside = &IOLoop::current();
      a.stop();
    });
    a.start();
    EXPECT_EQ(inside, &a) << "current() inside a running loop is not that loop";
    EXPECT_EQ(&IOLoop::current(), &b);
    IOLoop* in_fiber_loop = nullptr;
    a.run_sync([&] { in_fiber_loop = &IOLoop::current(); });
    EXPECT_EQ(in_fiber_loop, &a);
  }
  EXPECT_EQ(&IOLoop::current(), &a);
}

TEST(IOLoopTest, CurrentAfterDestroyingNewestReturnsOlder) {
  auto a = std::make_unique<IOLoop>();
  auto b = std::make_unique<IOLoop>();
  auto c = std::make_unique<IOLoop>();
  EXPECT_EQ(&IOLoop::current(), c.get());
  b.reset();  // not the newest
  EXPECT_EQ(&IOLoop::current(), c.get());
  c.reset();
  EXPECT_EQ(&IOLoop::current(), a.get());
}

TEST(IOLoopTest, CurrentOnThreadWithoutLoopReturnsPerThreadDefault) {
  IOLoop here;
  IOLoop* first = nullptr;
  IOLoop* second = nullptr;
  int callbacks = 0;
  std::thread other([&] {
    first = &IOLoop::current();
    second = &IOLoop::current();
    first->add_callback([&] {
      ++callbacks;
      first->stop();
    });
    first->start();
  });
  other.join();
  EXPECT_NE(first, nullptr);
  EXPECT_EQ(first, second);
  EXPECT_NE(first, &here);
  EXPECT_EQ(callbacks, 1);
}

TEST(IOLoopTest, PerThreadDefaultLoopThatRanFibersIsDestroyedCleanlyAtThreadExit) {
  // The per-thread default loop lives in a thread_local and is destroyed when its
  // thread exits; if it ever ran a fiber, that destruction must not crash. Run in a
  // child process so a crash fails this test only.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        int result = 0;
        std::thread other([&] { result = IOLoop::current().run_sync([] { return 6; }); });
        other.join();
        std::exit(result == 6 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// ---- lifetime ---------------------------------------------------------------------

TEST(IOLoopTest, ManyLoopsOneAfterAnotherOnOneThread) {
  for (int i = 0; i < 200; ++i) {
    IOLoop loop;
    const int r = loop.run_sync([&loop, i] {
      Future<int> inner = loop.spawn([i] {
        sleep_for(0ms);
        return i * 2;
      });
      return wait_for_future(inner) + 1;
    });
    ASSERT_EQ(r, i * 2 + 1) << "loop #" << i;
    ASSERT_EQ(loop.live_fibers(), 0u);
  }
}

TEST(IOLoopTest, DestroyingLoopDropsPendingWorkWithoutRunningIt) {
  auto token = std::make_shared<int>(0);
  bool ran = false;
  Pipe pipe;
  pipe.write_byte();
  {
    IOLoop loop;
    loop.add_callback([token, &ran] { ran = true; });
    loop.call_later(1ms, [token, &ran] { ran = true; });
    loop.call_later(10s, [token, &ran] { ran = true; });
    loop.add_handler(pipe.read_fd, Events::read, [token, &ran](int, Events) { ran = true; });
    EXPECT_EQ(token.use_count(), 5);
    std::this_thread::sleep_for(5ms);  // the 1 ms timeout is due, the pipe readable
  }
  EXPECT_FALSE(ran);
  EXPECT_EQ(token.use_count(), 1) << "the loop leaked callbacks";
}

TEST(IOLoopTest, DestroyingStoppedLoopDropsLeftoverWork) {
  auto token = std::make_shared<int>(0);
  bool nested_callback_ran = false;
  bool timeout_ran = false;
  {
    IOLoop loop;
    loop.add_callback([&] {
      // Queued while the callback phase runs: it belongs to the next iteration,
      // which a stopped loop never starts.
      loop.add_callback([token, &nested_callback_ran] { nested_callback_ran = true; });
      loop.call_later(1s, [token, &timeout_ran] { timeout_ran = true; });
      loop.stop();
    });
    loop.start();
  }
  EXPECT_EQ(token.use_count(), 1);
  EXPECT_FALSE(nested_callback_ran) << "start() ran an iteration past stop()";
  EXPECT_FALSE(timeout_ran);
}

TEST(IOLoopTest, DestroyingLoopDropsCallbackAddedFromAnotherThread) {
  auto token = std::make_shared<int>(0);
  bool ran = false;
  {
    IOLoop loop;
    std::thread other([&loop, token, &ran] { loop.add_callback([token, &ran] { ran = true; }); });
    other.join();
  }
  EXPECT_FALSE(ran);
  EXPECT_EQ(token.use_count(), 1);
}

TEST(IOLoopTest, AddFutureCompletedAfterLoopDestroyedIsDropped) {
  // A future outliving the loop it was handed to with add_future(): completing it
  // later must not touch the destroyed loop (the pending add_future is pending work
  // the destructor drops). Run in a child process so memory corruption or a
  // sanitizer report (or a hang: SIGALRM after 3 s) fails this test only.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ::alarm(3);  // a spin on freed memory must fail the test, not hang it
        bool ran = false;
        Promise<int> p;
        Future<int> f = p.get_future();
        {
          auto loop = std::make_unique<IOLoop>();
          loop->add_future<int>(f, [&](Future<int>) { ran = true; });
        }
        // Scribble over freed memory so a use-after-free is more likely to show.
        std::vector<std::unique_ptr<char[]>> junk;
        for (int i = 0; i < 64; ++i) {
          junk.emplace_back(new char[sizeof(IOLoop)]);
          std::fill_n(junk.back().get(), sizeof(IOLoop), static_cast<char>(0xA5));
        }
        p.set_value(1);
        std::exit(ran ? 2 : 0);
      },
      ::testing::ExitedWithCode(0), "");
}

// ---- run_sync ---------------------------------------------------------------------

TEST(IOLoopTest, RunSyncReturnsInt) {
  IOLoop loop;
  fail_on_unhandled(loop);
  EXPECT_EQ(loop.run_sync([] { return 42; }), 42);
}

TEST(IOLoopTest, RunSyncReturnsString) {
  IOLoop loop;
  fail_on_unhandled(loop);
  std::string s = loop.run_sync([] {
    sleep_for(1ms);
    return std::string(1000, 'z');
  });
  EXPECT_EQ(s, std::string(1000, 'z'));
}

TEST(IOLoopTest, RunSyncReturnsMoveOnly) {
  IOLoop loop;
  fail_on_unhandled(loop);
  std::unique_ptr<int> p = loop.run_sync([] { return std::make_unique<int>(17); });
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 17);
}

TEST(IOLoopTest, RunSyncVoid) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool ran = false;
  loop.run_sync([&] {
    sleep_for(1ms);
    ran = true;
  });
  EXPECT_TRUE(ran);
  static_assert(std::is_void_v<decltype(loop.run_sync([] {}))>);
}

TEST(IOLoopTest, RunSyncRethrows) {
  IOLoop loop;
  fail_on_unhandled(loop);
  try {
    loop.run_sync([]() -> int {
      sleep_for(1ms);
      throw CustomError(77);
    });
    FAIL() << "run_sync did not throw";
  } catch (const CustomError& e) {
    EXPECT_EQ(e.code(), 77);
  } catch (...) {
    FAIL() << "run_sync lost the exception's dynamic type";
  }
  EXPECT_FALSE(loop.running());
  EXPECT_EQ(loop.run_sync([] { return 1; }), 1);
}

TEST(IOLoopTest, RunSyncRunsLoopWorkMeanwhile) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool callback_ran = false;
  bool timer_ran = false;
  loop.add_callback([&] { callback_ran = true; });
  loop.call_later(2ms, [&] { timer_ran = true; });
  loop.run_sync([] { sleep_for(20ms); });
  EXPECT_TRUE(callback_ran);
  EXPECT_TRUE(timer_ran);
}

TEST(IOLoopTest, RunSyncThrowsTimeoutErrorAndLoopIsReusable) {
  IOLoop loop;
  fail_on_unhandled(loop);
  Promise<int> never_yet;
  Future<int> f = never_yet.get_future();
  bool first_finished = false;
  const auto start = Clock::now();
  EXPECT_THROW(loop.run_sync(
                   [&] {
                     int v = wait_for_future(f);
                     first_finished = true;
                     return v;
                   },
                   30ms),
               TimeoutError);
  EXPECT_GE(elapsed_ms(start), 25.0);
  EXPECT_LT(elapsed_ms(start), 1000.0);
  EXPECT_FALSE(loop.running());
  EXPECT_EQ(loop.live_fibers(), 1u);  // the timed-out fiber stays suspended
  // The loop works again; the suspended fiber finishes once its future completes.
  never_yet.set_value(5);
  EXPECT_EQ(loop.run_sync([] {
    sleep_for(5ms);
    return 8;
  }),
            8);
  EXPECT_TRUE(first_finished);
  EXPECT_EQ(loop.live_fibers(), 0u);
  // And a timeout that is not reached does not fire later.
  EXPECT_EQ(loop.run_sync([] { return 9; }, 5s), 9);
  EXPECT_EQ(loop.run_sync([] {
    sleep_for(10ms);
    return 10;
  }),
            10);
}

TEST(IOLoopTest, RunSyncTimeoutIsATimeoutErrorAndError) {
  IOLoop loop;
  fail_on_unhandled(loop);
  EXPECT_THROW(loop.run_sync([] { sleep_for(5s); }, 10ms), Error);
  // Destroying the loop unwinds the still-suspended fiber (its wait throws LoopClosed).
}

TEST(IOLoopTest, RunSyncFromInsideLoopCallbackThrowsLogicError) {
  IOLoop loop;
  fail_on_unhandled(loop);
  bool threw = false;
  bool inner_ran = false;
  loop.add_callback([&] {
    try {
      loop.run_sync([&] { inner_ran = true; });
    } catch (const std::logic_error&) {
      threw = true;
    }
    loop.stop();
  });
  loop.start();
  EXPECT_TRUE(threw);
  EXPECT_FALSE(inner_ran);
  EXPECT_EQ(loop.live_fibers(), 0u);
}

TEST(IOLoopTest, RunSyncOfAnotherLoopFromInsideCallbackThrowsLogicError) {
  IOLoop outer;
  IOLoop inner;
  bool threw = false;
  outer.add_callback([&] {
    try {
      inner.run_sync([] {});
    } catch (const std::logic_error&) {
      threw = true;
    }
    outer.stop();
  });
  outer.start();
  EXPECT_TRUE(threw);
  EXPECT_EQ(inner.run_sync([] { return 3; }), 3);
}

// ---- timeout handles are bound to their loop (issue 16, item 2) -------------------

// Timer ids start over in every loop: a handle of one loop must name nothing in
// another. (Before: b lost its first timer, which had the same slot and id.)
TEST(IOLoopTest, RemoveTimeoutWithAnotherLoopsHandleIsANoOp) {
  IOLoop a;
  IOLoop b;
  const TimeoutHandle of_a = a.call_later(1h, [] {});
  bool fired = false;
  b.call_later(5ms, [&] {
    fired = true;
    b.stop();
  });
  b.remove_timeout(of_a);
  b.call_later(2s, [&] { b.stop(); });  // a safety stop, so a failure does not hang
  b.start();
  EXPECT_TRUE(fired);
  EXPECT_FALSE(of_a == TimeoutHandle{});
}

// ---- huge and negative delays (issue 16, item 3) ---------------------------------

TEST(IOLoopTest, CallLaterWithAHugeDelayNeverRunsAndTheLoopSleeps) {
  IOLoop loop;
  int ran = 0;
  loop.call_later(std::chrono::nanoseconds::max(), [&] { ++ran; });
  loop.call_later(std::chrono::hours::max(), [&] { ++ran; });
  loop.call_later(std::chrono::seconds::max(), [&] { ++ran; });
  loop.call_later(std::chrono::duration<double>(1e300), [&] { ++ran; });
  // Far in the future but representable: the poll timeout must not overflow either.
  loop.call_at(Clock::now() + std::chrono::hours(24 * 365 * 200), [&] { ++ran; });
  bool stopped = false;
  loop.call_later(100ms, [&] {
    stopped = true;
    loop.stop();
  });
  const double cpu_before = testing::thread_cpu_ms();
  const auto start = Clock::now();
  loop.start();
  EXPECT_TRUE(stopped);
  EXPECT_EQ(ran, 0) << "a huge delay overflowed into the past";
  EXPECT_GE(elapsed_ms(start), 90.0);
  EXPECT_LT(testing::thread_cpu_ms() - cpu_before, 50.0) << "the loop spun instead of sleeping";
}

TEST(IOLoopTest, CallLaterWithANegativeDelayRunsOnTheNextIteration) {
  IOLoop loop;
  std::vector<int> order;
  loop.call_later(std::chrono::nanoseconds::min(), [&] { order.push_back(1); });
  loop.call_later(std::chrono::hours::min(), [&] { order.push_back(2); });
  loop.call_later(std::chrono::duration<double>(-1e300), [&] { order.push_back(3); });
  loop.call_later(-1ms, [&] { order.push_back(4); });
  loop.call_later(0ms, [&] { loop.stop(); });
  loop.call_later(2s, [&] { loop.stop(); });  // safety stop
  const auto start = Clock::now();
  loop.start();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_LT(elapsed_ms(start), 1000.0);
}

TEST(IOLoopTest, RunSyncWithAHugeTimeoutDoesNotTimeOut) {
  IOLoop loop;
  EXPECT_EQ(loop.run_sync([] { sleep_for(10ms); return 1; }, std::chrono::nanoseconds::max()), 1);
  EXPECT_EQ(loop.run_sync([] { sleep_for(10ms); return 2; }, std::chrono::hours::max()), 2);
  EXPECT_EQ(loop.run_sync([] { sleep_for(10ms); return 3; }, std::chrono::duration<double>(1e300)), 3);
  EXPECT_THROW(loop.run_sync([] { sleep_for(1s); }, std::chrono::nanoseconds::min()), TimeoutError);
  EXPECT_THROW(loop.run_sync([] { sleep_for(1s); }, std::chrono::hours::min()), TimeoutError);
}

// ---- a slot whose fd was closed behind the loop's back (issue 16, item 4) ----------

// epoll forgets a closed fd; so may the loop: a new fd with the same number gets a
// handler, and the stale one never runs. (Before: EEXIST, for good.)
TEST(IOLoopTest, AddHandlerReplacesAStaleSlotWhoseFdWasClosedAndReportsIt) {
  IOLoop loop;
  testing::ReportLog reports(loop);
  bool stale_ran = false, fresh_ran = false;
  auto old_pipe = std::make_unique<Pipe>();
  const int fd = old_pipe->read_fd;
  loop.add_handler(fd, Events::read, [&](int, Events) { stale_ran = true; });
  old_pipe.reset();  // closes fd without remove_handler()
  Pipe fresh;
  if (fresh.read_fd != fd) {  // take the old number
    ASSERT_EQ(::dup2(fresh.read_fd, fd), fd);
    ::close(fresh.read_fd);
    fresh.read_fd = fd;
  }
  ASSERT_NO_THROW(loop.add_handler(fd, Events::read, [&](int, Events) {
    fresh_ran = true;
    loop.stop();
  }));
  fresh.write_byte();
  loop.call_later(2s, [&] { loop.stop(); });  // safety stop
  loop.start();
  EXPECT_TRUE(fresh_ran);
  EXPECT_FALSE(stale_ran);
  ASSERT_EQ(reports.size(), 1u) << "closing a watched fd without remove_handler() must not pass silently";
  EXPECT_NE(reports[0].first.find("was closed while it had a handler"), std::string::npos) << reports[0].first;
  // A handler whose fd is still open stays protected.
  EXPECT_THROW(loop.add_handler(fd, Events::read, [](int, Events) {}), std::system_error);
  loop.remove_handler(fd);
}

// ---- epoll_pwait2 refused (issue 16, item 6) ---------------------------------------

std::atomic<int> pwait2_calls{0};

int refused_epoll_pwait2(int, epoll_event*, int, const timespec*) {
  ++pwait2_calls;
  errno = EPERM;  // what a seccomp profile that does not know the call answers
  return -1;
}

int interrupted_once_epoll_pwait2(int epfd, epoll_event* events, int max, const timespec* timeout) {
  if (pwait2_calls++ == 0) {
    errno = EINTR;
    return -1;
  }
  return ::epoll_pwait2(epfd, events, max, timeout, nullptr);
}

/// Installs a replacement for epoll_pwait2 for the test's duration.
struct Pwait2Replaced {
  explicit Pwait2Replaced(detail::EpollPwait2 fn) {
    pwait2_calls = 0;
    detail::replace_epoll_pwait2_for_testing(fn);
  }
  ~Pwait2Replaced() { detail::replace_epoll_pwait2_for_testing(nullptr); }
};

TEST(IOLoopPollTest, EpollPwait2RefusedFallsBackToEpollWaitOnceAndTheLoopSleeps) {
  Pwait2Replaced replaced(&refused_epoll_pwait2);
  IOLoop loop;
  bool fired = false;
  loop.call_later(200ms, [&] {
    fired = true;
    loop.stop();
  });
  const double cpu_before = testing::thread_cpu_ms();
  const auto start = Clock::now();
  loop.start();
  // Generous: an idle loop uses well under 5 ms of CPU in 200 ms; a spinning one ~200.
  EXPECT_LT(testing::thread_cpu_ms() - cpu_before, 50.0) << "the loop spun";
  EXPECT_TRUE(fired);
  EXPECT_GE(elapsed_ms(start), 190.0);
  EXPECT_EQ(pwait2_calls, 1);
  EXPECT_TRUE(detail::polling_with_epoll_wait());

  // The loop still works: fd handlers, and wakes from another thread.
  Pipe pipe;
  bool readable = false;
  loop.add_handler(pipe.read_fd, Events::read, [&](int, Events) {
    readable = true;
    pipe.read_byte();
    loop.stop();
  });
  std::thread writer([&] {
    std::this_thread::sleep_for(20ms);
    pipe.write_byte();
  });
  loop.call_later(5s, [&] { loop.stop(); });  // safety stop
  loop.start();
  writer.join();
  EXPECT_TRUE(readable);
  loop.remove_handler(pipe.read_fd);
  bool called = false;
  std::thread waker([&] {
    std::this_thread::sleep_for(20ms);
    loop.add_callback([&] {
      called = true;
      loop.stop();
    });
  });
  loop.start();
  waker.join();
  EXPECT_TRUE(called);

  // Remembered for the process: another loop does not try epoll_pwait2 again.
  IOLoop other;
  other.call_later(5ms, [&] { other.stop(); });
  other.start();
  EXPECT_EQ(pwait2_calls, 1);
}

TEST(IOLoopPollTest, EpollPwait2InterruptedIsNoReasonToFallBack) {
  Pwait2Replaced replaced(&interrupted_once_epoll_pwait2);
  IOLoop loop;
  loop.call_later(20ms, [&] { loop.stop(); });
  loop.start();
  EXPECT_GE(pwait2_calls, 2);
  EXPECT_FALSE(detail::polling_with_epoll_wait());
}

// ---- the fixture ------------------------------------------------------------------

class IOLoopTestInFiber : public fiberloop::testing::LoopTest {};

TEST_F(IOLoopTestInFiber, CallbacksAndTimersRunWhileFiberSleeps) {
  run_in_fiber([&] {
    int order = 0;
    int callback_at = -1;
    int timer_at = -1;
    loop_.add_callback([&] { callback_at = order++; });
    loop_.call_later(2ms, [&] { timer_at = order++; });
    sleep_for(20ms);
    EXPECT_EQ(callback_at, 0);
    EXPECT_EQ(timer_at, 1);
  });
}

// The contract's own signatures stay callable as written there (nanoseconds, not
// only any duration): a member pointer of that type, a braced zero delay, and
// run_sync with a nanoseconds timeout; other durations saturate.
TEST(IOLoopTest, ContractSignaturesOfCallLaterAndRunSyncStillWork) {
  IOLoop loop;
  TimeoutHandle (IOLoop::*call_later)(std::chrono::nanoseconds, std::function<void()>) = &IOLoop::call_later;
  bool ran = false;
  (loop.*call_later)(1ms, [&] { ran = true; });
  loop.remove_timeout(loop.call_later({}, [] { ADD_FAILURE() << "removed"; }));
  loop.call_later(std::chrono::hours::max(), [] { ADD_FAILURE() << "a delay too long for the clock came"; });
  EXPECT_EQ(loop.run_sync([&] { sleep_for(5ms); return 3; }, std::chrono::nanoseconds(5s)), 3);
  EXPECT_TRUE(ran);
  EXPECT_EQ(loop.run_sync([] { return 4; }, std::chrono::hours::max()), 4);
}

}  // namespace
}  // namespace fiberloop
