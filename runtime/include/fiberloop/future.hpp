#pragma once
/// @file
/// Future<T> and Promise<T>: a value or an exception that arrives later, safe to
/// complete from any thread. Waiting for one inside a fiber is wait_for_future().

#include <exception>
#include <functional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <fiberloop/detail/context_chain.hpp>
#include <fiberloop/detail/future_state.hpp>
#include <fiberloop/errors.hpp>

namespace fiberloop {

template <class T = void>
class Future;
template <class T = void>
class Promise;

namespace detail {
template <class T>
struct ResultRef {
  using type = const T&;
};
template <>
struct ResultRef<void> {
  using type = void;
};
template <class T>
FutureState<T>* state_of(const Future<T>& f) noexcept;
/// Tag for Future's constructor that adopts one reference to a state.
struct AdoptState {};
}  // namespace detail

/// A copyable handle to a result that arrives later.
/// **Thread:** any thread; copies may be used on different threads at once.
template <class T>
class [[nodiscard]] Future {
 public:
  using value_type = T;

  /// An invalid future (valid() is false).
  Future() noexcept = default;
  Future(const Future& other) noexcept : state_(other.state_) {
    if (state_) state_->add_ref();
  }
  Future(Future&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  /// Internal: takes over one reference the caller holds on `state`.
  Future(detail::AdoptState, detail::FutureState<T>* state) noexcept : state_(state) {}
  Future& operator=(Future other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ~Future() {
    if (state_) state_->release();
  }

  /// False for a default-constructed future.
  bool valid() const noexcept { return state_ != nullptr; }
  /// True once a value or an exception has been set.
  bool done() const noexcept { return state_ && state_->done(); }

  /// The value (nothing for Future<void>); rethrows the stored exception.
  /// Throws FutureNotDone if !done(): use wait_for_future() to wait.
  typename detail::ResultRef<T>::type result() const {
    require_done("result");
    if (state_->error()) {
      state_->mark_observed();
      std::rethrow_exception(state_->error());
    }
    if constexpr (!std::is_void_v<T>) return *state_->value();
  }

  /// The stored exception, or null on success. Throws FutureNotDone if !done().
  std::exception_ptr exception() const {
    require_done("exception");
    if (state_->error()) state_->mark_observed();
    return state_->error();
  }

  /// Runs `cb` when the future is done: on the thread that completes it, or at once
  /// on this thread if it is already done, under the stack contexts active here.
  /// Callbacks run in the order added; an exception escaping one goes to those
  /// contexts' handlers, then to the unhandled-exception report, and does not affect
  /// the others. Reading the error in `cb` (result(), exception()) counts as
  /// retrieving it.
  /// `cb` runs in the middle of completing the future, on whatever completes it (a
  /// fiber, a loop callback, an executor thread), so it must not suspend: on a fiber
  /// or a loop's thread, fiberloop's waits (wait_for_future on a future not done,
  /// sleep_for, run_blocking, a TcpStream read...) throw BlockingCallError inside it,
  /// and it must not block on a Boost.Fiber primitive either. (On a plain thread a
  /// wait blocks that thread, as anywhere there.) To wait, spawn() a fiber from `cb`.
  void add_done_callback(std::function<void(const Future<T>&)> cb) const;

 private:
  friend class Promise<T>;
  friend detail::FutureState<T>* detail::state_of<T>(const Future<T>&) noexcept;

  void require_done(const char* what) const {
    if (!state_) throw FutureNotDone(std::string("Future::") + what + "() on an invalid (default-constructed) future");
    if (!state_->done())
      throw FutureNotDone(std::string("Future::") + what +
                          "() before the future is done: wait with wait_for_future() or add_done_callback()");
  }

  detail::FutureState<T>* state_ = nullptr;
};

/// The producer side of a Future. Move-only. set_value/set_exception are
/// thread-safe; a second one throws PromiseAlreadySatisfied. A Promise destroyed
/// without either fails its future with BrokenPromise.
template <class T>
class Promise {
 public:
  Promise() : state_(new detail::FutureState<T>()) {}
  Promise(Promise&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)), future_taken_(other.future_taken_) {}
  Promise& operator=(Promise&& other) noexcept {
    if (this != &other) {
      abandon();
      state_ = std::exchange(other.state_, nullptr);
      future_taken_ = other.future_taken_;
    }
    return *this;
  }
  Promise(const Promise&) = delete;
  Promise& operator=(const Promise&) = delete;
  ~Promise() { abandon(); }

  /// The future this promise completes. May be called once.
  Future<T> get_future() {
    if (!state_) throw std::logic_error("Promise::get_future() on a moved-from promise");
    if (future_taken_) throw std::logic_error("Promise::get_future() may be called only once");
    future_taken_ = true;
    state_->add_ref();
    return Future<T>(detail::AdoptState{}, state_);
  }

  /// Completes the future with `v` (set_value() for Promise<void>).
  template <class U = T>
    requires(!std::is_void_v<U>)
  void set_value(std::type_identity_t<U> v) {
    emplace(std::move(v));
  }
  template <class U = T>
    requires std::is_void_v<U>
  void set_value() {
    emplace();
  }

  /// Completes the future with an exception, which result() will rethrow.
  void set_exception(std::exception_ptr e) {
    if (!e) throw std::invalid_argument("Promise::set_exception() with a null exception_ptr");
    checked_state()->claim();
    state_->fail_claimed(std::move(e));
  }

 private:
  template <class... Args>
  void emplace(Args&&... args) {
    detail::FutureState<T>* s = checked_state();
    s->claim();
    try {
      s->emplace(std::forward<Args>(args)...);
    } catch (...) {
      s->unclaim();
      throw;
    }
    s->finish_claimed();
  }
  detail::FutureState<T>* checked_state() const {
    if (!state_) throw std::logic_error("Promise used after it was moved from");
    return state_;
  }
  void abandon() noexcept {
    if (!state_) return;
    if (!state_->claimed()) {
      state_->claim();
      state_->fail_claimed(std::make_exception_ptr(BrokenPromise()));
    }
    std::exchange(state_, nullptr)->release();
  }

  detail::FutureState<T>* state_;
  bool future_taken_ = false;
};

/// A future that is already done with `v`.
template <class T>
Future<std::decay_t<T>> make_ready_future(T&& v) {
  Promise<std::decay_t<T>> p;
  auto f = p.get_future();
  p.set_value(std::forward<T>(v));
  return f;
}
inline Future<void> make_ready_future() {
  Promise<void> p;
  auto f = p.get_future();
  p.set_value();
  return f;
}

/// A future that is already done with the exception `e`.
template <class T>
Future<T> make_exceptional_future(std::exception_ptr e) {
  Promise<T> p;
  auto f = p.get_future();
  p.set_exception(std::move(e));
  return f;
}

namespace detail {

template <class T>
FutureState<T>* state_of(const Future<T>& f) noexcept {
  return f.state_;
}

/// The result of a done future, as a waiter returns it: copied, or — for a
/// move-only type — moved out, so only the first waiter can take it.
template <class T>
T take_result(const Future<T>& f) {
  if constexpr (std::is_void_v<T>) {
    f.result();
  } else if constexpr (std::is_copy_constructible_v<T>) {
    return f.result();
  } else {
    return std::move(const_cast<T&>(f.result()));
  }
}

template <class T>
class CallbackWaiter final : public Waiter {
 public:
  explicit CallbackWaiter(std::function<void(const Future<T>&)> cb) noexcept
      : Waiter(/*is_callback=*/true), cb_(std::move(cb)), chain_(ChainRef::capture_shared()) {}
  void run_and_dispose(FutureStateBase& state) noexcept override {
    run(static_cast<FutureState<T>&>(state), cb_, std::move(chain_));
    delete this;
  }
  /// Runs `cb` under `chain`.
  static void run(FutureState<T>& state, const std::function<void(const Future<T>&)>& cb, ChainRef chain) noexcept;
 private:
  std::function<void(const Future<T>&)> cb_;
  ChainRef chain_;  // may run and be dropped on the completing thread
};

}  // namespace detail

}  // namespace fiberloop

#include <fiberloop/detail/future_impl.hpp>
