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
/// Throws BlockingCallError on a loop's thread outside a fiber.
template <class F>
auto run_blocking(F&& fn) -> std::invoke_result_t<std::decay_t<F>&> {
  IOLoop* loop = detail::current_fiber_loop();
  if (!loop) {
    detail::forbid_on_loop_thread("run_blocking()");
    std::decay_t<F> local(std::forward<F>(fn));
    return local();
  }
  return wait_for_future(loop->blocking_executor().submit(std::forward<F>(fn)));
}

}  // namespace fiberloop
