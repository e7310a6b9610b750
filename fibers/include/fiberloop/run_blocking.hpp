#pragma once
/// @file
/// run_blocking(): the one-line facade for a blocking library call (a database
/// driver, a file read) made from a fiber.

#include <type_traits>
#include <utility>

#include <fiberloop/thread_pool_executor.hpp>
#include <fiberloop/wait.hpp>

namespace fiberloop {

/// In a fiber: runs `fn` on the loop's blocking pool (IOLoop::blocking_executor())
/// and suspends the fiber until it returns; the result or exception comes back on
/// the loop thread. On a thread with no running loop: just calls `fn`.
/// Throws BlockingCallError on a loop's thread outside a fiber and inside a Future
/// done callback.
///
/// `fn` may capture the fiber's locals by reference: the fiber's stack outlives the
/// job even when the loop is destroyed meanwhile. ~IOLoop then drops a job that has
/// not started (run_blocking throws LoopClosed) and waits for one that is running,
/// after which run_blocking returns its result as usual and the fiber's next wait
/// throws LoopClosed. There is no timeout here: a job that never returns holds its
/// fiber, and the loop's destruction, for good.
template <class F>
auto run_blocking(F&& fn) -> std::invoke_result_t<std::decay_t<F>&> {
  IOLoop* loop = detail::run_blocking_loop();
  if (!loop) {
    std::decay_t<F> local(std::forward<F>(fn));
    return local();
  }
  return wait_for_future(loop->blocking_executor().submit(std::forward<F>(fn)));
}

}  // namespace fiberloop
