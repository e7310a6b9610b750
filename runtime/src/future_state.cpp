#include <condition_variable>
#include <mutex>
#include <string>
#include <unordered_map>

#include <fiberloop/detail/future_state.hpp>
#include <fiberloop/errors.hpp>

namespace fiberloop::detail {

constinit thread_local unsigned tls_done_callback_depth = 0;

void throw_wait_in_done_callback(const char* what) {
  throw BlockingCallError(
      std::string(what) +
      " was called inside a Future done callback (add_done_callback(), add_future(), with_timeout()), which runs "
      "in the middle of completing the future, on whatever thread or fiber completes it: a done callback may not "
      "wait. Do the waiting in a fiber instead: spawn() one from the callback, or wait for the future in the "
      "fiber that needs its result.");
}

namespace {
// Where the watched errors of live futures came from (failed fibers: rare), by state.
std::mutex watched_lock;
std::unordered_map<const FutureStateBase*, std::string>& watched_origins() {
  static auto* origins = new std::unordered_map<const FutureStateBase*, std::string>();  // never destroyed:
  return *origins;  // states may die during static destruction
}
}  // namespace

void watch_unobserved(FutureStateBase& state, const std::exception_ptr& error, const std::string& fiber_name) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const LoopClosed&) {
    return;
  } catch (...) {
  }
  try {
    std::string origin = (fiber_name.empty() ? std::string("a fiber") : "fiber \"" + fiber_name + "\"") +
                         " (its future failed and was dropped without anyone retrieving the error)";
    std::lock_guard lock(watched_lock);
    watched_origins().insert_or_assign(&state, std::move(origin));
    state.flags_.fetch_or(FutureStateBase::kWatched, std::memory_order_relaxed);
  } catch (...) {  // out of memory: the error goes unreported, as it would have before
  }
}

void FutureStateBase::report_if_unobserved() noexcept {
  std::string origin;
  {
    std::lock_guard lock(watched_lock);
    auto it = watched_origins().find(this);
    if (it == watched_origins().end()) return;
    origin = std::move(it->second);
    watched_origins().erase(it);
  }
  if (error_ && !(flags_.load(std::memory_order_relaxed) & kObserved)) report_unhandled(error_, origin.c_str());
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
