#pragma once
// Template bodies for io_loop.hpp.

#include <mutex>

#include <fiberloop/io_loop.hpp>

namespace fiberloop {

namespace detail {

template <class F, class R>
class FiberTaskFor final : public FiberTask {
 public:
  template <class G>
  FiberTaskFor(G&& fn, Promise<R> promise, FutureStateBase& state)
      : fn_(std::forward<G>(fn)), promise_(std::move(promise)), state_(state) {}
  void run() override {
    if constexpr (std::is_void_v<R>) {
      fn_();
      promise_.set_value();
    } else {
      promise_.set_value(fn_());
    }
  }
  void fail(std::exception_ptr error) noexcept override {
    watch_unobserved(state_, error, name);
    try {
      promise_.set_exception(std::move(error));
    } catch (const PromiseAlreadySatisfied&) {
      // run() completed the promise and something after it threw: nothing to report to.
    }
  }

 private:
  F fn_;
  Promise<R> promise_;
  FutureStateBase& state_;  // promise_'s
};

}  // namespace detail

template <class T>
void IOLoop::add_future(Future<T> f, std::function<void(Future<T>)> fn) {
  // The future may complete after this loop is gone: reach it through the anchor.
  f.add_done_callback([anchor = anchor_, fn = std::move(fn)](const Future<T>& done) {
    std::lock_guard lock(anchor->lock);
    if (anchor->loop) anchor->loop->add_callback([fn, done] { fn(done); });
  });
}

template <class F>
auto IOLoop::spawn(F&& fn) -> Future<std::invoke_result_t<std::decay_t<F>&>> {
  return spawn(std::string(), std::forward<F>(fn));
}

template <class F>
auto IOLoop::spawn(std::string name, F&& fn) -> Future<std::invoke_result_t<std::decay_t<F>&>> {
  using R = std::invoke_result_t<std::decay_t<F>&>;
  Promise<R> promise;
  Future<R> result = promise.get_future();
  auto task = std::make_unique<detail::FiberTaskFor<std::decay_t<F>, R>>(std::forward<F>(fn), std::move(promise),
                                                                          *detail::state_of(result));
  task->name = std::move(name);
  spawn_fiber_(std::move(task));
  return result;
}

template <class R>
R IOLoop::finish_run_sync_(Future<R> f, std::optional<std::chrono::nanoseconds> timeout) {
  run_until_done_(*detail::state_of(f), timeout);
  return detail::take_result(f);
}

template <class F>
auto IOLoop::run_sync(F&& fn) -> std::invoke_result_t<std::decay_t<F>&> {
  check_startable("run_sync");
  return finish_run_sync_(spawn(std::forward<F>(fn)), std::nullopt);
}

template <class F>
auto IOLoop::run_sync(F&& fn, std::chrono::nanoseconds timeout) -> std::invoke_result_t<std::decay_t<F>&> {
  check_startable("run_sync");
  return finish_run_sync_(spawn(std::forward<F>(fn)), timeout);
}

template <class F, class Rep, class Period>
auto IOLoop::run_sync(F&& fn, std::chrono::duration<Rep, Period> timeout) -> std::invoke_result_t<std::decay_t<F>&> {
  check_startable("run_sync");
  return finish_run_sync_(spawn(std::forward<F>(fn)), detail::saturating_nanoseconds(timeout));
}

}  // namespace fiberloop
