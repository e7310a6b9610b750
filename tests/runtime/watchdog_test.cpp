// Tests for the blocking-call watchdog (IOLoop::Options::watchdog_threshold;
// runtime/src/watchdog.hpp): a fiber or callback that holds the loop is reported while
// it blocks, with its name, report values and stack, and again with the total; a loop
// that never blocks reports nothing; the thread exists only with the option and is
// joined promptly.
//
// Timing: the CI machine has 2 vCPUs shared with other tests, and the sanitizers slow
// everything 2-10x (a fiber's start alone has taken 250-380 ms under TSan). Blocks
// last several thresholds, and every "nothing was reported" check leaves the
// watchdog far more slack than a loaded machine needs.

#include <gtest/gtest.h>

#include <dirent.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "loop_internals.hpp"  // runtime/src: the loop's counters
#include "thread_snapshot.hpp"  // runtime/src: the signal the watchdog sends
#include "watchdog.hpp"         // runtime/src: a watchdog with a long patience
#include <fiberloop/detail/loop_counters.hpp>
#include <fiberloop/fiberloop.hpp>

#include "support/helpers.hpp"

// Outside any namespace and not inline: the stack in the report must name it.
extern "C++" __attribute__((noinline)) void fiberloop_test_blocks_the_loop(std::chrono::milliseconds how_long) {
  std::this_thread::sleep_for(how_long);
  asm volatile("");  // no tail call: this frame stays on the stack while it sleeps
}

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr auto kThreshold = 200ms;
constexpr auto kBlock = 1000ms;
#else
constexpr auto kThreshold = 100ms;
constexpr auto kBlock = 300ms;
#endif

/// What reached a loop's report handler, with when it arrived. Thread: any (the
/// watchdog's thread adds, the test's reads).
class Reports {
 public:
  struct Report {
    std::string text;
    Clock::time_point arrived;
  };

  IOLoop::ReportHandler handler() {
    return [this](std::string_view text) {
      std::lock_guard lock(lock_);
      reports_.push_back({std::string(text), Clock::now()});
      changed_.notify_all();
    };
  }
  /// Waits up to `patience` for `n` reports; returns all there are then.
  std::vector<Report> wait_for(std::size_t n, std::chrono::milliseconds patience = 20s) {
    std::unique_lock lock(lock_);
    changed_.wait_for(lock, patience, [&] { return reports_.size() >= n; });
    return reports_;
  }
  std::vector<Report> all() {
    std::lock_guard lock(lock_);
    return reports_;
  }

 private:
  std::mutex lock_;
  std::condition_variable changed_;
  std::vector<Report> reports_;
};

IOLoop::Options with_watchdog(std::chrono::nanoseconds threshold) {
  IOLoop::Options options;
  options.watchdog_threshold = threshold;
  return options;
}

/// The N in "blocked for N ms in total", or -1.
long total_ms_of(const std::string& report) {
  const std::size_t at = report.find("blocked for ");
  if (at == std::string::npos || report.find(" ms in total") == std::string::npos) return -1;
  return std::strtol(report.c_str() + at + 12, nullptr, 10);
}

/// Threads of this process (entries of /proc/self/task).
/// Threads of this process named as the watchdog names its own (by name: a
/// sanitizer may start threads of its own at any time).
int thread_count() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/task");
  if (!dir) return -1;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + entry->d_name + "/comm");
    std::string name;
    if (std::getline(comm, name) && name == "fl-watchdog") ++n;
  }
  ::closedir(dir);
  return n;
}

/// Blocks the watchdog's signal on the calling thread while it lives: the loop's
/// thread then cannot answer, as under a sanitizer that delivers signals late.
class SnapshotSignalBlocked {
 public:
  SnapshotSignalBlocked() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + detail::kSnapshotSignalOffset);
    ::pthread_sigmask(SIG_BLOCK, &set, &saved_);
  }
  ~SnapshotSignalBlocked() {
    // Discard what was sent meanwhile (the watchdog withdrew it), then unblock.
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGRTMIN + detail::kSnapshotSignalOffset)) {
      sigset_t only;
      sigemptyset(&only);
      sigaddset(&only, SIGRTMIN + detail::kSnapshotSignalOffset);
      siginfo_t info;
      const timespec no_wait{0, 0};
      while (::sigtimedwait(&only, &info, &no_wait) > 0) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
  }
  SnapshotSignalBlocked(const SnapshotSignalBlocked&) = delete;
  SnapshotSignalBlocked& operator=(const SnapshotSignalBlocked&) = delete;

 private:
  sigset_t saved_;
};

TEST(WatchdogTest, ReportsABlockingFiberWhileItBlocksWithItsNameValuesAndStack) {
  IOLoop loop(with_watchdog(kThreshold));
  Reports reports;
  loop.set_report_handler(reports.handler());
  ContextLocal<int> request_id("request_id");
  Clock::time_point sleep_ended;
  loop.run_sync([&] {
    wait_for_future(loop.spawn("slow-handler", [&] {
      auto scope = request_id.set(42);
      fiberloop_test_blocks_the_loop(kBlock);
      sleep_ended = Clock::now();
    }));
  });
  // One slice held the loop: one report while it blocked, one with the total.
  const std::vector<Reports::Report> got = reports.wait_for(2);
  ASSERT_EQ(got.size(), 2u);
  const std::string& blocking = got[0].text;
  EXPECT_NE(blocking.find("fiberloop: watchdog: the loop has been blocked for "), std::string::npos) << blocking;
  EXPECT_NE(blocking.find("by fiber \"slow-handler\" (request_id=42)"), std::string::npos) << blocking;
  EXPECT_NE(blocking.find("fiberloop_test_blocks_the_loop"), std::string::npos) << blocking;
  EXPECT_LT(got[0].arrived, sleep_ended) << "the report came only after the loop was free again:\n" << blocking;
  const std::string& closing = got[1].text;
  EXPECT_NE(closing.find("by fiber \"slow-handler\" (request_id=42)"), std::string::npos) << closing;
  EXPECT_GE(total_ms_of(closing), std::chrono::milliseconds(kBlock).count()) << closing;
  EXPECT_GT(got[1].arrived, sleep_ended);
  const IOLoopMetrics metrics = loop.metrics();
  EXPECT_EQ(metrics.watchdog_reports, 1u);  // counts slices: two reports each
  EXPECT_GE(metrics.longest_slice, kThreshold);
  EXPECT_LE(metrics.longest_slice, kBlock + 10s);
}

TEST(WatchdogTest, ReportsABlockingCallbackAsACallbackRegisteredInItsFiber) {
  IOLoop loop(with_watchdog(kThreshold));
  Reports reports;
  loop.set_report_handler(reports.handler());
  loop.run_sync([&] {
    wait_for_future(loop.spawn("checkout", [&] {
      Promise<void> done;
      Future<void> finished = done.get_future();
      loop.add_callback([&done] {
        fiberloop_test_blocks_the_loop(kBlock);
        done.set_value();
      });
      wait_for_future(std::move(finished));
    }));
  });
  const std::vector<Reports::Report> got = reports.wait_for(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NE(got[0].text.find("by a callback registered in fiber \"checkout\";"), std::string::npos) << got[0].text;
  EXPECT_NE(got[0].text.find("fiberloop_test_blocks_the_loop"), std::string::npos) << got[0].text;
  EXPECT_NE(got[1].text.find("in total by a callback registered in fiber \"checkout\""), std::string::npos)
      << got[1].text;
  EXPECT_EQ(loop.metrics().watchdog_reports, 1u);
}

TEST(WatchdogTest, ALoopThatNeverBlocksReportsNothing) {
  IOLoop loop(with_watchdog(kThreshold));
  Reports reports;
  loop.set_report_handler(reports.handler());
  const auto until = Clock::now() + 5 * kThreshold;
  loop.run_sync([&] {
    std::vector<Future<void>> workers;
    for (int w = 0; w < 4; ++w) {
      workers.push_back(loop.spawn("worker", [&] {
        while (Clock::now() < until) {
          int ran = 0;
          for (int i = 0; i < 20; ++i) loop.add_callback([&ran] { ++ran; });
          Promise<void> tick;
          Future<void> ticked = tick.get_future();
          loop.call_later(1ms, [&tick] { tick.set_value(); });
          wait_for_future(std::move(ticked));
        }
      }));
    }
    for (Future<void>& worker : workers) wait_for_future(std::move(worker));
  });
  // Let the watchdog take a few more samples of the stopped loop.
  std::this_thread::sleep_for(kThreshold);
  EXPECT_TRUE(reports.all().empty()) << reports.all().front().text;
  EXPECT_EQ(loop.metrics().watchdog_reports, 0u);
  EXPECT_LT(loop.metrics().longest_slice, kThreshold);
}

TEST(WatchdogTest, OnlyALoopWithTheOptionHasAWatchdogThread) {
  const int before = thread_count();
  {
    IOLoop plain;
    EXPECT_EQ(thread_count(), before);
  }
  {
    IOLoop watched(with_watchdog(kThreshold));
    EXPECT_EQ(thread_count(), before + 1);
  }
  EXPECT_EQ(thread_count(), before);
}

TEST(WatchdogTest, ALoopThatIsNotRunningIsNotBlocked) {
  IOLoop loop(with_watchdog(10ms));
  Reports reports;
  loop.set_report_handler(reports.handler());
  loop.run_sync([] {});
  std::this_thread::sleep_for(200ms);  // the loop's thread is busy, but not in the loop
  loop.run_sync([] {});
  EXPECT_TRUE(reports.all().empty()) << reports.all().front().text;
}

TEST(WatchdogTest, ReportsEvenWhenTheStackCannotBeCaptured) {
  IOLoop loop(with_watchdog(kThreshold));
  Reports reports;
  loop.set_report_handler(reports.handler());
  loop.run_sync([&] {
    wait_for_future(loop.spawn("deaf", [&] {
      SnapshotSignalBlocked deaf;
      fiberloop_test_blocks_the_loop(kBlock);
    }));
  });
  const std::vector<Reports::Report> got = reports.wait_for(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NE(got[0].text.find("the loop has been blocked for"), std::string::npos) << got[0].text;
  EXPECT_NE(got[0].text.find("its stack could not be captured: the loop's thread did not answer"), std::string::npos)
      << got[0].text;
  EXPECT_NE(got[1].text.find("in total by a callback or fiber"), std::string::npos) << got[1].text;
  EXPECT_GE(total_ms_of(got[1].text), std::chrono::milliseconds(kBlock).count()) << got[1].text;
  EXPECT_EQ(loop.metrics().watchdog_reports, 1u);
}

TEST(WatchdogTest, DestroyingTheLoopJoinsTheWatchdogPromptly) {
  const int before = thread_count();
  const auto started = Clock::now();
  {
    IOLoop loop(with_watchdog(10s));  // sampling every 250 ms
    loop.run_sync([] {});
  }
  EXPECT_LT(Clock::now() - started, 200ms) << "the destructor waited for the watchdog's next sample";
  EXPECT_EQ(thread_count(), before);
}

TEST(WatchdogTest, DestroyingAWatchdogAbandonsTheCaptureInFlight) {
  IOLoop loop;
  Reports reports;
  loop.set_report_handler(reports.handler());
  detail::LoopCounters& counters = detail::LoopInternals::counters(loop);
  // A watchdog that would wait a minute for the loop's thread to answer its signal.
  auto watchdog = std::make_unique<detail::Watchdog>(loop, kThreshold, std::chrono::minutes(1));
  Clock::duration destruction{};
  loop.run_sync([&] {
    SnapshotSignalBlocked deaf;
    // The count goes up as the watchdog starts the capture it then waits on.
    while (counters.watchdog_reports.load() == 0) std::this_thread::sleep_for(1ms);
    const auto began = Clock::now();
    watchdog.reset();
    destruction = Clock::now() - began;
  });
  EXPECT_LT(destruction, 10s);  // not the minute: the capture was abandoned
  const std::vector<Reports::Report> got = reports.all();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NE(got[0].text.find("its stack could not be captured: the watchdog stopped"), std::string::npos)
      << got[0].text;
  EXPECT_NE(got[1].text.find("in total"), std::string::npos) << got[1].text;
}

}  // namespace
}  // namespace fiberloop
