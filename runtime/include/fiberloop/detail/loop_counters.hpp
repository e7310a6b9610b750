#pragma once
// What IOLoop::metrics() and the watchdog read: counters kept by the loop's thread.
// Internal.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace fiberloop::detail {

struct LoopCounters {
  // Plain counts, written and read on the loop's thread only.
  std::uint64_t fibers_created = 0;
  std::uint64_t context_switches = 0;
  std::uint64_t callbacks_run = 0;
  std::uint64_t loop_iterations = 0;
  std::uint64_t stuck_reports = 0;
  std::chrono::steady_clock::time_point iteration_began{};  // when waits began, to an iteration
  // Written by the watchdog's thread.
  std::atomic<std::uint64_t> watchdog_reports{0};
  std::atomic<std::int64_t> longest_slice_ns{0};

  // The watchdog's view, read from its own thread: `slice_serial` changes when a
  // callback, timeout, fd handler or fiber slice begins and when the loop goes to
  // sleep in epoll (`polling` then true): a serial that stays put while the loop is
  // not polling means one slice holds the loop. The loop's thread alone writes them
  // (relaxed stores: no read-modify-write on the hot path).
  std::atomic<std::uint64_t> slice_serial{0};
  std::atomic<bool> polling{false};

  void slice_began() noexcept { slice_serial.store(slice_serial.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
  void callback_began() noexcept {
    ++callbacks_run;
    slice_began();
  }
  void fiber_slice_began() noexcept {
    ++context_switches;
    slice_began();
  }
  void poll_began() noexcept {
    polling.store(true, std::memory_order_relaxed);
    slice_began();
  }
  void poll_ended() noexcept {
    polling.store(false, std::memory_order_relaxed);
    slice_began();
  }
};

}  // namespace fiberloop::detail
