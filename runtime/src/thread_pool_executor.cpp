#include <algorithm>
#include <system_error>

#include <fiberloop/errors.hpp>
#include <fiberloop/thread_pool_executor.hpp>

namespace fiberloop {

ThreadPoolExecutor::ThreadPoolExecutor(std::size_t threads) {
  threads = std::max<std::size_t>(threads, 1);
  threads_.reserve(threads);
  try {
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
  } catch (...) {
    shutdown(true);
    throw;
  }
}

ThreadPoolExecutor::~ThreadPoolExecutor() { shutdown(true); }

void ThreadPoolExecutor::enqueue(std::unique_ptr<detail::ExecutorTask> task) {
  {
    std::lock_guard lock(mutex_);
    if (shutting_down_)
      throw ExecutorShutdown("ThreadPoolExecutor::submit() after shutdown(): create a new executor for new work");
    queue_.push_back(std::move(task));
  }
  work_available_.notify_one();
}

void ThreadPoolExecutor::shutdown(bool wait) {
  {
    std::lock_guard lock(mutex_);
    shutting_down_ = true;
  }
  work_available_.notify_all();
  if (!wait) return;
  const auto self = std::this_thread::get_id();
  for (auto& t : threads_) {
    if (!t.joinable()) continue;
    if (t.get_id() == self)
      throw std::logic_error("ThreadPoolExecutor::shutdown(true) from one of its own workers would wait for itself");
    t.join();
  }
}

void ThreadPoolExecutor::fail_queued(std::exception_ptr error) noexcept {
  std::deque<std::unique_ptr<detail::ExecutorTask>> doomed;
  {
    std::lock_guard lock(mutex_);
    shutting_down_ = true;
    doomed.swap(queue_);
  }
  work_available_.notify_all();
  for (auto& task : doomed) task->fail(error);
}

void ThreadPoolExecutor::work() noexcept {
  for (;;) {
    std::unique_ptr<detail::ExecutorTask> task;
    {
      std::unique_lock lock(mutex_);
      work_available_.wait(lock, [this] { return shutting_down_ || !queue_.empty(); });
      if (queue_.empty()) return;  // shutting down and drained
      task = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    task->run();
    task.reset();  // the job's captures go before it stops counting as in flight
    std::lock_guard lock(mutex_);
    --running_;
  }
}

std::size_t ThreadPoolExecutor::in_flight() const {
  std::lock_guard lock(mutex_);
  return queue_.size() + running_;
}

std::size_t ThreadPoolExecutor::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

}  // namespace fiberloop
