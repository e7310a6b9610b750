// Many fibers at once: 50 000 suspended on small stacks, 1 000 deep call chains
// waiting concurrently, cross-thread completions in bulk, loops one after another.

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::elapsed_ms;
using testing::memory_mappings;

// Sanitizers slow fiber switches and spawns down; time bounds scale with them, and
// ThreadSanitizer, which keeps a trace per fiber, gets fewer fibers.
#if defined(__SANITIZE_THREAD__)
constexpr double kSlowdown = 10;
constexpr bool kThreadSanitizer = true;
#elif defined(__SANITIZE_ADDRESS__)
constexpr double kSlowdown = 3;
constexpr bool kThreadSanitizer = false;
#else
constexpr double kSlowdown = 1;
constexpr bool kThreadSanitizer = false;
#endif

std::size_t max_map_count() {
  std::ifstream in("/proc/sys/vm/max_map_count");
  std::size_t cap = 65530;
  in >> cap;
  return cap;
}

TEST(FiberStressTest, FiftyThousandSuspendedFibersWith32KiBStacks) {
  if (kThreadSanitizer) GTEST_SKIP() << "ThreadSanitizer cannot map a trace for each of 50 000 fibers";
  constexpr int kFibers = 50000;
  IOLoop::Options options;
  options.stack_size = 32 * 1024;
  IOLoop loop(options);
  std::size_t mappings = 0;
  const auto start = Clock::now();
  const long long sum = loop.run_sync(
      [&] {
        std::vector<Promise<int>> promises(kFibers);
        std::vector<Future<int>> results;
        results.reserve(kFibers);
        int started = 0;
        Promise<void> all_started;
        for (int i = 0; i < kFibers; ++i)
          results.push_back(loop.spawn([&, i, f = promises[i].get_future()] {
            if (++started == kFibers) all_started.set_value();
            return wait_for_future(f) + i;
          }));
        wait_for_future(all_started.get_future());
        sleep_for(1ms);                                                        // the last starter suspends too
        EXPECT_EQ(loop.live_fibers(), static_cast<std::size_t>(kFibers) + 1);  // + this one
        for (auto& r : results) EXPECT_FALSE(r.done());
        mappings = memory_mappings();
        // Resume them all from one callback.
        loop.add_callback([&] {
          for (int i = 0; i < kFibers; ++i) promises[i].set_value(i);
        });
        long long total = 0;
        for (auto& r : results) total += wait_for_future(r);
        return total;
      },
      60s);
  const double ms = elapsed_ms(start);
  EXPECT_EQ(sum, 2LL * kFibers * (kFibers - 1) / 2);
  EXPECT_EQ(loop.live_fibers(), 0u);
  EXPECT_LT(ms, 10000.0 * kSlowdown);
  // 50 000 guarded stacks would need 100 000 mappings: staying under the kernel's
  // cap means the allocator fell back to unguarded stacks instead of failing.
  EXPECT_LT(mappings, max_map_count());
  std::printf("[          ] 50 000 fibers on 32 KiB stacks: %.0f ms, %zu memory mappings (cap %zu) while all were "
              "suspended\n",
              ms, mappings, max_map_count());
}

// ---- deep call chains ------------------------------------------------------------

constexpr int kChainDepth = 60;

/// One frame of a recursive chain with real locals that must survive the suspension
/// of the deepest frame. With `loop`, the deepest frame waits for a timer; without,
/// it computes the same checksum at once (the reference).
[[gnu::noinline]] std::uint64_t chain_frame(IOLoop* loop, int fiber, int depth) {
  std::array<unsigned char, 96> bytes;
  for (std::size_t k = 0; k < bytes.size(); ++k)
    bytes[k] = static_cast<unsigned char>(fiber * 31 + depth * 7 + static_cast<int>(k));
  const std::string label(24 + depth % 17, static_cast<char>('a' + (fiber + depth) % 26));  // on the heap
  std::uint64_t below = 0;
  if (depth == 0) {
    if (loop) {
      auto p = std::make_shared<Promise<std::uint64_t>>();
      auto f = p->get_future();
      loop->call_later(std::chrono::milliseconds(1 + fiber % 50),
                       [p, fiber] { p->set_value(static_cast<std::uint64_t>(fiber) * 1000003u); });
      below = wait_for_future(f);
    } else {
      below = static_cast<std::uint64_t>(fiber) * 1000003u;
    }
  } else {
    below = chain_frame(loop, fiber, depth - 1);
  }
  std::uint64_t sum = below * 31 + static_cast<std::uint64_t>(depth);
  for (unsigned char b : bytes) sum = sum * 7 + b;
  return sum + label.size() * static_cast<unsigned char>(label[static_cast<std::size_t>(depth) % label.size()]);
}

TEST(FiberStressTest, ThousandDeepCallChainsWaitConcurrently) {
  constexpr int kFibers = 1000;
  IOLoop loop;
  std::vector<std::uint64_t> got(kFibers, 0);
  const auto start = Clock::now();
  loop.run_sync(
      [&] {
        std::vector<Future<void>> fibers;
        for (int i = 0; i < kFibers; ++i)
          fibers.push_back(loop.spawn([&, i] { got[i] = chain_frame(&loop, i, kChainDepth); }));
        for (auto& f : fibers) wait_for_future(f);
      },
      30s);
  const double ms = elapsed_ms(start);
  for (int i = 0; i < kFibers; ++i) EXPECT_EQ(got[i], chain_frame(nullptr, i, kChainDepth)) << "fiber " << i;
  EXPECT_GE(ms, 49.0);  // the longest wait
  // One after another the waits would take ~25 s; overlapping, ~50 ms and the
  // switches. 5 s leaves a loaded machine room and still tells the two apart.
  EXPECT_LT(ms, 5000.0 * kSlowdown) << "the waits did not overlap";
  EXPECT_EQ(loop.live_fibers(), 0u);
  std::printf("[          ] 1 000 chains of %d frames, waits of 1..50 ms: %.1f ms\n", kChainDepth + 1, ms);
}

// ---- bulk traffic ----------------------------------------------------------------

TEST(FiberStressTest, CrossThreadCompletionsInBulk) {
  const int kFibers = kThreadSanitizer ? 1000 : 10000;
  constexpr int kThreads = 4;
  IOLoop loop;
  std::vector<Promise<int>> promises(kFibers);
  long long sum = 0;
  int wrong_thread = 0;
  loop.run_sync(
      [&] {
        const auto loop_thread = std::this_thread::get_id();
        std::vector<Future<int>> fibers;
        for (int i = 0; i < kFibers; ++i)
          fibers.push_back(loop.spawn([&, f = promises[i].get_future()] {
            const int v = wait_for_future(f);
            if (std::this_thread::get_id() != loop_thread) ++wrong_thread;
            return v;
          }));
        sleep_for(1ms);
        {
          std::vector<std::jthread> completers;
          for (int t = 0; t < kThreads; ++t)
            completers.emplace_back([&, t] {
              for (int i = t; i < kFibers; i += kThreads) promises[i].set_value(i);
            });
        }  // joined here, on the loop thread: the fibers resume afterwards
        for (auto& f : fibers) sum += wait_for_future(f);
      },
      30s);
  EXPECT_EQ(sum, 1LL * kFibers * (kFibers - 1) / 2);
  EXPECT_EQ(wrong_thread, 0);
  EXPECT_EQ(loop.live_fibers(), 0u);
}

TEST(FiberStressTest, CrossThreadCompletionsWhileTheLoopRuns) {
  const int kFibers = kThreadSanitizer ? 1000 : 4000;
  IOLoop loop;
  ThreadPoolExecutor pool(3);
  long long sum = 0;
  loop.run_sync(
      [&] {
        const auto loop_thread = std::this_thread::get_id();
        std::vector<Future<int>> fibers;
        for (int i = 0; i < kFibers; ++i)
          fibers.push_back(loop.spawn([&, i] {
            int v = 0;
            for (int k = 0; k < 3; ++k) {
              v += wait_for_future(pool.submit([i] { return i; }));
              EXPECT_EQ(std::this_thread::get_id(), loop_thread);
            }
            return v;
          }));
        for (auto& f : fibers) sum += wait_for_future(f);
      },
      60s);
  EXPECT_EQ(sum, 3LL * kFibers * (kFibers - 1) / 2);
}

TEST(FiberStressTest, ManyTimedWaitsHalfOfThemLate) {
  constexpr int kFibers = 5000;
  IOLoop loop;
  int in_time = 0, late = 0;
  loop.run_sync(
      [&] {
        std::vector<Promise<int>> promises(kFibers);
        std::vector<Future<void>> fibers;
        int started = 0;
        for (int i = 0; i < kFibers; ++i)
          fibers.push_back(loop.spawn([&, i, f = promises[i].get_future()] {
            ++started;
            try {
              // Odd fibers time out; even ones are completed long before their deadline.
              EXPECT_EQ(wait_for_future(f, i % 2 ? 10ms : 100s), i);
              ++in_time;
            } catch (const TimeoutError&) {
              ++late;
            }
            EXPECT_EQ(wait_for_future(f), i);  // untouched by the timeout
          }));
        while (started < kFibers) sleep_for(1ms);
        sleep_for(50ms);  // every 10 ms deadline has passed
        for (int i = 0; i < kFibers; ++i) promises[i].set_value(i);
        for (auto& f : fibers) wait_for_future(f);
      },
      60s);
  EXPECT_EQ(in_time, kFibers / 2);
  EXPECT_EQ(late, kFibers / 2);
}

// ---- loops one after another -------------------------------------------------------

TEST(FiberStressTest, LoopsConstructedAndDestroyedOneAfterAnother) {
  // Boost.Fiber installs its scheduling algorithm once per thread: every loop on the
  // thread shares it, and it must outlive each of them.
  constexpr int kRounds = 300;
  int closed = 0;
  for (int round = 0; round < kRounds; ++round) {
    IOLoop::Options options;
    options.stack_size = static_cast<std::size_t>(round % 3 + 1) * 64 * 1024;  // stacks of several sizes
    auto loop = std::make_unique<IOLoop>(options);
    Promise<int> never;
    Future<int> leftover;  // every tenth loop dies with a fiber suspended on it
    if (round % 10 == 0) leftover = loop->spawn([f = never.get_future()] { return wait_for_future(f); });
    const int got = loop->run_sync(
        [&] {
          Promise<int> by_callback;
          loop->add_callback([&] { by_callback.set_value(1); });
          auto a = loop->spawn([&] { return wait_for_future(by_callback.get_future()); });
          auto b = loop->spawn([] {
            sleep_for(100us);
            return 2;
          });
          auto c = loop->spawn([&] { return wait_for_future(loop->spawn([] { return 3; })); });
          return wait_for_future(a) + wait_for_future(b) + wait_for_future(c);
        },
        10s);
    EXPECT_EQ(got, 6) << "round " << round;
    EXPECT_EQ(loop->live_fibers(), leftover.valid() ? 1u : 0u);
    loop.reset();
    if (leftover.valid()) {
      ASSERT_TRUE(leftover.done()) << "round " << round;
      try {
        leftover.result();
      } catch (const LoopClosed&) {
        ++closed;
      }
    }
  }
  EXPECT_EQ(closed, kRounds / 10);
}

}  // namespace
}  // namespace fiberloop
