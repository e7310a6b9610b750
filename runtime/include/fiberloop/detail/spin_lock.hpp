#pragma once

#include <atomic>
#include <thread>

namespace fiberloop::detail {

/// A test-and-test-and-set lock for critical sections of a few instructions
/// (linking a waiter, swapping a queue). Cheaper than std::mutex uncontended, and
/// it yields the CPU rather than spinning hard, which matters on 2-vCPU VMs where
/// the holder may be preempted.
class SpinLock {
 public:
  void lock() noexcept {
    for (;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      for (int spins = 0; locked_.load(std::memory_order_relaxed); ++spins) {
        if (spins > 64) std::this_thread::yield();
      }
    }
  }
  bool try_lock() noexcept { return !locked_.exchange(true, std::memory_order_acquire); }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

}  // namespace fiberloop::detail
