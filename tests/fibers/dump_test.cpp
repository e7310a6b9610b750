// IOLoop::dump() lists every live fiber with its state, what it waits on and where,
// its deadline and its report values; IOLoop::metrics() counts the loop's work.

#include <signal.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include <fiberloop/fiberloop.hpp>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
class DumpTest : public testing::LoopTest {};

/// The dump's line that mentions `needle`, or "" (a test failure).
std::string line_with(const std::string& dump, const std::string& needle) {
  std::size_t at = dump.find(needle);
  if (at == std::string::npos) {
    ADD_FAILURE() << "no line with \"" << needle << "\" in:\n" << dump;
    return {};
  }
  const std::size_t begin = dump.rfind('\n', at) + 1;
  return dump.substr(begin, dump.find('\n', at) - begin);
}

bool has(const std::string& line, const std::string& part) { return line.find(part) != std::string::npos; }

TEST_F(DumpTest, ListsEachFiberWithWhatItWaitsOnAndWhere) {
  run_in_fiber([&] {
    ContextLocal<int> request_id("request_id");
    Promise<void> never;
    Future<void> never_done = never.get_future();
    Semaphore pool(0);
    int promise_line = 0;
    std::vector<Future<void>> fibers;
    {
      auto id = request_id.set(42);
      Deadline deadline(30s);
      fibers.push_back(loop_.spawn("awaits-promise", [&] {
        promise_line = __LINE__ + 1;
        wait_for_future(never_done);
      }));
    }
    fibers.push_back(loop_.spawn("sleeper", [] { sleep_for(400ms); }));
    fibers.push_back(loop_.spawn("pool-waiter", [&] { pool.acquire(); }));
    sleep_for(20ms);  // all three are suspended now

    const std::string dump = loop_.dump();
    EXPECT_TRUE(has(dump, "4 live fiber(s)")) << dump;

    const std::string promise = line_with(dump, "\"awaits-promise\"");
    EXPECT_TRUE(has(promise, "suspended in wait_for_future() at ")) << promise;
    EXPECT_TRUE(has(promise, std::string("dump_test.cpp:") + std::to_string(promise_line))) << promise;
    EXPECT_TRUE(has(promise, "request_id=42")) << promise;
    EXPECT_TRUE(has(promise, "deadline +")) << promise;

    const std::string sleeper = line_with(dump, "\"sleeper\"");
    EXPECT_TRUE(has(sleeper, "suspended in sleep_for()")) << sleeper;
    EXPECT_TRUE(has(sleeper, "until +")) << sleeper;
    EXPECT_FALSE(has(sleeper, "request_id")) << sleeper;

    const std::string waiter = line_with(dump, "\"pool-waiter\"");
    EXPECT_TRUE(has(waiter, "suspended in Semaphore::acquire")) << waiter;

    // The fiber calling dump() is running.
    EXPECT_TRUE(has(dump, ": running")) << dump;

    pool.release();
    never.set_value();
    wait_for_future(fibers[0]);
    wait_for_future(fibers[2]);
    EXPECT_FALSE(has(loop_.dump(), "awaits-promise"));
    wait_for_future(fibers[1]);
  });
}

TEST_F(DumpTest, AFiberNotYetStartedIsReady) {
  run_in_fiber([&] {
    Future<void> later = loop_.spawn("not-started", [] {});
    EXPECT_TRUE(has(line_with(loop_.dump(), "\"not-started\""), "ready")) << loop_.dump();
    wait_for_future(later);
  });
}

TEST_F(DumpTest, MetricsCountFibersSwitchesCallbacksAndTimers) {
  run_in_fiber([&] {
    const IOLoopMetrics before = loop_.metrics();
    EXPECT_EQ(before.fibers_alive, 1u);  // this one
    std::vector<Future<void>> fibers;
    for (int i = 0; i < 10; ++i) fibers.push_back(loop_.spawn([] { sleep_for(1ms); }));
    for (auto& f : fibers) wait_for_future(f);
    int callbacks = 0;
    for (int i = 0; i < 5; ++i) loop_.add_callback([&callbacks] { ++callbacks; });
    TimeoutHandle pending = loop_.call_later(1h, [] {});
    sleep_for(5ms);
    const IOLoopMetrics after = loop_.metrics();
    EXPECT_EQ(callbacks, 5);
    EXPECT_EQ(after.fibers_created - before.fibers_created, 10u);
    EXPECT_EQ(after.fibers_alive, 1u);
    // Each of the ten ran at least twice (start, after its sleep); this one resumed too.
    EXPECT_GE(after.context_switches - before.context_switches, 21u);
    // Five callbacks, ten sleep timeouts and this fiber's, at least.
    EXPECT_GE(after.callbacks_run - before.callbacks_run, 16u);
    EXPECT_GT(after.loop_iterations, before.loop_iterations);
    EXPECT_EQ(after.timers_pending, before.timers_pending + 1);
    EXPECT_EQ(after.watchdog_reports, 0u);
    EXPECT_EQ(after.blocking_queue_depth, 0u);
    loop_.remove_timeout(pending);
    EXPECT_EQ(loop_.metrics().timers_pending, before.timers_pending);
  });
}

TEST(DumpOnSignalTest, SigusrOneSendsTheDumpToTheReportHandler) {
  IOLoop::Options options;
  options.dump_on_sigusr1 = true;
  IOLoop loop(options);
  IOLoop quiet;  // without the option: no report
  std::vector<std::string> reports, quiet_reports;
  loop.set_report_handler([&reports](std::string_view report) { reports.emplace_back(report); });
  quiet.set_report_handler([&quiet_reports](std::string_view report) { quiet_reports.emplace_back(report); });
  loop.run_sync([&] {
    Future<void> napper = loop.spawn("napper", [] { sleep_for(300ms); });
    sleep_for(10ms);
    ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
    for (int i = 0; i < 200 && reports.empty(); ++i) sleep_for(5ms);
    wait_for_future(napper);
  });
  quiet.run_sync([] { sleep_for(20ms); });
  IOLoop later(options);  // made after the signal: nothing to answer
  std::vector<std::string> later_reports;
  later.set_report_handler([&later_reports](std::string_view report) { later_reports.emplace_back(report); });
  later.run_sync([] { sleep_for(20ms); });
  EXPECT_TRUE(later_reports.empty()) << later_reports.front();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("SIGUSR1"), std::string::npos) << reports[0];
  EXPECT_NE(reports[0].find("\"napper\": suspended in sleep_for()"), std::string::npos) << reports[0];
  EXPECT_TRUE(quiet_reports.empty());
}

TEST_F(DumpTest, MetricsAndDumpAreForTheOwnerThreadOnly) {
  std::thread other([&] {
    EXPECT_THROW((void)loop_.metrics(), std::logic_error);
    EXPECT_THROW((void)loop_.dump(), std::logic_error);
  });
  other.join();
}

}  // namespace
}  // namespace fiberloop
