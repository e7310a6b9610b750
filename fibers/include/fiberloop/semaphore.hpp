#pragma once
/// @file
/// Semaphore: a fiber-aware counting semaphore for one loop — caps how many fibers do
/// something at once (connections in use, fetches in flight). A waiting acquire
/// suspends only its fiber; permits go to waiters first come, first served, and a
/// newcomer never barges past a waiter.

#include <chrono>
#include <cstddef>
#include <deque>

#include <fiberloop/future.hpp>

namespace fiberloop {

/// Thread: one loop's — every call on that loop's thread (acquire from its fibers;
/// release and the non-waiting calls also from its callbacks).
class Semaphore {
 public:
  explicit Semaphore(std::size_t permits) noexcept : available_(permits) {}
  /// Waiters still queued fail with BrokenPromise.
  ~Semaphore();
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  /// Takes a permit, waiting in line for one. Inside a fiber suspends only that
  /// fiber; on a loop's thread outside a fiber throws BlockingCallError; LoopClosed
  /// when the loop is destroyed meanwhile (no permit is taken).
  void acquire();
  /// As acquire(), but throws TimeoutError when `timeout` passes first (no permit is
  /// taken; zero or negative: at once, if none is free). nanoseconds::max(): no limit.
  void acquire(std::chrono::nanoseconds timeout);
  /// Takes a permit if one is free and nobody waits; never waits.
  [[nodiscard]] bool try_acquire() noexcept;
  /// Gives a permit back: to the longest waiter, else to the pool.
  void release() noexcept;

  std::size_t available() const noexcept { return available_; }
  std::size_t waiting() const noexcept { return waiters_.size(); }

 private:
  std::size_t available_;
  std::deque<Promise<void>*> waiters_;  // on the waiting fibers' stacks
};

}  // namespace fiberloop
