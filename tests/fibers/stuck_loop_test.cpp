// The stuck-loop report: a loop idle with fibers suspended and nothing registered
// that could wake them reports a probable deadlock with its dump, and run_sync can
// throw it instead of hanging.

#include <unistd.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include <fiberloop/fiberloop.hpp>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::elapsed_ms;

IOLoop::Options stuck_options(std::chrono::nanoseconds grace, bool throw_when_stuck) {
  IOLoop::Options options;
  options.stuck_loop_grace = grace;
  options.throw_when_stuck = throw_when_stuck;
  return options;
}

TEST(StuckLoopTest, RunSyncThrowsTheDumpWhenAFiberWaitsOnAPromiseNobodySets) {
  IOLoop loop(stuck_options(200ms, true));
  std::vector<std::string> reports;
  loop.set_report_handler([&reports](std::string_view report) { reports.emplace_back(report); });
  Promise<void> kept_alive_never_set;
  const auto start = Clock::now();
  try {
    loop.run_sync([&] {
      Future<void> forgotten = loop.spawn("forgotten", [f = kept_alive_never_set.get_future()] { wait_for_future(f); });
      ContextLocal<int> request_id("request_id");
      auto id = request_id.set(7);
      Promise<void> also_never;
      wait_for_future(also_never.get_future());
    });
    FAIL() << "run_sync returned";
  } catch (const StuckLoopError& e) {
    EXPECT_NE(std::string(e.what()).find("stuck"), std::string::npos) << e.what();
    EXPECT_NE(e.dump().find("\"forgotten\": suspended in wait_for_future() at "), std::string::npos) << e.dump();
    EXPECT_NE(e.dump().find("stuck_loop_test.cpp"), std::string::npos) << e.dump();
    EXPECT_NE(e.dump().find("request_id=7"), std::string::npos) << e.dump();
  }
  EXPECT_GE(elapsed_ms(start), 190);
  EXPECT_LT(elapsed_ms(start), 5000);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("probable deadlock"), std::string::npos) << reports[0];
  EXPECT_EQ(loop.metrics().stuck_reports, 1u);
  kept_alive_never_set.set_value();  // ~IOLoop unwinds the other one
}

TEST(StuckLoopTest, ReportsOnceAndWaitsOnWithoutTheThrowOption) {
  IOLoop loop(stuck_options(100ms, false));
  Promise<int> answer;
  std::vector<std::string> reports;
  // The report handler runs on the loop's thread here: it can set what the fiber waits on.
  loop.set_report_handler([&](std::string_view report) {
    reports.emplace_back(report);
    answer.set_value(42);
  });
  EXPECT_EQ(loop.run_sync([&] { return wait_for_future(answer.get_future()); }), 42);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("1 live fiber(s)"), std::string::npos) << reports[0];
}

TEST(StuckLoopTest, AFiberWaitingOnATimerAnFdOrABlockingJobIsNotStuck) {
  IOLoop loop(stuck_options(50ms, true));
  std::vector<std::string> reports;
  loop.set_report_handler([&reports](std::string_view report) { reports.emplace_back(report); });
  loop.run_sync([&] {
    sleep_for(200ms);                                                    // a timer
    run_blocking([] { std::this_thread::sleep_for(200ms); });            // a blocking job
    ThreadPoolExecutor own_pool(1);
    wait_for_future(own_pool.submit([] { std::this_thread::sleep_for(200ms); }));  // a job of the user's pool
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    Promise<void> readable;
    loop.add_handler(fds[0], Events::read, [&](int, Events) { readable.set_value(); });
    std::thread writer([fd = fds[1]] {
      std::this_thread::sleep_for(200ms);
      EXPECT_EQ(::write(fd, "x", 1), 1);
    });
    wait_for_future(readable.get_future());                              // an fd handler
    writer.join();
    loop.remove_handler(fds[0]);
    ::close(fds[0]);
    ::close(fds[1]);
  });
  EXPECT_TRUE(reports.empty()) << reports.front();
  EXPECT_EQ(loop.metrics().stuck_reports, 0u);
}

TEST(StuckLoopTest, APromiseSetLateByAnotherThreadIsReportedAsProbableUnlessGraceIsZero) {
  for (const auto grace : {std::chrono::nanoseconds(50ms), std::chrono::nanoseconds(0)}) {
    IOLoop loop(stuck_options(grace, false));
    loop.set_report_handler([](std::string_view) {});
    Promise<void> later;
    std::thread setter([&] {
      std::this_thread::sleep_for(300ms);
      later.set_value();
    });
    loop.run_sync([&] { wait_for_future(later.get_future()); });  // "probable": it did end
    setter.join();
    EXPECT_EQ(loop.metrics().stuck_reports, grace > 0ms ? 1u : 0u) << "grace " << grace.count() << " ns";
  }
}

}  // namespace
}  // namespace fiberloop
