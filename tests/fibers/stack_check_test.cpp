// Every fiber stack is checked (fibers/src/stack_check.cpp): a guarded stack's
// overflow is reported from the fault handler, an unguarded one's by its canary at
// the next switch, both naming the fiber; other faults die as they always did;
// 100 000 fibers live at once on checked stacks; and IOLoop::metrics() reports how
// deep fibers of each name went.

#include <alloca.h>
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>

#include "fiber_record.hpp"  // white-box: where the running fiber's stack is
#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using detail::FiberRecord;

constexpr const char* kOverflowMessage =
    "fiberloop: stack overflow in fiber \"deep-recursion\" \\(stack 64 KiB; raise IOLoop::Options::stack_size\\)";

/// Recurses with 1 KiB frames, 8 MiB in all: far past any fiber stack in this file.
[[gnu::noinline]] int recurse(int depth) {
  volatile char frame[1024];
  frame[0] = static_cast<char>(depth);
  if (depth >= 8 * 1024) return frame[0];
  return recurse(depth + 1) + frame[0];  // not a tail call: every frame stays
}

/// The running fiber's stack, as the checks see it.
const FiberRecord& running_fiber() {
  const FiberRecord* record = FiberRecord::current();
  if (!record) {
    std::fputs("not in a fiberloop fiber\n", stderr);
    std::_Exit(3);
  }
  return *record;
}

/// A frame with a local array reaching down to the stack's far end: it overwrites
/// the canary (the bytes of the array at or above the stack's lowest byte are
/// written; the array's allocation alone touches nothing below, without
/// -fstack-clash-protection, which this build does not use).
[[gnu::noinline]] void overwrite_stack_down_to(char* bottom) {
  char here = 0;
  const auto depth = static_cast<std::size_t>(&here - bottom);
  const std::size_t size = depth + 256;
  auto* array = static_cast<volatile char*>(alloca(size));
  for (volatile char* at = std::max<volatile char*>(array, bottom); at < array + size; ++at) *at = 0x5a;
}

TEST(StackCheckDeathTest, GuardPageHitIsReportedNamingTheFiber) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        IOLoop::Options options;
        options.stack_size = 64 * 1024;
        IOLoop loop(options);
        loop.run_sync([&loop] {
          wait_for_future(loop.spawn("deep-recursion", [] {
            if (!running_fiber().stack_guarded) std::_Exit(4);  // the test would prove nothing
            return recurse(0);
          }));
        });
      },
      kOverflowMessage);
}

TEST(StackCheckDeathTest, OverwrittenCanaryOfAnUnguardedStackIsReportedAtTheNextSwitch) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        IOLoop::Options options;
        options.stack_size = 64 * 1024;
        options.guarded_stacks = 1;  // run_sync's fiber takes it (or the process has more)
        IOLoop loop(options);
        loop.run_sync([&loop] {
          wait_for_future(loop.spawn("deep-recursion", [] {
            const FiberRecord& me = running_fiber();
            if (me.stack_guarded) std::_Exit(4);
            overwrite_stack_down_to(me.stack_bottom);
            sleep_for(1ms);  // the switch away finds the canary overwritten
            std::fputs("the fiber resumed\n", stderr);
          }));
        });
      },
      kOverflowMessage);
}

TEST(StackCheckDeathTest, OverwrittenCanaryIsReportedAtTheFibersEnd) {
  // No switch between the overwrite and the end (the end's own switch comes after the
  // task, and its name, are gone): the end checks it, naming the fiber.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        IOLoop::Options options;
        options.stack_size = 64 * 1024;
        options.guarded_stacks = 1;
        IOLoop loop(options);
        loop.run_sync([&loop] {
          wait_for_future(loop.spawn("deep-recursion", [] {
            const FiberRecord& me = running_fiber();
            if (me.stack_guarded) std::_Exit(4);
            overwrite_stack_down_to(me.stack_bottom);
          }));
          std::fputs("the fiber ended unreported\n", stderr);
        });
      },
      kOverflowMessage);
}

// What a fault that is no fiber's overflow looks like without fiberloop: killed by
// SIGSEGV, or the sanitizer's own report.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EXPECT_ORDINARY_SEGV(statement) \
  EXPECT_DEATH(statement, ::testing::AllOf(::testing::HasSubstr("SEGV"), ::testing::Not(::testing::HasSubstr("stack overflow"))))
#else
#define EXPECT_ORDINARY_SEGV(statement) \
  EXPECT_EXIT(statement, ::testing::KilledBySignal(SIGSEGV), ::testing::Not(::testing::HasSubstr("stack overflow")))
#endif

/// A null dereference, as of a member of a null object: address 16, in the unmapped
/// page zero. (Not 0 itself: UBSan would report that before the fault.)
[[gnu::noinline]] void write_through_null_object() {
  // volatile: the compiler must neither see the address nor drop the store
  volatile int* volatile pointer = reinterpret_cast<volatile int*>(std::uintptr_t{16});
  *pointer = 1;
}

TEST(StackCheckDeathTest, OtherFaultsOutsideFibersDieAsBefore) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_ORDINARY_SEGV({
    IOLoop loop;
    loop.run_sync([] {});  // the fault handler is installed
    write_through_null_object();
  });
}

TEST(StackCheckDeathTest, OtherFaultsInAFiberDieAsBefore) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_ORDINARY_SEGV({
    IOLoop loop;
    loop.run_sync([&loop] { wait_for_future(loop.spawn("faulty", [] { write_through_null_object(); })); });
  });
}

TEST(StackCheckTest, HundredThousandLiveFibersOnCheckedStacks) {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer maps a 1 MiB trace per fiber: 100 000 would exhaust its
  // address space (see FIBERLOOP_TSAN_FILTER in tests/CMakeLists.txt).
  constexpr int kFibers = 2000;
#else
  constexpr int kFibers = 100000;
#endif
  constexpr std::size_t kGuarded = kFibers / 100;
  int waiting = 0, finished = 0;
  std::size_t unguarded = 0, alive_while_waiting = 0;
  // A fresh thread: its stack pool (per thread) goes when it ends.
  std::thread([&] {
    IOLoop::Options options;
    options.stack_size = 16 * 1024;  // two resident pages each: its top and its canary's
    options.guarded_stacks = kGuarded;
    IOLoop loop(options);
    loop.run_sync([&] {
      Promise<void> release;
      const Future<void> released = release.get_future();
      std::vector<Future<void>> fibers;
      fibers.reserve(kFibers);
      for (int i = 0; i < kFibers; ++i)
        fibers.push_back(loop.spawn([&] {
          ++waiting;
          if (!running_fiber().stack_guarded) ++unguarded;
          wait_for_future(released);
          ++finished;
        }));
      while (waiting < kFibers) sleep_for(1ms);
      alive_while_waiting = loop.live_fibers();
      release.set_value();
      for (auto& f : fibers) wait_for_future(f);
    });
  }).join();
  EXPECT_EQ(alive_while_waiting, kFibers + 1u);  // and run_sync's own
  EXPECT_EQ(finished, kFibers);
  // The budget is the process's: other threads' pooled stacks may use some of it.
  EXPECT_GE(unguarded, kFibers - kGuarded) << "most stacks should be past the guard budget, canary-checked";
}

/// Touches `bytes` of stack below this frame.
[[gnu::noinline]] void use_stack(std::size_t bytes) {
  auto* array = static_cast<volatile char*>(alloca(bytes));
  for (std::size_t i = 0; i < bytes; i += 64) array[i] = 1;
}

const IOLoopMetrics::StackUse* stack_use_of(const IOLoopMetrics& metrics, const std::string& name) {
  for (const auto& use : metrics.stack_high_water)
    if (use.fiber_name == name) return &use;
  return nullptr;
}

TEST(StackCheckTest, HighWaterMarksPerFiberNameAreInTheMetrics) {
  IOLoopMetrics metrics;
  // A fresh thread, so the stacks come from a pool no other test used.
  std::thread([&] {
    IOLoop::Options options;
    options.stack_size = 256 * 1024;
    IOLoop loop(options);
    loop.run_sync([&loop] {
      wait_for_future(loop.spawn("deep", [] { use_stack(40 * 1024); }));
      // Likely on the stack "deep" left, pooled with its pages resident: measured
      // fibers get an emptied one.
      wait_for_future(loop.spawn("idle", [] {}));
      // The first 4 of a name and every 1024th after them are measured: 5 of 1030.
      for (int i = 0; i < 1030; ++i) wait_for_future(loop.spawn("many", [] {}));
    });
    metrics = loop.metrics();
  }).join();
  const IOLoopMetrics::StackUse* deep = stack_use_of(metrics, "deep");
  const IOLoopMetrics::StackUse* idle = stack_use_of(metrics, "idle");
  const IOLoopMetrics::StackUse* many = stack_use_of(metrics, "many");
  ASSERT_TRUE(deep && idle && many) << "a fiber name is missing from stack_high_water";
  EXPECT_GE(deep->high_water_bytes, 40u * 1024);
  EXPECT_LT(deep->high_water_bytes, 256u * 1024);
  EXPECT_EQ(deep->fibers_measured, 1u);
  // An empty fiber: Boost's context record and the fiber's entry frames, in the top
  // page, which a measured stack keeps (more under a sanitizer's bigger frames).
  EXPECT_LE(idle->high_water_bytes, 16u * 1024);
  EXPECT_GT(idle->high_water_bytes, 0u);
  EXPECT_EQ(many->fibers_measured, 5u);
  std::printf("[          ] high water: deep %zu B, idle %zu B\n", deep->high_water_bytes, idle->high_water_bytes);
}

}  // namespace
}  // namespace fiberloop
