#pragma once
// Every fiber stack is checked (docs/diagnostics.md#stacks). A guarded stack faults
// on its guard page, and the fault handler, on an alternate signal stack, names the
// fiber. Past the guard budget a stack has a canary at its far end instead, verified
// at every switch away from its fiber and at its end. Both abort with
//   fiberloop: stack overflow in fiber "<name>" (stack <N> KiB; raise IOLoop::Options::stack_size)
// And how deep fibers go: high-water marks per fiber name, for IOLoop::metrics().

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <fiberloop/io_loop.hpp>

namespace fiberloop::detail {

class FiberRecord;

/// The fiber running on this thread (null for the main context, the dispatcher and
/// plain Boost.Fiber fibers), kept by LoopScheduler at every switch for the fault
/// handler, which may read nothing that is not async-signal-safe.
extern thread_local constinit const FiberRecord* tls_running_fiber;

/// The canary word at `at`: a constant mixed with its address, so a canary left
/// elsewhere by an earlier stack does not pass for this one.
inline std::uint64_t stack_canary_for(const void* at) noexcept {
  return 0x9e3779b97f4a7c15ULL ^ reinterpret_cast<std::uintptr_t>(at);
}
/// Writes the canary at the far end (lowest address) of an unguarded stack.
inline void write_stack_canary(char* stack_bottom) noexcept {
  *reinterpret_cast<std::uint64_t*>(stack_bottom) = stack_canary_for(stack_bottom);
}

/// Writes the overflow message naming `record`'s fiber with write(2) and aborts.
/// Async-signal-safe.
[[noreturn]] void report_stack_overflow(const FiberRecord& record) noexcept;

/// Per thread that runs fibers (LoopScheduler holds one): installs the process's
/// SIGSEGV/SIGBUS handler the first time, and an alternate signal stack for this
/// thread unless it has one (a sanitizer's, the application's). The destructor
/// removes the stack it installed. Faults that are no fiber's overflow go to the
/// handler installed before ours, or to the default action.
class ThreadFaultHandling {
 public:
  ThreadFaultHandling() noexcept;
  ~ThreadFaultHandling();
  ThreadFaultHandling(const ThreadFaultHandling&) = delete;
  ThreadFaultHandling& operator=(const ThreadFaultHandling&) = delete;

 private:
  void* signal_stack_ = nullptr;  // ours, if we installed one
  std::size_t signal_stack_size_ = 0;
};

/// How deep the fiber of `record` has used its stack, to the page: the stack was
/// handed out with only its top page (and its canary's) resident (StackAllocator's
/// `measured`), so a fiber counts as one page at least. Costs a mincore(2) call.
std::size_t touched_stack_bytes(const FiberRecord& record) noexcept;

/// One fiber name's stack use.
struct StackUseEntry {
  std::uint64_t spawned = 0;
  std::uint64_t measured = 0;
  std::size_t high_water = 0;
};

/// Stack high-water marks per fiber name, for one loop. The first kFirstMeasured
/// fibers of each name and every kSampleEvery-th after them are measured: a measured
/// fiber gets an emptied stack, which costs a madvise(2) and page faults, and a
/// mincore(2) at its end (~10 µs in all; docs/diagnostics.md#stacks).
class StackUseTable {
 public:
  static constexpr std::uint64_t kFirstMeasured = 4;
  static constexpr std::uint64_t kSampleEvery = 1024;
  /// Names tracked one by one; fibers of further names share kMoreNames.
  static constexpr std::size_t kMaxNames = 256;
  static constexpr const char* kMoreNames = "(other names)";

  /// Counts a fiber of `name` being spawned: the entry to record its use in if it is
  /// to be measured, else null. May throw std::bad_alloc.
  StackUseEntry* sample(const std::string& name);
  static void record(StackUseEntry& entry, std::size_t bytes) noexcept {
    ++entry.measured;
    if (bytes > entry.high_water) entry.high_water = bytes;
  }
  /// The names with a measurement, as IOLoopMetrics::stack_high_water.
  std::vector<IOLoopMetrics::StackUse> report() const;

 private:
  StackUseEntry unnamed_;
  std::unordered_map<std::string, StackUseEntry> named_;  // node-based: entries stay put
  std::pair<const std::string, StackUseEntry>* last_named_ = nullptr;  // spawns come in runs of one name
};

}  // namespace fiberloop::detail
