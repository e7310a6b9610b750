#pragma once
/// @file
/// Waiting from plain synchronous code: the calls that let a deep call chain wait
/// for a future without knowing it runs on a fiber.
///
/// wait_for_future(f), called:
///  - on a done future: returns or rethrows at once, without a context switch;
///  - inside a fiber of a loop: suspends only that fiber; the loop runs other
///    fibers, callbacks, timers and I/O meanwhile; resumes on the same loop thread;
///  - on a loop's thread outside any fiber (in a callback): throws BlockingCallError;
///  - on a thread with no running loop (an executor thread, a plain thread): blocks
///    that thread until the future is done.
/// If the fiber's loop is destroyed while it waits, the wait throws LoopClosed.

#include <chrono>
#include <optional>
#include <string>
#include <type_traits>

#include <fiberloop/future.hpp>
#include <fiberloop/io_loop.hpp>

namespace fiberloop {

namespace detail {
using steady_time = std::chrono::steady_clock::time_point;
/// Waits for `state` as wait_for_future() documents; false when `deadline` passed.
bool wait_state(FutureStateBase& state, std::optional<steady_time> deadline, const char* what);
void sleep_until(steady_time deadline);
/// The loop of the running fiber, or null outside fiberloop fibers.
IOLoop* current_fiber_loop() noexcept;
/// Throws BlockingCallError if the calling thread runs a loop (outside a fiber).
void forbid_on_loop_thread(const char* what);
[[noreturn]] void throw_timeout(const char* what, std::chrono::nanoseconds timeout);
/// Removes `handle` from `loop` if `loop` is running on the calling thread.
void remove_timeout_if_here(IOLoop* loop, TimeoutHandle handle) noexcept;

}  // namespace detail

/// Waits for `f` and returns its value or rethrows its exception (see file comment).
template <class T>
T wait_for_future(Future<T> f) {
  if (!f.done()) detail::wait_state(*detail::state_of(f), std::nullopt, "wait_for_future()");
  return detail::take_result(f);
}

/// As wait_for_future(f), but throws TimeoutError when `timeout` passes first; `f`
/// itself is left untouched and may still complete later.
template <class T, class Rep, class Per>
T wait_for_future(Future<T> f, std::chrono::duration<Rep, Per> timeout) {
  if (!f.done()) {
    const auto limit = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout);
    if (!detail::wait_state(*detail::state_of(f), std::chrono::steady_clock::now() + limit, "wait_for_future()"))
      detail::throw_timeout("wait_for_future()", limit);
  }
  return detail::take_result(f);
}

/// A future that completes like `f`, or fails with TimeoutError after `timeout`,
/// whichever comes first. The timeout runs on IOLoop::current(); `f` is untouched.
template <class T, class Rep, class Per>
Future<T> with_timeout(Future<T> f, std::chrono::duration<Rep, Per> timeout);

/// Suspends the calling fiber for `d` (on a plain thread: sleeps the thread).
/// Throws BlockingCallError on a loop's thread outside a fiber.
template <class Rep, class Per>
void sleep_for(std::chrono::duration<Rep, Per> d) {
  detail::sleep_until(std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(d));
}

/// True inside a fiber spawned on an IOLoop.
bool in_fiber() noexcept;

}  // namespace fiberloop

#include <fiberloop/detail/wait_impl.hpp>
