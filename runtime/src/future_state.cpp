#include <condition_variable>
#include <mutex>

#include <fiberloop/detail/future_state.hpp>
#include <fiberloop/errors.hpp>

namespace fiberloop::detail {

FutureStateBase::~FutureStateBase() {
  if (unobserved_origin_ && error_ && !observed_.load(std::memory_order_relaxed))
    report_unhandled(error_, unobserved_origin_->c_str());
}

void watch_unobserved(FutureStateBase& state, const std::exception_ptr& error, const std::string& fiber_name) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const LoopClosed&) {
    return;
  } catch (...) {
  }
  try {
    state.unobserved_origin_ = std::make_unique<std::string>(
        (fiber_name.empty() ? std::string("a fiber") : "fiber \"" + fiber_name + "\"") +
        " (its future failed and was dropped without anyone retrieving the error)");
  } catch (...) {  // out of memory: the error goes unreported, as it would have before
  }
}

bool FutureStateBase::link_waiter(Waiter& w) noexcept {
  std::lock_guard lock(lock_);
  if (phase_.load(std::memory_order_relaxed) == kDone) return false;
  w.prev_ = tail_;
  w.next_ = nullptr;
  (tail_ ? tail_->next_ : head_) = &w;
  tail_ = &w;
  w.linked_ = true;
  return true;
}

void FutureStateBase::unlink_waiter(Waiter& w) noexcept {
  std::lock_guard lock(lock_);
  if (!w.linked_) return;
  (w.prev_ ? w.prev_->next_ : head_) = w.next_;
  (w.next_ ? w.next_->prev_ : tail_) = w.prev_;
  w.prev_ = w.next_ = nullptr;
  w.linked_ = false;
}

void FutureStateBase::claim() {
  int expected = kEmpty;
  if (!phase_.compare_exchange_strong(expected, kClaimed, std::memory_order_acq_rel))
    throw PromiseAlreadySatisfied(
        "Promise already satisfied: set_value() and set_exception() may be called only once per promise");
}

void FutureStateBase::fail_claimed(std::exception_ptr error) noexcept {
  error_ = std::move(error);
  finish_claimed();
}

void FutureStateBase::finish_claimed() noexcept {
  Waiter* callbacks_head = nullptr;
  Waiter* callbacks_tail = nullptr;
  {
    std::lock_guard lock(lock_);
    phase_.store(kDone, std::memory_order_release);
    for (Waiter* w = std::exchange(head_, nullptr); w != nullptr;) {
      Waiter* next = w->next_;
      w->linked_ = false;
      w->prev_ = w->next_ = nullptr;
      if (w->is_callback_) {
        (callbacks_tail ? callbacks_tail->next_ : callbacks_head) = w;
        callbacks_tail = w;
      } else {
        w->notify_locked();  // under the lock: see Waiter
      }
      w = next;
    }
    tail_ = nullptr;
  }
  // The Promise keeps a reference while this runs, so `this` outlives the callbacks.
  for (Waiter* w = callbacks_head; w != nullptr;) {
    Waiter* next = w->next_;
    w->run_and_dispose(*this);
    w = next;
  }
}

namespace {
class ThreadWaiter final : public Waiter {
 public:
  ThreadWaiter() noexcept : Waiter(false) {}
  void notify_locked() noexcept override {
    std::lock_guard lock(mutex_);
    woken_ = true;
    cv_.notify_one();
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  bool woken_ = false;
};
}  // namespace

bool FutureStateBase::wait_blocking(std::optional<std::chrono::steady_clock::time_point> deadline) noexcept {
  if (done()) return true;
  ThreadWaiter w;
  if (!link_waiter(w)) return true;
  std::unique_lock lock(w.mutex_);
  if (!deadline) {
    w.cv_.wait(lock, [&] { return w.woken_; });
    return true;
  }
  if (w.cv_.wait_until(lock, *deadline, [&] { return w.woken_; })) return true;
  lock.unlock();
  unlink_waiter(w);  // waits out a completer that is notifying w right now
  return done();
}

}  // namespace fiberloop::detail
