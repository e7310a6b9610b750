#pragma once
/// @file
/// ThreadPoolExecutor: runs blocking functions on a fixed set of OS threads and
/// hands their results back as futures (Tornado's run_on_executor).

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
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
  /// Completes the promise with `error` instead of running.
  virtual void fail(std::exception_ptr error) noexcept = 0;
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
  /// `fn` may reference the stack of a fiber that waits for the future directly
  /// (wait_for_future): if the fiber's loop is destroyed meanwhile, the fiber stays
  /// suspended until `fn` has run (see ~IOLoop). A fiber that stops waiting earlier
  /// (a timeout, with_timeout) must not let `fn` reference its stack.
  template <class F>
  [[nodiscard]] auto submit(F&& fn) -> Future<std::invoke_result_t<std::decay_t<F>&>>;

  /// Stops accepting work. Tasks already queued still run. With `wait`, returns
  /// when every worker has finished. Thread: any but a worker of this pool.
  void shutdown(bool wait = true);

  std::size_t thread_count() const noexcept { return threads_.size(); }
  /// Jobs queued and not yet started. Thread: any.
  std::size_t queued() const;
  /// Jobs queued or running. Thread: any.
  std::size_t in_flight() const;

 private:
  friend class IOLoop;
  /// Stops accepting work and fails the jobs not yet started with `error`, unrun;
  /// the running ones go on.
  void fail_queued(std::exception_ptr error) noexcept;

  void enqueue(std::unique_ptr<detail::ExecutorTask> task);
  void work() noexcept;

  mutable std::mutex mutex_;
  std::condition_variable work_available_;
  std::deque<std::unique_ptr<detail::ExecutorTask>> queue_;
  std::size_t running_ = 0;
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
  void fail(std::exception_ptr error) noexcept override {
    promise_.set_exception(std::move(error));  // cannot throw: the job never ran
    chain_ = ChainRef();
  }
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
  detail::state_of(result)->mark_job_result();
  enqueue(std::make_unique<detail::ExecutorTaskFor<std::decay_t<F>, R>>(std::forward<F>(fn), std::move(promise)));
  return result;
}

}  // namespace fiberloop
