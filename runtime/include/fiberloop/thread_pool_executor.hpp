#pragma once
/// @file
/// ThreadPoolExecutor: runs blocking functions on a fixed set of OS threads and
/// hands their results back as futures (Tornado's run_on_executor).

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <fiberloop/detail/context_chain.hpp>
#include <fiberloop/future.hpp>

namespace fiberloop {

namespace detail {
/// A queued job: runs, or is dropped; either way its promise is completed.
class ExecutorTask {
 public:
  virtual ~ExecutorTask() = default;
  virtual void run() noexcept = 0;
};
}  // namespace detail

class ThreadPoolExecutor {
 public:
  /// Starts `threads` worker threads (at least one).
  explicit ThreadPoolExecutor(std::size_t threads);
  /// shutdown(true).
  ~ThreadPoolExecutor();
  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

  /// Queues `fn` for a worker thread; the future completes with its result or
  /// exception, on that worker thread. `fn` runs under the stack contexts active
  /// here (its ContextLocal values, and for work it registers, its handlers).
  /// Thread: any. Throws ExecutorShutdown after shutdown().
  template <class F>
  [[nodiscard]] auto submit(F&& fn) -> Future<std::invoke_result_t<std::decay_t<F>&>>;

  /// Stops accepting work. Tasks already queued still run. With `wait`, returns
  /// when every worker has finished. Thread: any but a worker of this pool.
  void shutdown(bool wait = true);

  std::size_t thread_count() const noexcept { return threads_.size(); }

 private:
  void enqueue(std::unique_ptr<detail::ExecutorTask> task);
  void work() noexcept;

  std::mutex mutex_;
  std::condition_variable work_available_;
  std::deque<std::unique_ptr<detail::ExecutorTask>> queue_;
  bool shutting_down_ = false;
  std::vector<std::thread> threads_;
};

namespace detail {
template <class F, class R>
class ExecutorTaskFor final : public ExecutorTask {
 public:
  template <class G>
  ExecutorTaskFor(G&& fn, Promise<R> promise)
      : fn_(std::forward<G>(fn)), promise_(std::move(promise)), chain_(ChainRef::capture_shared()) {}
  void run() noexcept override {
    ChainScope scope(std::move(chain_));
    try {
      if constexpr (std::is_void_v<R>) {
        fn_();
        promise_.set_value();
      } else {
        promise_.set_value(fn_());
      }
    } catch (...) {
      promise_.set_exception(std::current_exception());
    }
  }

 private:
  F fn_;
  Promise<R> promise_;
  ChainRef chain_;  // captured by submit(), released on the worker
};
}  // namespace detail

template <class F>
auto ThreadPoolExecutor::submit(F&& fn) -> Future<std::invoke_result_t<std::decay_t<F>&>> {
  using R = std::invoke_result_t<std::decay_t<F>&>;
  Promise<R> promise;
  Future<R> result = promise.get_future();
  enqueue(std::make_unique<detail::ExecutorTaskFor<std::decay_t<F>, R>>(std::forward<F>(fn), std::move(promise)));
  return result;
}

}  // namespace fiberloop
