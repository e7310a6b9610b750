#pragma once
/// @file
/// IOLoop: a Tornado-style event loop (epoll, timers, fd handlers, a thread-safe
/// callback queue) that also schedules the fibers spawned on it.
///
/// Thread model: a loop belongs to the thread that constructed it. Only
/// add_callback(), stop() and spawn() may be called from other threads; every other
/// method throws std::logic_error when called from a thread that does not own the loop.
///
/// Every method that registers work (add_callback, call_later, call_at, add_future,
/// add_handler, spawn) captures the stack contexts active at the call
/// (stack_context.hpp) and runs the work under them; an exception escaping the work
/// goes to their ExceptionStackContext handlers, then to the unhandled-exception
/// report. The loop itself runs with no context active.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/detail/context_chain.hpp>
#include <fiberloop/detail/loop_counters.hpp>
#include <fiberloop/detail/spin_lock.hpp>
#include <fiberloop/future.hpp>

namespace fiberloop {

class ThreadPoolExecutor;
class IOLoop;

namespace detail {
class FiberDriver;
class ThreadWakeup;
class Watchdog;
struct LoopInternals;
void report_unhandled(IOLoop& loop, std::exception_ptr error, const std::string& where) noexcept;
bool loop_closing(const IOLoop& loop) noexcept;

/// Lets work that may outlive a loop (add_future's callback, a with_timeout, a
/// stream or server destroyed after its loop) reach it only while it is alive:
/// `loop` turns null, under `lock`, when ~IOLoop begins.
struct LoopAnchor {
  SpinLock lock;
  IOLoop* loop;                // null from the start of ~IOLoop: no new work is handed to it
  IOLoop* closing = nullptr;   // the loop while ~IOLoop unwinds its fibers: what they close
                               // still leaves the loop cleanly (its owner thread only)
};

/// A fiber's body, type-erased so the fibers layer can run it without templates.
class FiberTask {
 public:
  virtual ~FiberTask() = default;
  /// Runs the user's function and completes the fiber's future. May throw.
  virtual void run() = 0;
  /// Completes the fiber's future with `error` (the function threw, or never ran).
  virtual void fail(std::exception_ptr error) noexcept = 0;
  /// The name given to spawn(), or empty.
  std::string name;
};
}  // namespace detail

/// I/O readiness, as Tornado's IOLoop.READ / WRITE / ERROR.
enum class Events : std::uint32_t { none = 0, read = 1, write = 4, error = 8 };
constexpr Events operator|(Events a, Events b) noexcept {
  return static_cast<Events>(static_cast<std::uint32_t>(a) | static_cast<std::uint32_t>(b));
}
constexpr Events operator&(Events a, Events b) noexcept {
  return static_cast<Events>(static_cast<std::uint32_t>(a) & static_cast<std::uint32_t>(b));
}
constexpr Events& operator|=(Events& a, Events b) noexcept { return a = a | b; }
/// True when any of the bits of `e` is set.
constexpr bool any(Events e) noexcept { return e != Events::none; }

/// Counters of one loop, read with IOLoop::metrics(). Always on: each is a plain
/// increment on the loop's thread.
struct IOLoopMetrics {
  std::size_t fibers_alive = 0;        // spawned and not finished
  std::uint64_t fibers_created = 0;    // spawned since the loop was made
  std::uint64_t context_switches = 0;  // switches into a fiber of this loop
  std::uint64_t callbacks_run = 0;     // callbacks, timeouts and fd handlers run
  std::size_t timers_pending = 0;      // timeouts added and not yet run or removed
  std::uint64_t loop_iterations = 0;
  /// The longest callback or fiber slice the watchdog saw (to its sampling step of
  /// a quarter of watchdog_threshold); zero with the watchdog off.
  std::chrono::nanoseconds longest_slice{0};
  std::uint64_t watchdog_reports = 0;  // slices reported as blocking the loop
  std::uint64_t stuck_reports = 0;     // probable deadlocks reported
  std::size_t blocking_queue_depth = 0;  // run_blocking() jobs queued, not yet started
  /// The deepest stack use seen per fiber name ("" for unnamed fibers), to the page,
  /// measured when sampled fibers of that name finish (the first 4, then every
  /// 1024th; docs/diagnostics.md#stacks): size stacks (Options::stack_size) from it.
  struct StackUse {
    std::string fiber_name;
    std::size_t high_water_bytes = 0;
    std::uint64_t fibers_measured = 0;
  };
  std::vector<StackUse> stack_high_water;
};

/// Names a timeout of one loop so it can be removed. Copyable; a default-constructed
/// handle names nothing, and a handle names nothing in any other loop (even one built
/// later at the same address).
class TimeoutHandle {
 public:
  TimeoutHandle() noexcept = default;
  friend bool operator==(const TimeoutHandle&, const TimeoutHandle&) noexcept = default;

 private:
  friend class IOLoop;
  TimeoutHandle(std::uint32_t loop, std::uint32_t slot, std::uint64_t id) noexcept
      : id_(id), slot_(slot), loop_(loop) {}
  std::uint64_t id_ = 0;  // 0 names nothing
  std::uint32_t slot_ = 0;
  // The serial of the loop that made it: unique among the last 2^32 loops made in
  // the process (and a handle must match the slot's id as well). 0 for no loop.
  std::uint32_t loop_ = 0;
};

class IOLoop {
 public:
  using clock = std::chrono::steady_clock;

  struct Options {
    /// Bytes of stack for each fiber spawned on this loop. Only the pages a fiber
    /// touches cost memory; the rest is reserved address space.
    std::size_t stack_size = 256 * 1024;
    /// Threads of the pool run_blocking() uses, created on first use.
    std::size_t blocking_threads = 8;
    /// How many fiber stacks in the whole process get a guard page (an overflow
    /// then faults instead of corrupting memory). A guarded stack costs two kernel
    /// memory mappings and vm.max_map_count caps them (65 530 by default), so past
    /// this many live guarded stacks new stacks come without a guard page, checked
    /// by a canary at every switch instead (docs/diagnostics.md#stacks).
    /// 0 picks a quarter of vm.max_map_count.
    std::size_t guarded_stacks = 0;
    /// Finished fibers' stacks kept warm per thread for reuse; a fresh stack costs
    /// a few syscalls and page faults, a pooled one about 0.2 µs.
    std::size_t pooled_stacks = 1024;

    // ---- Diagnostics (docs/diagnostics.md) ----
    /// 0: off. Else a watchdog thread reports any callback or fiber slice that holds
    /// the loop longer than this, while it still blocks (fiber name, report values,
    /// the loop thread's stack), and again with the total when it ends.
    std::chrono::nanoseconds watchdog_threshold{0};
    /// How long the loop may sit idle with fibers suspended and nothing registered
    /// that could wake them (no timer, fd handler, callback or blocking job) before it
    /// reports a probable deadlock with dump(). 0: never.
    std::chrono::nanoseconds stuck_loop_grace = std::chrono::seconds(1);
    /// With a stuck loop (above), run_sync throws StuckLoopError carrying the dump
    /// instead of waiting on.
    bool throw_when_stuck = false;
    /// On SIGUSR1 (`kill -USR1 <pid>`), the loop sends dump() to its report handler.
    /// Installs a process-wide SIGUSR1 handler (a handler installed before still runs).
    bool dump_on_sigusr1 = false;
  };

  /// Creates a loop owned by the calling thread.
  IOLoop();
  explicit IOLoop(Options options);
  /// Owner thread only. In this order:
  ///  1. jobs of the blocking pool (run_blocking) that have not started are dropped
  ///     unrun: their futures fail with LoopClosed;
  ///  2. fibers still suspended in a fiberloop wait are unwound: the wait throws
  ///     LoopClosed — except a fiber waiting directly on the future of a
  ///     ThreadPoolExecutor job (run_blocking's included), queued or running, which may
  ///     reference the fiber's stack: that fiber stays suspended, and this destructor
  ///     waits, until the job has run (then its wait returns the job's result and the
  ///     fiber's next wait throws LoopClosed). A fiber's stack thus outlives every job
  ///     it waits on. Work handed to the loop meanwhile (a job spawning a fiber) is
  ///     dropped, so a job waiting on the loop ends (LoopClosed for a spawn,
  ///     BrokenPromise for a promise the callback held) instead of hanging;
  ///     a job that waits for something else that never comes hangs this destructor.
  ///  3. a fiber blocked on a Boost.Fiber primitive (mutex, condition_variable,
  ///     channel, barrier, Boost future) cannot be unwound: Boost's waits re-wait on a
  ///     spurious wakeup, and its wait-queue entry lives on the fiber's stack. Unless
  ///     the unwinding of the other fibers signals the primitive (a mutex one of them
  ///     held), the fiber is orphaned and stderr says "N fiber(s) of a destroyed
  ///     IOLoop are blocked on a Boost.Fiber primitive ...": its stack and the objects
  ///     on it stay as they are and its spawn() future stays pending. If the primitive
  ///     is signalled later from this thread or another, the fiber runs on (in a later
  ///     pass of any loop of this thread, or when the thread exits) and its next
  ///     fiberloop wait throws LoopClosed; then it ends and its future fails. If it is
  ///     never signalled, the fiber and its stack leak, and the thread's exit blocks
  ///     (asleep): Boost.Fiber makes a thread's exit wait for its fibers.
  ///  4. pending callbacks, timeouts and handlers are dropped unrun; the blocking
  ///     pool's threads are joined.
  ~IOLoop();
  IOLoop(const IOLoop&) = delete;
  IOLoop& operator=(const IOLoop&) = delete;

  /// The loop running on this thread; else the one most recently constructed on it
  /// and still alive; else a per-thread default loop, created on first use.
  static IOLoop& current();

  /// Runs the loop until stop(). Owner thread only; not from inside a fiber or
  /// while another loop runs on this thread. If stop() was called while the loop
  /// was not running, returns after one iteration.
  void start();
  /// Thread: any. start() returns after the current iteration.
  void stop() noexcept;
  /// Thread: any.
  bool running() const noexcept;

  /// Runs `fn` on the loop thread in a later iteration, in FIFO order.
  /// Thread: any — the only way to hand work to the loop from another thread.
  void add_callback(std::function<void()> fn);
  /// Runs `fn` after `delay`. Timeouts with equal deadlines run in the order added.
  /// A zero or negative delay runs `fn` in the next iteration; a delay too long for
  /// the clock (hours::max(), duration<double>(1e300)) never comes.
  TimeoutHandle call_later(std::chrono::nanoseconds delay, std::function<void()> fn) {
    return call_at(detail::deadline_after(delay), std::move(fn));
  }
  /// As above, for any duration: converted without overflow (hours::max() too).
  template <class Rep, class Period>
  TimeoutHandle call_later(std::chrono::duration<Rep, Period> delay, std::function<void()> fn) {
    return call_at(detail::deadline_after(delay), std::move(fn));
  }
  TimeoutHandle call_at(clock::time_point when, std::function<void()> fn);
  /// Cancels a timeout; a no-op when it already ran or was removed, or when `handle`
  /// came from another loop.
  void remove_timeout(TimeoutHandle handle);
  /// Runs `fn(f)` on this loop once `f` is done. Thread: any.
  template <class T>
  void add_future(Future<T> f, std::function<void(Future<T>)> fn);

  /// Calls `fn(fd, events)` whenever `fd` is ready for any of `events`
  /// (level-triggered; Events::error is always reported). Throws std::system_error
  /// if the fd cannot be watched (already added, not pollable). A handler whose fd
  /// was closed without remove_handler() is stale (epoll forgot the fd): a new fd
  /// with that number replaces it, and it never runs again.
  void add_handler(int fd, Events events, std::function<void(int fd, Events events)> fn);
  void update_handler(int fd, Events events);
  /// Stops watching `fd`. Safe from inside any handler, including fd's own.
  void remove_handler(int fd);

  /// Runs `fn` on a new fiber of this loop; the future completes with its result or
  /// exception. Thread: any (from another thread the fiber starts via add_callback).
  /// The fiber starts with the stack contexts active here. If `fn` throws and the
  /// future is dropped without anyone reading the error (result(), exception(),
  /// wait_for_future), the error goes to the unhandled-exception report when the
  /// future's last handle goes (LoopClosed excepted).
  template <class F>
  auto spawn(F&& fn) -> Future<std::invoke_result_t<std::decay_t<F>&>>;
  /// As spawn(fn), for a fiber named `name`: reports of errors from the fiber, and
  /// from callbacks it registered, name it.
  template <class F>
  auto spawn(std::string name, F&& fn) -> Future<std::invoke_result_t<std::decay_t<F>&>>;
  /// Starts the loop, runs `fn` on a fiber, stops the loop when `fn` finishes and
  /// returns its result or rethrows its exception. Owner thread, outside fibers.
  template <class F>
  auto run_sync(F&& fn) -> std::invoke_result_t<std::decay_t<F>&>;
  /// As run_sync(fn), but throws TimeoutError if `fn` has not finished after
  /// `timeout`; the fiber stays suspended and may finish if the loop runs again. A
  /// timeout too long for the clock never comes.
  template <class F>
  auto run_sync(F&& fn, std::chrono::nanoseconds timeout) -> std::invoke_result_t<std::decay_t<F>&>;
  /// As above, for any duration: converted without overflow.
  template <class F, class Rep, class Period>
  auto run_sync(F&& fn, std::chrono::duration<Rep, Period> timeout) -> std::invoke_result_t<std::decay_t<F>&>;

  /// Where exceptions that escape callbacks go (after stack contexts, if any), and
  /// errors of fibers nobody retrieved. `where` says what threw ("a callback",
  /// "a timeout callback", ...) and, when the work came from a named fiber,
  /// `registered in fiber "name"`. The default prints it with the exception's type
  /// and message to stderr.
  using UnhandledExceptionHandler = std::function<void(std::exception_ptr error, const std::string& where)>;
  void set_unhandled_exception_handler(UnhandledExceptionHandler handler);

  /// The pool behind run_blocking(), created on first use. Owner thread only. Jobs
  /// still queued on it when the loop is destroyed never run (see ~IOLoop).
  ThreadPoolExecutor& blocking_executor();
  const Options& options() const noexcept { return options_; }
  /// Fibers spawned on this loop that have not finished.
  std::size_t live_fibers() const noexcept;

  /// Every live fiber of this loop, one per line: its number and name, its state
  /// (running, ready, suspended), what it waits on and where ("sleep_for until
  /// +120 ms", "wait_for_future at handler.cpp:42", "memcached get 127.0.0.1:11211"),
  /// since when, its remaining Deadline and its report values (ContextLocal). Owner
  /// thread only.
  std::string dump() const;
  /// The loop's counters (IOLoopMetrics). Owner thread only.
  IOLoopMetrics metrics() const;
  /// Where watchdog and stuck-loop reports go (default: stderr; an empty function
  /// restores it). The handler may be called from the watchdog's own thread while
  /// the loop is blocked, so it must be thread-safe. Owner thread only.
  using ReportHandler = std::function<void(std::string_view report)>;
  void set_report_handler(ReportHandler handler);

 private:
  friend struct detail::LoopInternals;
  friend void detail::report_unhandled(IOLoop&, std::exception_ptr, const std::string&) noexcept;
  friend bool detail::loop_closing(const IOLoop&) noexcept;
  struct ChainedCallback;
  struct TimerSlot;
  struct TimerEntry;
  struct HandlerSlot;

  void spawn_fiber_(std::unique_ptr<detail::FiberTask> task);
  void run_until_done_(detail::FutureStateBase& state, std::optional<std::chrono::nanoseconds> timeout);
  template <class R>
  R finish_run_sync_(Future<R> f, std::optional<std::chrono::nanoseconds> timeout);

  void check_owner(const char* what) const;
  void check_startable(const char* what) const;
  void run_due_timers(clock::time_point now);
  void run_callbacks();
  void poll_io(clock::time_point now);
  clock::time_point next_wakeup() const noexcept;
  bool has_ready_work(clock::time_point now) const noexcept;
  void report(std::exception_ptr error, const char* where) noexcept;
  void drop_pending_work() noexcept;
  bool drop_pending_callbacks() noexcept;
  void compact_timers();
  bool may_be_stuck() const;
  void report_stuck();

  Options options_;
  const std::uint32_t serial_;  // names this loop in its TimeoutHandles (never 0)
  std::shared_ptr<detail::ThreadWakeup> wakeup_;
  const void* owner_;  // identifies the owning thread
  std::shared_ptr<detail::LoopAnchor> anchor_;
  IOLoop* older_alive_ = nullptr;  // this thread's loops, newest first (IOLoop::current)
  IOLoop* newer_alive_ = nullptr;
  int epoll_fd_ = -1;
  std::atomic<bool> running_{false};
  std::atomic<bool> stop_requested_{false};
  bool closing_ = false;

  // Callbacks: one FIFO shared by all threads.
  detail::SpinLock callbacks_lock_;
  std::vector<std::function<void()>> pending_callbacks_;
  std::vector<std::function<void()>> running_callbacks_;
  // The stack contexts of the callbacks registered under some, by index: a callback
  // registered with none costs no extra space (see add_callback).
  std::vector<ChainedCallback> pending_chains_;
  std::vector<ChainedCallback> running_chains_;
  std::atomic<bool> has_callbacks_{false};

  // Timeouts: a min-heap of (deadline, id) over slots that own the callbacks.
  std::vector<TimerSlot> timer_slots_;
  std::vector<std::uint32_t> free_timer_slots_;
  std::vector<TimerEntry> timer_heap_;
  std::vector<TimerEntry> due_timers_;
  std::size_t dead_timer_entries_ = 0;
  std::uint64_t next_timer_id_ = 1;

  // fd handlers, indexed by fd; the generation tells a stale epoll event from a
  // handler re-added for the same fd number.
  std::vector<HandlerSlot> handlers_;
  std::vector<HandlerSlot> removed_handlers_;
  clock::time_point last_poll_{};

  std::unique_ptr<detail::FiberDriver> fibers_;
  std::unique_ptr<ThreadPoolExecutor> blocking_executor_;
  UnhandledExceptionHandler unhandled_handler_;

  // Diagnostics (docs/diagnostics.md).
  detail::LoopCounters counters_;
  mutable detail::SpinLock report_lock_;
  std::shared_ptr<const ReportHandler> report_handler_;  // null: stderr; read by the watchdog's thread too
  std::unique_ptr<detail::Watchdog> watchdog_;           // with Options::watchdog_threshold only
  std::size_t watched_fds_ = 0;   // fds with an active handler
  bool stuck_reported_ = false;   // a stuck-loop report went out; nothing happened since
  bool run_sync_active_ = false;
  std::string stuck_dump_;        // for run_sync to throw (Options::throw_when_stuck)
  std::uint64_t dump_signals_seen_ = 0;  // SIGUSR1s already answered (Options::dump_on_sigusr1)
};

}  // namespace fiberloop

#include <fiberloop/detail/io_loop_impl.hpp>
