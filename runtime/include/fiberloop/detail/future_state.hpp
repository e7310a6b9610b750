#pragma once
// The shared state behind Future/Promise. Internal: reach it only through Future,
// Promise and the fibers layer.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <utility>

#include <fiberloop/detail/spin_lock.hpp>

namespace fiberloop::detail {

class FutureStateBase;

/// Something that waits for a state to complete. Intrusive and doubly linked so a
/// waiter that gives up (timeout, loop closing) unlinks itself in O(1).
class Waiter {
 public:
  /// Wakers (a fiber, a blocked thread) are notified with the state's lock held, so
  /// the waiter cannot return and free itself while the completer still touches it.
  /// Callbacks run after the lock is released, because they run user code.
  explicit Waiter(bool is_callback) noexcept : is_callback_(is_callback) {}
  virtual ~Waiter() = default;

  /// Wake the waiter. Called under the state's lock; must not block or run user code.
  virtual void notify_locked() noexcept {}
  /// Run the callback (without the lock) and dispose of this waiter.
  virtual void run_and_dispose(FutureStateBase&) noexcept {}

 private:
  friend class FutureStateBase;
  Waiter* prev_ = nullptr;
  Waiter* next_ = nullptr;
  bool linked_ = false;
  bool is_callback_;
};

/// How many Future done callbacks the running fiber (or, outside fibers, the thread)
/// is inside. A done callback runs in the middle of completing its future, on
/// whatever completes it, so it may not wait: the waits check this. The fibers layer
/// keeps it per fiber.
extern constinit thread_local unsigned tls_done_callback_depth;

/// Counts a done callback for as long as it runs.
class DoneCallbackScope {
 public:
  DoneCallbackScope() noexcept { ++tls_done_callback_depth; }
  ~DoneCallbackScope() { --tls_done_callback_depth; }
  DoneCallbackScope(const DoneCallbackScope&) = delete;
  DoneCallbackScope& operator=(const DoneCallbackScope&) = delete;
};

[[noreturn]] void throw_wait_in_done_callback(const char* what);

/// Throws BlockingCallError when called inside a Future done callback: `what` (a
/// wait) would suspend or block whatever is completing the future.
inline void forbid_in_done_callback(const char* what) {
  if (tls_done_callback_depth != 0) [[unlikely]]
    throw_wait_in_done_callback(what);
}

/// Reports an exception that escaped a callback nobody else could take.
void report_unhandled(std::exception_ptr error, const char* where) noexcept;

/// Before a fiber fails `state` with `error`: if nobody retrieves the error before
/// the state's last handle goes, report it then (asyncio's "exception was never
/// retrieved"). LoopClosed is not reported: it is the loop ending, not a bug.
void watch_unobserved(FutureStateBase& state, const std::exception_ptr& error,
                      const std::string& fiber_name) noexcept;

class FutureStateBase {
 public:
  FutureStateBase() noexcept = default;
  FutureStateBase(const FutureStateBase&) = delete;
  FutureStateBase& operator=(const FutureStateBase&) = delete;
  /// Reports an error nobody retrieved, if watch_unobserved() asked for it.
  virtual ~FutureStateBase() {
    if (flags_.load(std::memory_order_relaxed) & kWatched) report_if_unobserved();
  }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  bool done() const noexcept { return phase_.load(std::memory_order_acquire) == kDone; }
  /// Valid once done().
  const std::exception_ptr& error() const noexcept { return error_; }
  /// Someone has seen the error (Future::result() rethrew it, exception() returned it).
  void mark_observed() noexcept { flags_.fetch_or(kObserved, std::memory_order_relaxed); }
  /// Before the state is shared: a ThreadPoolExecutor job completes it, and may use
  /// the stack of a fiber waiting on it, which must then outlive the job (~IOLoop).
  void mark_job_result() noexcept { flags_.fetch_or(kJobResult, std::memory_order_relaxed); }
  bool job_result() const noexcept { return flags_.load(std::memory_order_relaxed) & kJobResult; }

  /// Links `w` unless the state is already done; returns false (w unlinked) if done.
  bool link_waiter(Waiter& w) noexcept;
  /// Unlinks `w` if it is still linked. Also waits out a completer that is notifying
  /// it, so `w` may be destroyed as soon as this returns.
  void unlink_waiter(Waiter& w) noexcept;

  /// Claims the right to complete; throws PromiseAlreadySatisfied if taken.
  void claim();
  /// Gives back a claim whose value could not be stored.
  void unclaim() noexcept { phase_.store(kEmpty, std::memory_order_release); }
  /// Whether someone claimed or completed the state (the Promise's destructor asks).
  bool claimed() const noexcept { return phase_.load(std::memory_order_acquire) != kEmpty; }

  /// Completes a claimed state with an error.
  void fail_claimed(std::exception_ptr error) noexcept;
  /// Publishes the value stored after claim(), wakes waiters, runs callbacks.
  void finish_claimed() noexcept;

  /// Blocks the calling OS thread until done or until `deadline`; true if done.
  bool wait_blocking(std::optional<std::chrono::steady_clock::time_point> deadline) noexcept;

 private:
  friend void watch_unobserved(FutureStateBase& state, const std::exception_ptr& error,
                               const std::string& fiber_name) noexcept;
  void report_if_unobserved() noexcept;

  static constexpr int kEmpty = 0, kClaimed = 1, kDone = 2;
  static constexpr std::uint8_t kObserved = 1, kWatched = 2, kJobResult = 4;
  std::atomic<int> refs_{1};
  std::atomic<int> phase_{kEmpty};
  SpinLock lock_;
  // In the padding after lock_: a future costs no more memory for it. Where a watched
  // error came from is kept aside (it is rare: a fiber failed).
  std::atomic<std::uint8_t> flags_{0};
  std::exception_ptr error_;
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
};

template <class T>
class FutureState final : public FutureStateBase {
 public:
  ~FutureState() override {
    if (has_value_) value()->~T();
  }
  template <class... Args>
  void emplace(Args&&... args) {
    ::new (static_cast<void*>(storage_)) T(std::forward<Args>(args)...);
    has_value_ = true;
  }
  T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage_)); }
  const T* value() const noexcept { return std::launder(reinterpret_cast<const T*>(storage_)); }

 private:
  alignas(T) unsigned char storage_[sizeof(T)];
  bool has_value_ = false;
};

template <>
class FutureState<void> final : public FutureStateBase {
 public:
  void emplace() noexcept {}
};

}  // namespace fiberloop::detail
