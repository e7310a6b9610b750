// Fiber stacks (fibers/src/stack_pool.cpp): an overflow faults on the guard page,
// only the pages a fiber touches cost memory, and finished fibers' stacks are kept
// per thread for reuse up to IOLoop::Options::pooled_stacks.

#include <cstdio>
#include <thread>
#include <vector>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using testing::memory_mappings;
using testing::resident_bytes;

/// Recurses with 1 KiB frames, 8 MiB in all: far past any fiber stack in this file.
[[gnu::noinline]] int recurse(int depth) {
  volatile char frame[1024];
  frame[0] = static_cast<char>(depth);
  if (depth >= 8 * 1024) return frame[0];
  return recurse(depth + 1) + frame[0];  // not a tail call: every frame stays
}

TEST(FiberStackDeathTest, OverflowingAFibersStackFaultsInsteadOfCorruptingMemory) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        IOLoop::Options options;
        options.stack_size = 64 * 1024;
        IOLoop loop(options);
        (void)loop.run_sync([] { return recurse(0); });
      },
      "");
}

TEST(FiberStackTest, OnlyTouchedPagesCostMemory) {
  // 1 000 suspended fibers on 256 KiB stacks reserve 250 MiB; each touches a few
  // pages. A stack committed up front (MAP_POPULATE, a memset) would show as
  // ~250 MiB of resident memory, four times the bound.
  constexpr int kFibers = 1000;
  IOLoop loop;  // default options: 256 KiB stacks
  ASSERT_EQ(loop.options().stack_size, 256u * 1024);
  std::size_t grown = 0;
  loop.run_sync(
      [&] {
        Promise<void> release;
        Future<void> released = release.get_future();
        const std::size_t before = resident_bytes();
        std::vector<Future<void>> fibers;
        for (int i = 0; i < kFibers; ++i) fibers.push_back(loop.spawn([released] { wait_for_future(released); }));
        sleep_for(1ms);  // every fiber has started and suspended
        EXPECT_EQ(loop.live_fibers(), static_cast<std::size_t>(kFibers) + 1);
        const std::size_t now = resident_bytes();
        grown = now > before ? now - before : 0;
        release.set_value();
        for (auto& f : fibers) wait_for_future(f);
      },
      60s);
  EXPECT_LT(grown, 64u * 1024 * 1024) << "resident memory grew by " << grown / 1024 << " KiB for " << kFibers
                                      << " suspended fibers";
  std::printf("[          ] %d suspended fibers on 256 KiB stacks: resident memory grew by %zu KiB\n", kFibers,
              grown / 1024);
}

/// Memory mappings still there after 100 fibers ran at once and finished, on a fresh
/// thread (the pool is per thread) whose loop pools up to `pooled_stacks` stacks.
std::size_t mappings_kept_after_100_fibers(std::size_t pooled_stacks) {
  std::size_t kept = 0;
  std::thread([&] {
    IOLoop::Options options;
    options.pooled_stacks = pooled_stacks;
    IOLoop loop(options);
    loop.run_sync([] {});  // the thread's fiber machinery exists before we count
    const std::size_t before = memory_mappings();
    loop.run_sync([&] {
      std::vector<Future<void>> fibers;
      for (int i = 0; i < 100; ++i) fibers.push_back(loop.spawn([] { sleep_for(1ms); }));
      for (auto& f : fibers) wait_for_future(f);
    });
    const std::size_t after = memory_mappings();
    kept = after > before ? after - before : 0;
  }).join();
  return kept;
}

TEST(FiberStackTest, FinishedFibersStacksArePooledPerThreadUpToTheLimit) {
  const std::size_t kept_with_pool = mappings_kept_after_100_fibers(1024);
  const std::size_t kept_without = mappings_kept_after_100_fibers(0);
  // Each stack is at least one mapping (two with its guard page).
  EXPECT_GE(kept_with_pool, kept_without + 100) << "finished fibers' stacks were not kept for reuse";
  std::printf("[          ] mappings kept after 100 fibers: %zu with a pool, %zu without\n", kept_with_pool,
              kept_without);
}

}  // namespace
}  // namespace fiberloop
