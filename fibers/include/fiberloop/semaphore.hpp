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
/// release and the non-waiting calls also from its callbacks). Not thread-safe.
class Semaphore {
 public:
  explicit Semaphore(std::size_t permits) noexcept : available_(permits) {}
  /// Waiters still queued are woken and their acquire() throws BrokenPromise (they
  /// touch nothing of the destroyed semaphore). Permits still held are forgotten.
  ~Semaphore();
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  /// Takes a permit, waiting in line for one. Fiber: suspends only the calling
  /// fiber while it waits; on a loop's thread outside a fiber throws
  /// BlockingCallError (when it would have to wait); LoopClosed when the loop is
  /// destroyed meanwhile (no permit is taken, the fiber leaves the line).
  void acquire();
  /// As acquire(), but throws TimeoutError when `timeout` passes first (no permit is
  /// taken, the fiber leaves the line; only that waiter fails). A permit handed over
  /// in the same loop turn as the timeout is the caller's: acquire() returns. Zero or
  /// negative never waits: TimeoutError at once unless a permit is free and nobody
  /// waits. nanoseconds::max(): no limit.
  void acquire(std::chrono::nanoseconds timeout);
  /// Takes a permit if one is free and nobody waits; never waits.
  [[nodiscard]] bool try_acquire() noexcept;
  /// Gives a permit back: to the longest waiter directly (it resumes with it on the
  /// loop's next ready pass), else to the free permits. Also from loop callbacks.
  void release() noexcept;

  /// Free permits (handed-over permits are never counted here).
  std::size_t available() const noexcept { return available_; }
  /// Fibers waiting in line.
  std::size_t waiting() const noexcept { return waiters_.size(); }

 private:
  std::size_t available_;
  std::deque<Promise<void>*> waiters_;  // on the waiting fibers' stacks
};

}  // namespace fiberloop
