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
///    that thread until the future is done;
///  - inside a Future done callback (add_done_callback) that runs on a fiber — the
///    fiber that completed the future: throws BlockingCallError. The callback runs in
///    the middle of completing its future; suspending there would suspend the
///    completer half-way (and a loop closing meanwhile could not unwind it). Spawn a
///    fiber from the callback to wait instead. (On a loop's thread outside fibers the
///    rule above already applies; on a plain thread the wait blocks that thread.)
/// If the fiber's loop is destroyed while it waits, the wait throws LoopClosed — but
/// a wait on the future of a ThreadPoolExecutor job (run_blocking's included) first
/// lets the job finish, since it may use the fiber's stack (see ~IOLoop).
/// A fiber blocked on a Boost.Fiber primitive (mutex, condition_variable, channel)
/// when its loop is destroyed cannot be unwound; ~IOLoop documents what happens to it.
///
/// Timeouts: zero or negative times out at once (if the future is not done); one
/// too long for the clock (nanoseconds::max(), hours::max(), duration<double>(1e300))
/// never comes.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include <fiberloop/detail/call_site.hpp>
#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/future.hpp>
#include <fiberloop/io_loop.hpp>

namespace fiberloop {

namespace detail {
using steady_time = std::chrono::steady_clock::time_point;
/// Waits for `state` as wait_for_future() documents; false when `deadline` passed.
/// An active Deadline (stack_context.hpp) that comes first ends the wait with
/// TimeoutError instead. `where`: the waiting caller's line, for IOLoop::dump().
bool wait_state(FutureStateBase& state, std::optional<steady_time> deadline, const char* what,
                const CallSite* where = nullptr);
void sleep_until(steady_time deadline, const CallSite* where = nullptr);
/// The loop of the running fiber, or null outside fiberloop fibers.
IOLoop* current_fiber_loop() noexcept;
/// The loop whose pool run_blocking() uses: the running fiber's; null on a thread
/// with no running loop (run inline there). Throws where run_blocking() may not
/// wait: BlockingCallError (a loop's thread outside fibers, a done callback),
/// LoopClosed (the fiber's loop is being destroyed).
IOLoop* run_blocking_loop();
/// Throws BlockingCallError if the calling thread runs a loop (outside a fiber).
void forbid_on_loop_thread(const char* what);
[[noreturn]] void throw_timeout(const char* what, std::chrono::nanoseconds timeout);

/// A timeout on a loop that whoever completes a race may cancel, from any thread, even
/// after that loop is gone: it reaches the loop through its anchor.
class LoopTimeout {
 public:
  /// Runs `fn` on IOLoop::current() after `timeout` (none at all when the deadline
  /// cannot come).
  void start(std::chrono::nanoseconds timeout, std::function<void()> fn);
  /// As above, on `loop` (Thread: its own).
  void start(IOLoop& loop, std::chrono::nanoseconds timeout, std::function<void()> fn);
  /// Removes the timeout if its loop is alive and owned by the calling thread.
  void cancel() noexcept;

 private:
  std::shared_ptr<LoopAnchor> anchor_;
  TimeoutHandle handle_;
};

}  // namespace detail

/// Waits for `f` and returns its value or rethrows its exception (see file comment).
/// `where` names the caller in IOLoop::dump(); leave it defaulted. An active
/// Deadline ends the wait with TimeoutError when it passes.
template <class T>
T wait_for_future(Future<T> f, detail::CallSite where = detail::CallSite::current()) {
  if (!f.done()) detail::wait_state(*detail::state_of(f), std::nullopt, "wait_for_future()", &where);
  return detail::take_result(f);
}

/// As wait_for_future(f), but throws TimeoutError when `timeout` passes first; `f`
/// itself is left untouched and may still complete later.
template <class T, class Rep, class Per>
T wait_for_future(Future<T> f, std::chrono::duration<Rep, Per> timeout,
                  detail::CallSite where = detail::CallSite::current()) {
  if (!f.done()) {
    if (!detail::wait_state(*detail::state_of(f), detail::deadline_after(timeout), "wait_for_future()", &where))
      detail::throw_timeout("wait_for_future()", detail::saturating_nanoseconds(timeout));
  }
  return detail::take_result(f);
}

/// A future that completes like `f`, or fails with TimeoutError after `timeout`,
/// whichever comes first. The timeout runs on IOLoop::current(); `f` is untouched.
/// Thread: the loop's; `f` may complete on any thread.
template <class T, class Rep, class Per>
Future<T> with_timeout(Future<T> f, std::chrono::duration<Rep, Per> timeout);

/// Suspends the calling fiber for `d` (on a plain thread: sleeps the thread); zero
/// or negative returns at once (after letting the loop turn), and a duration too
/// long for the clock sleeps until the loop is destroyed (LoopClosed). Throws
/// BlockingCallError on a loop's thread outside a fiber and in a done callback.
/// An active Deadline that comes first ends the sleep with TimeoutError then.
template <class Rep, class Per>
void sleep_for(std::chrono::duration<Rep, Per> d, detail::CallSite where = detail::CallSite::current()) {
  detail::sleep_until(detail::deadline_after(d), &where);
}

/// True inside a fiber spawned on an IOLoop.
bool in_fiber() noexcept;

}  // namespace fiberloop

#include <fiberloop/detail/wait_impl.hpp>
