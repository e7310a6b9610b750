#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;

TEST(SmokeTest, RunSyncReturnsValue) {
  IOLoop loop;
  EXPECT_EQ(loop.run_sync([] { return 42; }), 42);
}

TEST(SmokeTest, WaitForFutureCompletedByCallback) {
  IOLoop loop;
  int got = loop.run_sync([&] {
    Promise<int> p;
    auto f = p.get_future();
    loop.add_callback([&] { p.set_value(7); });
    return wait_for_future(f);
  });
  EXPECT_EQ(got, 7);
}

TEST(SmokeTest, SleepFor) {
  IOLoop loop;
  auto start = std::chrono::steady_clock::now();
  loop.run_sync([] { sleep_for(20ms); });
  EXPECT_GE(testing::elapsed_ms(start), 19.0);
}

}  // namespace
}  // namespace fiberloop
