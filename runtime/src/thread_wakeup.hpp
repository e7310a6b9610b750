#pragma once
// How another thread wakes a loop thread that sleeps in epoll: one eventfd per OS
// thread, shared by every loop and the fiber scheduler on that thread. Internal.

#include <atomic>
#include <chrono>
#include <memory>

namespace fiberloop::detail {

class ThreadWakeup {
 public:
  ThreadWakeup();
  ~ThreadWakeup();
  ThreadWakeup(const ThreadWakeup&) = delete;
  ThreadWakeup& operator=(const ThreadWakeup&) = delete;

  /// The wakeup of the calling thread, created on first use.
  static const std::shared_ptr<ThreadWakeup>& for_this_thread();

  int fd() const noexcept { return fd_; }

  /// Thread: any. Wakes the owning thread if it is about to sleep or sleeping.
  /// Call after publishing the work the thread should see (seq_cst pairs with
  /// begin_sleep()).
  void wake() noexcept {
    if (sleeping_.load(std::memory_order_seq_cst)) signal();
  }
  /// Owning thread: announce a sleep. Afterwards re-check for work, then sleep.
  void begin_sleep() noexcept { sleeping_.store(true, std::memory_order_seq_cst); }
  void end_sleep() noexcept { sleeping_.store(false, std::memory_order_relaxed); }
  /// Owning thread: consume pending signals.
  void drain() noexcept;
  /// Owning thread: sleep in poll() on the eventfd until signalled or `deadline`.
  void sleep_until(std::chrono::steady_clock::time_point deadline) noexcept;

 private:
  void signal() noexcept;
  int fd_;
  std::atomic<bool> sleeping_{false};
};

}  // namespace fiberloop::detail
