#include <thread>
#include <utility>

#include <fiberloop/wait.hpp>

#include "loop_internals.hpp"
#include "loop_scheduler.hpp"

namespace fiberloop {

namespace detail {

namespace {

/// Wakes a suspended fiber when the future completes.
class FiberWaiter final : public Waiter {
 public:
  explicit FiberWaiter(FiberWait& wait) noexcept : Waiter(false), wait_(wait) {}
  void notify_locked() noexcept override { wait_.wake(); }

 private:
  FiberWait& wait_;
};

[[noreturn]] void throw_loop_closed() {
  throw LoopClosed("the IOLoop running this fiber was destroyed while the fiber waited");
}

/// The running fiber's record; throws where a fiber would be needed but waiting is
/// impossible. Null means "a thread with no running loop: block it".
FiberRecord* waiting_fiber(const char* what) {
  FiberRecord* self = FiberRecord::current();
  if (!self) {
    forbid_on_loop_thread(what);
    return nullptr;
  }
  if (!self->loop || LoopInternals::closing(*self->loop)) throw_loop_closed();
  return self;
}

/// Suspends the running fiber until `wait` is woken.
void suspend(FiberRecord& self, FiberWait& wait, const WaitSite& site) noexcept {
  self.wait = &wait;
  self.site = &site;
  context::active()->suspend();
  self.wait = nullptr;
  self.site = nullptr;
}

WaitSite site_of(FiberRecord& self, const char* what, const CallSite* where,
                 std::optional<steady_time> until) noexcept {
  return {what, where, self.label, LoopInternals::counters(*self.loop).iteration_began, until};
}

/// The active Deadline, when it comes before `deadline` (none: never).
std::optional<steady_time> earlier_deadline(std::optional<steady_time> deadline) noexcept {
  const DeadlineNode* active = deadline_of(tls_active_chain);
  if (!active || active->when == steady_time::max() || (deadline && *deadline <= active->when)) return std::nullopt;
  return active->when;
}

[[noreturn]] void throw_deadline_passed(const char* what) {
  throw TimeoutError(std::string(what) + ": the Deadline set for this work passed");
}

/// The fiber's loop is being destroyed while it waits for a ThreadPoolExecutor job,
/// which may use the fiber's stack: the fiber stays suspended until the job has run,
/// unwakeable by the closing loop (self.wait stays null), and the loop waits for it.
void wait_out_job(FiberRecord& self, FutureStateBase& state) noexcept {
  if (self.fibers) self.fibers->job_wait_began();
  for (;;) {
    FiberWait wait;
    FiberWaiter waiter(wait);
    if (!state.link_waiter(waiter)) break;
    context::active()->suspend();
    state.unlink_waiter(waiter);
    if (state.done()) break;
  }
  if (self.fibers) self.fibers->job_wait_ended();  // null if the loop gave up on us
}

}  // namespace

void forbid_on_loop_thread(const char* what) {
  if (LoopInternals::running_here())
    throw BlockingCallError(std::string(what) +
                            " was called on an IOLoop's thread outside a fiber (in a callback, timeout or handler), "
                            "where waiting would stop the loop for good. Run this code in a fiber with "
                            "IOLoop::spawn() or IOLoop::run_sync(), or react to the future with add_done_callback().");
}

bool wait_state(FutureStateBase& state, std::optional<steady_time> deadline, const char* what,
                const CallSite* where) {
  if (deadline == steady_time::max()) deadline.reset();  // a deadline that cannot come
  const std::optional<steady_time> cut = earlier_deadline(deadline);
  FiberRecord* self = FiberRecord::current();
  if (!self) {
    forbid_on_loop_thread(what);
    if (state.wait_blocking(cut ? cut : deadline)) return true;  // a plain thread blocks, done callback or not
    if (cut) throw_deadline_passed(what);
    return false;
  }
  forbid_in_done_callback(what);
  if (!self->loop || LoopInternals::closing(*self->loop)) {
    if (!state.job_result()) throw_loop_closed();
    wait_out_job(*self, state);  // a job started by a fiber that caught LoopClosed, say
    return true;
  }
  // A job may use this fiber's stack: the Deadline cannot cut its wait short. The
  // fiber waits it out and then times out (run_blocking() refuses to start one late).
  const bool cut_after_job = cut && state.job_result();
  if (cut && !cut_after_job) deadline = cut;
  IOLoop& loop = *self->loop;
  WaitSite site = site_of(*self, what, where, deadline);
  site.on_job = state.job_result();
  for (;;) {
    FiberWait wait;
    FiberWaiter waiter(wait);
    if (!state.link_waiter(waiter)) break;
    bool timed_out = false;
    TimeoutHandle timer;
    if (deadline) timer = loop.call_at(*deadline, [&wait, &timed_out] {
        timed_out = true;
        wait.wake();
      });
    suspend(*self, wait, site);
    state.unlink_waiter(waiter);  // also waits out a completer still notifying us
    if (deadline && !timed_out) loop.remove_timeout(timer);
    if (state.done()) break;
    if (!self->loop || LoopInternals::closing(loop)) {
      if (!state.job_result()) throw_loop_closed();
      wait_out_job(*self, state);
      return true;
    }
    if (timed_out) {
      if (cut) throw_deadline_passed(what);
      return false;
    }
  }
  if (cut_after_job && std::chrono::steady_clock::now() >= *cut) throw_deadline_passed(what);
  return true;
}

void sleep_until(steady_time deadline, const CallSite* where) {
  const std::optional<steady_time> cut = earlier_deadline(deadline);
  const steady_time until = cut.value_or(deadline);
  FiberRecord* self = waiting_fiber("sleep_for()");
  if (!self) {
    std::this_thread::sleep_until(until);
    if (cut) throw_deadline_passed("sleep_for()");
    return;
  }
  forbid_in_done_callback("sleep_for()");
  IOLoop& loop = *self->loop;
  const WaitSite site = site_of(*self, "sleep_for()", where, until);
  FiberWait wait;
  bool fired = false;
  TimeoutHandle timer = loop.call_at(until, [&wait, &fired] {
    fired = true;
    wait.wake();
  });
  suspend(*self, wait, site);
  if (fired) {
    if (cut) throw_deadline_passed("sleep_for()");
    return;
  }
  loop.remove_timeout(timer);
  throw_loop_closed();  // only closing the loop wakes a sleep early
}

IOLoop* current_fiber_loop() noexcept {
  FiberRecord* self = FiberRecord::current();
  return self ? self->loop : nullptr;
}

IOLoop* run_blocking_loop() {
  FiberRecord* self = FiberRecord::current();
  if (!self) {
    forbid_on_loop_thread("run_blocking()");
    return nullptr;
  }
  forbid_in_done_callback("run_blocking()");
  // A closing loop's pool takes no more jobs: say why, as a wait would.
  if (!self->loop || LoopInternals::closing(*self->loop)) throw_loop_closed();
  // Nor does a Deadline that has passed: a job, once started, cannot be cut short.
  if (const DeadlineNode* active = deadline_of(tls_active_chain); active && std::chrono::steady_clock::now() >= active->when)
    throw_deadline_passed("run_blocking()");
  return self->loop;
}

WaitLabel::WaitLabel(const char* what_, std::string_view detail_) noexcept : what(what_), detail(detail_) {
  if (FiberRecord* self = FiberRecord::current()) {
    fiber_ = self;
    outer = std::exchange(self->label, this);
  }
}

WaitLabel::WaitLabel(const char* what_, int fd_) noexcept : WaitLabel(what_) { fd = fd_; }

WaitLabel::~WaitLabel() {
  if (fiber_) static_cast<FiberRecord*>(fiber_)->label = outer;
}

void throw_timeout(const char* what, std::chrono::nanoseconds timeout) {
  const auto ms = std::chrono::duration<double, std::milli>(timeout).count();
  throw TimeoutError(std::string(what) + ": timed out after " + std::to_string(ms) + " ms");
}

void LoopTimeout::start(std::chrono::nanoseconds timeout, std::function<void()> fn) {
  start(IOLoop::current(), timeout, std::move(fn));
}

void LoopTimeout::start(IOLoop& loop, std::chrono::nanoseconds timeout, std::function<void()> fn) {
  const steady_time deadline = saturating_add(std::chrono::steady_clock::now(), timeout);
  if (deadline == steady_time::max()) return;  // never comes: no timer at all
  handle_ = loop.call_at(deadline, std::move(fn));
  anchor_ = LoopInternals::anchor(loop);
}

void LoopTimeout::cancel() noexcept {
  if (!anchor_) return;
  // Only on the loop's own thread, while it lives; elsewhere the timeout stays and
  // finds nothing left to do when it runs.
  if (IOLoop* loop = LoopInternals::alive_on_this_thread(*anchor_)) loop->remove_timeout(handle_);
}

}  // namespace detail

bool in_fiber() noexcept { return detail::current_fiber_loop() != nullptr; }

}  // namespace fiberloop
