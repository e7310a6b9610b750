// Fiber stacks (fibers/src/stack_pool.cpp): an overflow faults on the guard page,
// only the pages a fiber touches cost memory, and finished fibers' stacks are kept
// per thread for reuse up to IOLoop::Options::pooled_stacks.

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using testing::memory_mappings;

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

/// Pages resident in memory, and pages in all, of the mapping that holds `address`.
std::pair<std::size_t, std::size_t> resident_pages_of_mapping(const void* address) {
  const auto at = reinterpret_cast<std::uintptr_t>(address);
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    std::uintptr_t start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR, &start, &end) != 2 || at < start || at >= end) continue;
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> resident((end - start) / page);
    if (::mincore(reinterpret_cast<void*>(start), end - start, resident.data()) != 0) return {0, 0};
    return {static_cast<std::size_t>(std::count_if(resident.begin(), resident.end(), [](unsigned char r) { return r & 1; })),
            resident.size()};
  }
  return {0, 0};
}

TEST(FiberStackTest, OnlyTouchedPagesCostMemory) {
  // Each fiber looks at its own 256 KiB stack (64 pages) while it runs: it has
  // touched a few pages; the rest is address space, not memory. A stack committed up
  // front (MAP_POPULATE, a memset) would be resident entirely. (Measured per stack,
  // not as the process's RSS, which ThreadSanitizer's per-fiber state swamps; on a
  // fresh thread, whose stack pool holds no stack an earlier test touched.)
  constexpr int kFibers = 100;
  std::vector<std::pair<std::size_t, std::size_t>> pages(kFibers);
  std::thread([&] {
    IOLoop loop;  // default options: 256 KiB stacks
    ASSERT_EQ(loop.options().stack_size, 256u * 1024);
    loop.run_sync([&] {
      Promise<void> release;
      Future<void> released = release.get_future();
      int measured = 0;
      std::vector<Future<void>> fibers;
      for (int i = 0; i < kFibers; ++i)
        fibers.push_back(loop.spawn([&, i] {
          const char on_this_stack = 0;
          pages[static_cast<std::size_t>(i)] = resident_pages_of_mapping(&on_this_stack);
          ++measured;
          wait_for_future(released);  // every stack stays in use until all are measured
        }));
      while (measured < kFibers) sleep_for(1ms);
      release.set_value();
      for (auto& f : fibers) wait_for_future(f);
    });
  }).join();
  std::size_t most = 0;
  for (const auto& [resident, total] : pages) {
    ASSERT_GT(total, 0u) << "no mapping holds a fiber's stack";
    EXPECT_LE(resident, 16u) << resident << " of the " << total << " pages of a fiber's stack are resident";
    most = std::max(most, resident);
  }
  std::printf("[          ] at most %zu resident pages in a running fiber's 256 KiB stack\n", most);
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
