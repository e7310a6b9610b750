#pragma once
// What the fibers layer may touch inside an IOLoop. Private to runtime/ and fibers/
// (adapters get fiberloop/detail/loop_hooks.hpp).

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>

#include <fiberloop/io_loop.hpp>

#include "fiber_driver.hpp"
#include "thread_wakeup.hpp"

struct epoll_event;
struct timespec;

namespace fiberloop::detail {

/// epoll_pwait2() without its signal mask (the loop passes none).
using EpollPwait2 = int (*)(int epoll_fd, epoll_event* events, int max_events, const timespec* timeout);
/// For tests: every loop of the process polls with `fn` instead of epoll_pwait2()
/// (null restores it), and forgets an earlier fallback to epoll_wait().
void replace_epoll_pwait2_for_testing(EpollPwait2 fn) noexcept;
/// Whether this process's loops poll with epoll_wait(), epoll_pwait2() having failed.
bool polling_with_epoll_wait() noexcept;

struct LoopInternals {
  static bool closing(const IOLoop& loop) noexcept { return loop.closing_; }
  static FiberDriver* fibers(const IOLoop& loop) noexcept { return loop.fibers_.get(); }
  static void set_fibers(IOLoop& loop, std::unique_ptr<FiberDriver> driver) noexcept {
    loop.fibers_ = std::move(driver);
  }
  static const std::shared_ptr<ThreadWakeup>& wakeup(const IOLoop& loop) noexcept { return loop.wakeup_; }
  static const std::shared_ptr<LoopAnchor>& anchor(const IOLoop& loop) noexcept { return loop.anchor_; }
  static void report(IOLoop& loop, std::exception_ptr error, const char* where) noexcept {
    loop.report(std::move(error), where);
  }
  static bool on_owner_thread(const IOLoop& loop) noexcept;
  static LoopCounters& counters(IOLoop& loop) noexcept { return loop.counters_; }
  /// Sends a watchdog or stuck-loop report to the loop's report handler (default:
  /// stderr). Thread: any (the watchdog's too).
  static void emit_report(const IOLoop& loop, std::string_view report) noexcept;
  /// The anchor's loop if it is alive (or being destroyed: its fibers are unwinding)
  /// and owned by the calling thread (which alone may destroy it, so it stays alive
  /// while the caller uses it), else null.
  static IOLoop* alive_on_this_thread(LoopAnchor& anchor) noexcept;
  /// Off the thread of the anchor's live loop, queues `fn` there (add_callback) and
  /// returns true: for work on state only the loop's thread may touch. Returns false,
  /// `fn` untouched, on the loop's thread or once the loop is gone, where the caller
  /// may do the work itself. Throws what add_callback() throws (`fn` is then lost).
  static bool hand_to_loop_thread(LoopAnchor& anchor, std::function<void()>& fn);
  /// Whether `fd` has a handler on `loop` (for tests: a stream that closed left none).
  static bool watches(const IOLoop& loop, int fd) noexcept;
  /// Timeouts added and not yet run or removed (for tests: nobody leaves timers behind).
  static std::size_t live_timers(const IOLoop& loop) noexcept;
  /// Whether callbacks wait to run (Thread: any).
  static bool has_callbacks(const IOLoop& loop) noexcept {
    return loop.has_callbacks_.load(std::memory_order_seq_cst);
  }
  /// Destroys the queued callbacks unrun (the loop is closing: they would never run).
  static void drop_callbacks(IOLoop& loop) noexcept { loop.drop_pending_callbacks(); }
  /// The loop whose start() is running on this thread, or null.
  static IOLoop* running_here() noexcept;
  /// Hands over ownership of `loop` if it is this thread's default loop (see
  /// IOLoop::current()), else returns null.
  static std::unique_ptr<IOLoop> release_default_loop(IOLoop& loop) noexcept;
};

/// An eventfd that a SIGUSR1 handler, installed on first call, writes to (never
/// closed: the handler may run at any time). Loops with Options::dump_on_sigusr1
/// watch it edge-triggered. Throws std::system_error when it cannot be set up.
int dump_signal_fd();
/// How many SIGUSR1 the handler has seen. Thread: any.
std::uint64_t dump_signals_received() noexcept;

/// A C++ symbol or type name demangled ("_ZN3foo3barEv" -> "foo::bar()"); any
/// other name (a C function's) as it is.
std::string demangle(const char* mangled);

/// "Type: message" for an exception, with the type's name demangled.
std::string describe_exception(const std::exception_ptr& error);

}  // namespace fiberloop::detail
