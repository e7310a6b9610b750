#include "loop_scheduler.hpp"

#include <cxxabi.h>

#include <cstdio>
#include <thread>
#include <utility>

#include <boost/context/detail/exception.hpp>
#include <boost/fiber/fiber.hpp>
#include <boost/fiber/operations.hpp>
#include <boost/fiber/type.hpp>

#include "loop_internals.hpp"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#include "stack_pool.hpp"

namespace fiberloop::detail {

namespace {
thread_local LoopScheduler* tls_scheduler = nullptr;
using boost::fibers::type;
}  // namespace

// ---- FiberRecord -------------------------------------------------------------

FiberRecord* FiberRecord::current() noexcept {
  // Without our scheduler on this thread there are no fiberloop fibers here; do not
  // let context::active() set up Boost.Fiber on a thread that never asked for it.
  if (!tls_scheduler) return nullptr;
  return of(context::active());
}

FiberWait::FiberWait() noexcept
    : ctx_(context::active()), scheduler_(tls_scheduler), epoch_(++ctx_->waker_epoch_) {}

bool FiberWait::wake() noexcept {
  std::size_t expected = epoch_;
  if (tls_scheduler == scheduler_) {  // the fiber's own thread
    if (!ctx_->waker_epoch_.compare_exchange_strong(expected, epoch_ + 1, std::memory_order_acq_rel)) return false;
    ctx_->get_scheduler()->schedule(ctx_);
    return true;
  }
  // Another thread: until the fiber sits in the remote-ready queue, a closing loop
  // must know a wake is coming (the count lives in the scheduler, which outlives
  // the fiber; the context may be gone once it is queued).
  scheduler_->remote_wakes_in_flight_.fetch_add(1, std::memory_order_acq_rel);
  const bool won = ctx_->waker_epoch_.compare_exchange_strong(expected, epoch_ + 1, std::memory_order_acq_rel);
  if (won) ctx_->get_scheduler()->schedule_from_remote(ctx_);
  scheduler_->remote_wakes_in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  return won;
}

// ---- LoopScheduler -----------------------------------------------------------

LoopScheduler& LoopScheduler::for_this_thread() {
  if (!tls_scheduler) {
    ThreadWakeup::for_this_thread();  // may throw; do it before Boost's noexcept install
    boost::fibers::use_scheduling_algorithm<LoopScheduler>();
  }
  return *tls_scheduler;
}

LoopScheduler* LoopScheduler::installed() noexcept { return tls_scheduler; }

LoopScheduler::LoopScheduler() : wakeup_(ThreadWakeup::for_this_thread()) { tls_scheduler = this; }

LoopScheduler::~LoopScheduler() {
  if (tls_scheduler == this) tls_scheduler = nullptr;
#if defined(__SANITIZE_THREAD__)
  // Boost destroys its scheduler at thread exit after its dispatcher switched back to
  // the main context without asking pick_next: tell the sanitizer where we are.
  if (tsan_main_ && __tsan_get_current_fiber() != tsan_main_) __tsan_switch_to_fiber(tsan_main_, 0);
  if (tsan_dispatcher_) __tsan_destroy_fiber(tsan_dispatcher_);
#endif
#if defined(__SANITIZE_ADDRESS__)
  // Likewise for AddressSanitizer, which clears the thread's stack by these bounds.
  if (asan_main_bottom_) {
    __sanitizer_start_switch_fiber(nullptr, asan_main_bottom_, asan_main_size_);
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
  }
#endif
}

void LoopScheduler::awakened(context* ctx) noexcept {
  if (ctx->is_context(type::dispatcher_context)) {
    dispatcher_ = ctx;
  } else if (ctx->is_context(type::main_context)) {
    main_ = ctx;
  } else if (FiberRecord* record = FiberRecord::of(ctx); record && record->fibers) {
    ctx->ready_link(record->fibers->ready_);
    ++record->fibers->ready_count_;
  } else {
    ctx->ready_link(unowned_);
    ++unowned_count_;
  }
}

context* LoopScheduler::pop(ReadyQueue& queue, std::size_t& count) noexcept {
  context* ctx = &queue.front();
  queue.pop_front();
  --count;
  return ctx;
}

void LoopScheduler::swap_fiber_locals(context* self, context* next) noexcept {
  // One record lookup per side: this runs on every switch.
  FiberRecord* leaving = FiberRecord::of(self);
  FiberRecord* entering = FiberRecord::of(next);
  if (leaving) leaving->check_stack_canary();
  tls_running_fiber = entering;  // for the stack-overflow handler, which cannot ask Boost
  if (entering && entering->loop) LoopInternals::counters(*entering->loop).fiber_slice_began();
  FiberLocals* out = leaving ? &leaving->locals : locals_of(self);
  FiberLocals* in = entering ? &entering->locals : locals_of(next);
  auto* live = reinterpret_cast<ExceptionState*>(abi::__cxa_get_globals());
  out->exceptions = *live;
  *live = in->exceptions;
  // The active stack contexts: a plain pointer swap (the reference moves with it).
  out->chain = tls_active_chain;
  tls_active_chain = in->chain;
  out->done_callback_depth = tls_done_callback_depth;
  tls_done_callback_depth = in->done_callback_depth;
}

// Every context switch on this thread goes through pick_next (Boost resumes what it
// returns), which makes it the place to tell ThreadSanitizer about stack switches:
// Debian's Boost.Context does not. pick_next itself is left uninstrumented so the
// sanitizer's shadow call stacks stay balanced across the switch.
#if defined(__SANITIZE_THREAD__)
__attribute__((no_sanitize("thread")))
#endif
context* LoopScheduler::pick_next() noexcept {
  context* self = context::active();
  return switching(self, pick(self));
}

FiberLocals* LoopScheduler::locals_of(context* ctx) noexcept {
  if (ctx->is_context(type::main_context)) return &main_locals_;
  if (ctx->is_context(type::dispatcher_context)) return &dispatcher_locals_;
  if (FiberRecord* record = FiberRecord::of(ctx)) return &record->locals;
  return &unowned_locals_;
}

#if defined(__SANITIZE_THREAD__)
namespace {
thread_local void* tls_tsan_fiber_to_destroy = nullptr;
}  // namespace

// ~FiberRecord runs between the sanitizer's fiber switches and stays uninstrumented:
// an instrumented destructor would push its frame on one fiber's shadow stack and pop
// it from another's, and the sanitizer's shadow stacks would drift until they corrupt
// its own state.
__attribute__((no_sanitize("thread"))) FiberRecord::~FiberRecord() {
  // Boost deletes the record while releasing the finished fiber, then jumps back onto
  // that fiber's stack to run the epilogue of its entry function (instrumented code,
  // compiled from Boost.Context's headers): it must pop the fiber's own shadow stack.
  // So the sanitizer follows onto the fiber here, and forgets it at the next switch.
  if (!tsan_fiber) return;
  void* previous = tls_tsan_fiber_to_destroy;
  tls_tsan_fiber_to_destroy = tsan_fiber;
  __tsan_switch_to_fiber(tsan_fiber, 0);
  if (previous) __tsan_destroy_fiber(previous);
}

__attribute__((no_sanitize("thread"))) context* LoopScheduler::switching(context* self, context* next) noexcept {
  if (!next) return next;
  swap_fiber_locals(self, next);
  if (!tsan_main_ && context::active()->is_context(type::main_context)) tsan_main_ = __tsan_get_current_fiber();
  void* fiber = nullptr;
  if (next->is_context(type::main_context)) {
    fiber = tsan_main_;
  } else if (next->is_context(type::dispatcher_context)) {
    if (!tsan_dispatcher_) tsan_dispatcher_ = __tsan_create_fiber(0);
    fiber = tsan_dispatcher_;
  } else if (FiberRecord* record = FiberRecord::of(next)) {
    if (!record->tsan_fiber) record->tsan_fiber = __tsan_create_fiber(0);
    fiber = record->tsan_fiber;
  }
  if (!fiber) return next;  // a plain Boost.Fiber fiber: unknown to the sanitizer
  __tsan_switch_to_fiber(fiber, 0);
  if (void* dead = tls_tsan_fiber_to_destroy) {
    tls_tsan_fiber_to_destroy = nullptr;
    __tsan_destroy_fiber(dead);
  }
  return next;
}
#elif defined(__SANITIZE_ADDRESS__)
// AddressSanitizer must know which stack is running: __asan_handle_no_return (every
// throw) unpoisons the current stack from sp to its top, and frames unwound on a stack
// it does not know keep their poison. The switch is announced (start and finish)
// just before Boost makes it, like the ThreadSanitizer one; nothing between here
// and the real switch is instrumented.
__attribute__((no_sanitize_address)) void LoopScheduler::announce_stack_switch(context* self, context* next) noexcept {
  const void* bottom = nullptr;
  std::size_t size = 0;
  if (next->is_context(type::main_context)) {
    bottom = asan_main_bottom_;
    size = asan_main_size_;
  } else if (FiberRecord* record = FiberRecord::of(next)) {
    bottom = record->stack_bottom;
    size = record->stack_size;
  }
  const void* old_bottom = nullptr;
  std::size_t old_size = 0;
  __sanitizer_start_switch_fiber(nullptr, bottom, size);
  __sanitizer_finish_switch_fiber(nullptr, &old_bottom, &old_size);
  if (!asan_main_bottom_ && self->is_context(type::main_context)) {
    asan_main_bottom_ = old_bottom;
    asan_main_size_ = old_size;
  }
}

__attribute__((no_sanitize_address)) context* LoopScheduler::switching(context* self, context* next) noexcept {
  if (!next) return next;
  swap_fiber_locals(self, next);
  if (next != self) announce_stack_switch(self, next);
  return next;
}
#else
context* LoopScheduler::switching(context* self, context* next) noexcept {
  if (next) swap_fiber_locals(self, next);
  return next;
}
#endif

context* LoopScheduler::pick(context* self) noexcept {
  // A new Boost sleep changes the deadline the loop sleeps to: the dispatcher reports
  // it. (Finished fibers say so themselves: fiber_finished().)
  if (self->sleep_is_linked()) dispatcher_wanted_ = true;

  if (pass_owner_) {
    if (pass_left_ > 0 && pass_owner_->ready_count_ > 0) {
      --pass_left_;
      return pop(pass_owner_->ready_, pass_owner_->ready_count_);
    }
    if (unowned_left_ > 0 && unowned_count_ > 0) {
      --unowned_left_;
      return pop(unowned_, unowned_count_);
    }
    if (!dispatcher_turn_ && dispatcher_ &&
        (dispatcher_wanted_ || (remote_woken_.load(std::memory_order_relaxed) &&
                                remote_woken_.exchange(false, std::memory_order_seq_cst)))) {
      dispatcher_wanted_ = false;
      dispatcher_turn_ = true;
      deadline_asked_ = false;
      return std::exchange(dispatcher_, nullptr);
    }
    if (dispatcher_turn_ && !deadline_asked_ && self->is_context(type::dispatcher_context)) {
      deadline_asked_ = true;
      return nullptr;  // the dispatcher answers with suspend_until(its next deadline)
    }
    pass_owner_ = nullptr;
    dispatcher_turn_ = false;
    return std::exchange(main_, nullptr);
  }

  // Outside a pass the main context is running loop code, or is blocked on a
  // Boost.Fiber primitive; then run the last-driven loop's fibers until it can go on.
  if (main_) return std::exchange(main_, nullptr);
  if (last_owner_ && last_owner_->ready_count_ > 0) return pop(last_owner_->ready_, last_owner_->ready_count_);
  if (unowned_count_ > 0) return pop(unowned_, unowned_count_);
  if (self->is_context(type::dispatcher_context)) return nullptr;
  return std::exchange(dispatcher_, nullptr);
}

bool LoopScheduler::has_ready_fibers() const noexcept {
  return unowned_count_ > 0 || main_ != nullptr || (last_owner_ && last_owner_->ready_count_ > 0);
}

void LoopScheduler::suspend_until(const time_point& deadline) noexcept {
  sleep_deadline_ = deadline;
  if (pass_owner_) return;  // the dispatcher's turn in a pass: it only reports
  // Nothing can run and no loop is driving (the main context waits on a Boost.Fiber
  // primitive, or the thread is exiting): sleep until another thread or the deadline.
  wakeup_->begin_sleep();
  if (!remote_woken_.load(std::memory_order_seq_cst)) wakeup_->sleep_until(deadline);
  wakeup_->end_sleep();
  remote_woken_.store(false, std::memory_order_relaxed);  // the dispatcher drains next
}

void LoopScheduler::notify() noexcept {
  // Thread: any. From another thread: a fiber of this thread sits in Boost's
  // remote-ready queue. From this one: Boost's dispatcher, at thread exit, on every
  // turn while fibers remain (orphans blocked on a Boost.Fiber primitive): that is no
  // news, and taking it for a wake would spin the exiting thread until they end.
  if (tls_scheduler == this) return;
  remote_woken_.store(true, std::memory_order_seq_cst);
  wakeup_->wake();
}

void LoopScheduler::sleep_until_woken(const IOLoop& loop) noexcept {
  wakeup_->begin_sleep();  // pairs with notify() and add_callback(): no wake is lost
  if (!remote_woken_.load(std::memory_order_seq_cst) && !remote_wakes_in_flight() &&
      !LoopInternals::has_callbacks(loop))
    wakeup_->sleep_until(time_point::max());
  wakeup_->end_sleep();
}

bool LoopScheduler::dispatcher_has_work(time_point now) const noexcept {
  return dispatcher_ != nullptr &&
         (dispatcher_wanted_ || now >= sleep_deadline_ || remote_woken_.load(std::memory_order_seq_cst));
}

bool LoopScheduler::has_work(const LoopFibers& fibers, time_point now) const noexcept {
  return fibers.ready_count_ > 0 || unowned_count_ > 0 || dispatcher_has_work(now);
}

void LoopScheduler::run_pass(LoopFibers& fibers, time_point now) noexcept {
  if (now >= sleep_deadline_) dispatcher_wanted_ = true;
  pass_left_ = fibers.ready_count_;
  unowned_left_ = unowned_count_;
  if (pass_left_ == 0 && unowned_left_ == 0 && !dispatcher_has_work(now)) return;
  pass_owner_ = last_owner_ = &fibers;
  context::active()->yield();  // back here once pick_next() hands out main again
}

void LoopScheduler::adopt_orphan(context* ctx) noexcept {
  ctx->ready_link(unowned_);
  ++unowned_count_;
}

void LoopScheduler::forget(const LoopFibers& fibers) noexcept {
  if (last_owner_ == &fibers) last_owner_ = nullptr;
}

// ---- LoopFibers --------------------------------------------------------------

LoopFibers& LoopFibers::of(IOLoop& loop) {
  if (FiberDriver* driver = LoopInternals::fibers(loop)) return static_cast<LoopFibers&>(*driver);
  auto fibers = std::make_unique<LoopFibers>(loop, LoopScheduler::for_this_thread());
  LoopFibers& ref = *fibers;
  LoopInternals::set_fibers(loop, std::move(fibers));
  // thread_locals die in reverse order of construction: this holder, made after
  // Boost.Fiber set up this thread, destroys the thread's default loop (and unwinds
  // its fibers) while Boost.Fiber still works.
  if (std::unique_ptr<IOLoop> default_loop = LoopInternals::release_default_loop(loop)) {
    thread_local std::unique_ptr<IOLoop> holder;
    holder = std::move(default_loop);
  }
  return ref;
}

LoopFibers::~LoopFibers() {
  orphan_remaining();
  scheduler_.forget(*this);
}

void LoopFibers::spawn(std::unique_ptr<FiberTask> task) {
  // The fiber starts with its spawner's contexts (switching() makes them active). A
  // name node names it in reports; an unnamed fiber spawned by a named one gets an
  // empty one, so its errors are not blamed on its spawner.
  StackUseEntry* stack_use = stack_use_.sample(task->name);
  ChainRef chain = ChainRef::capture();
  if (!task->name.empty() || fiber_name_of(chain.get())) {
    ContextNode* named = new_fiber_name_node(task->name);
    adopt_parent(named, chain.release());
    chain = ChainRef::adopt(named);
  }
  auto* record = new FiberRecord(loop_, *this, std::move(task), next_id_++);
  ++LoopInternals::counters(loop_).fibers_created;
  record->locals.chain = chain.release();
  record->stack_use = stack_use;
  record->next_live = live_head_;
  if (live_head_) live_head_->prev_live = record;
  live_head_ = record;
  ++live_count_;
  const IOLoop::Options& options = loop_.options();
  try {
    // Boost owns `record` from here (its properties slot) and deletes it with the
    // fiber's context. The allocator goes in as a prvalue: Boost stores it by value
    // and deallocates the stack through that copy (an lvalue would be kept as a
    // dangling reference).
    boost::fibers::fiber fiber(static_cast<boost::fibers::fiber_properties*>(record), std::allocator_arg,
                               StackAllocator(options.stack_size, options.guarded_stacks, options.pooled_stacks,
                                              stack_use != nullptr),
                               [record] { run_fiber(record); });
    const StackAllocator::Allocated stack = StackAllocator::last_allocated();
    record->stack_bottom = static_cast<char*>(stack.stack.sp) - stack.stack.size;
    record->stack_size = stack.stack.size;
    record->stack_guarded = stack.guarded;
    fiber.detach();
  } catch (...) {
    unlink(record);
    if (record->locals.chain) record->locals.chain->release();
    delete record;
    throw;
  }
}

void LoopFibers::run_fiber(FiberRecord* record) {
  struct Finish {
    FiberRecord* record;
    ~Finish() {
      // Checked and measured while the task (and the fiber's name) is still here.
      record->check_stack_canary();
      if (record->stack_use && record->fibers) StackUseTable::record(*record->stack_use, touched_stack_bytes(*record));
      record->task.reset();
      if (record->fibers) record->fibers->unlink(record);
      LoopScheduler::installed()->fiber_finished();
      // The fiber's contexts (and any it left active) go with it.
      if (ContextNode* chain = std::exchange(tls_active_chain, nullptr)) chain->release();
    }
  } finish{record};
  record->ctx = context::active();
  if (!record->loop || LoopInternals::closing(*record->loop)) {
    record->task->fail(std::make_exception_ptr(LoopClosed("the IOLoop was destroyed before this fiber started")));
    return;
  }
  try {
    record->task->run();
  } catch (const boost::context::detail::forced_unwind&) {
    throw;  // Boost.Context unwinding this stack: must propagate
  } catch (...) {
    record->task->fail(std::current_exception());
  }
}

namespace {

/// "+120 ms" / "-3 ms" from `now`.
std::string relative_ms(std::chrono::steady_clock::time_point when, std::chrono::steady_clock::time_point now) {
  // Each side in milliseconds first: `when` may be time_point::min() or max().
  using std::chrono::milliseconds;
  const auto ms = std::chrono::duration_cast<milliseconds>(when.time_since_epoch()).count() -
                  std::chrono::duration_cast<milliseconds>(now.time_since_epoch()).count();
  std::string out = ms >= 0 ? "+" : "";  // appended, not `"+" + ...`: GCC 12 warns falsely there
  out.append(std::to_string(ms)).append(" ms");
  return out;
}

void describe_wait(std::string& out, const WaitSite& site, std::chrono::steady_clock::time_point now) {
  if (!site.label) out += site.what;
  for (const WaitLabel* label = site.label; label; label = label->outer) {
    if (label != site.label) out += ", in ";
    out += label->what;
    if (!label->detail.empty()) out.append(" ").append(label->detail);
    if (label->fd >= 0) out += " fd " + std::to_string(label->fd);
  }
  if (site.where) out.append(" at ").append(site.where->file_name()).append(":").append(std::to_string(site.where->line()));
  if (site.until) out += ", until " + relative_ms(*site.until, now);
  out += ", for " + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - site.since).count()) +
         " ms";
}

}  // namespace

bool LoopFibers::all_fibers_waiting_on_others() const noexcept {
  if (ready_count_ > 0) return false;
  for (const FiberRecord* r = live_head_; r; r = r->next_live)
    if (!r->ctx || !r->wait || !r->site || r->site->on_job || r->wait->woken()) return false;
  return true;
}

void LoopFibers::dump(std::string& out, time_point now) const {
  const FiberRecord* running = FiberRecord::current();
  for (const FiberRecord* r = live_head_; r; r = r->next_live) {
    out += "  fiber #" + std::to_string(r->id);
    if (r->task && !r->task->name.empty()) out += " \"" + r->task->name + "\"";
    const ContextNode* chain = r->locals.chain;
    if (r == running) {
      out += ": running";
      chain = tls_active_chain;
    } else if (!r->ctx) {
      out += ": ready (not started)";
    } else if (r->ctx->ready_is_linked() || (r->wait && r->wait->woken())) {
      out += ": ready";
    } else if (r->wait && r->site) {
      out += ": suspended in ";
      describe_wait(out, *r->site, now);
    } else {
      out += ": blocked outside fiberloop's waits (a Boost.Fiber primitive?)";
    }
    if (const DeadlineNode* deadline = deadline_of(chain)) out += "; deadline " + relative_ms(deadline->when, now);
    if (std::string values = report_values_of(chain); !values.empty()) out += "; " + values;
    out += "\n";
  }
}

void LoopFibers::unlink(FiberRecord* record) noexcept {
  (record->prev_live ? record->prev_live->next_live : live_head_) = record->next_live;
  if (record->next_live) record->next_live->prev_live = record->prev_live;
  record->prev_live = record->next_live = nullptr;
  record->fibers = nullptr;
  --live_count_;
}

void LoopFibers::close() noexcept {
  if (context::active()->is_context(type::main_context)) {
    for (int round = 0; round < 1000;) {
      // Wake every fiber suspended in a fiberloop wait: seeing the loop closing, the
      // wait throws LoopClosed and the fiber unwinds. Repeat for fibers that catch it.
      // (Fibers waiting for a job that may use their stack are not woken: wait.cpp.)
      for (FiberRecord* r = live_head_; r; r = r->next_live)
        if (r->wait) r->wait->wake();
      const auto now = std::chrono::steady_clock::now();
      // Read before has_work(): a remote wake that got in before our wakes above has
      // either queued its fiber (and flagged it, seen by has_work) by the time it no
      // longer counts as in flight, or is still counted. Read after, it could finish
      // between the two reads unseen.
      const bool wake_in_flight = scheduler_.remote_wakes_in_flight();
      if (has_work(now)) {
        run_pass(now);
        ++round;
      } else if (live_count_ == 0) {
        break;
      } else if (wake_in_flight) {
        // Another thread is mid-wake: its fiber is coming, after a few instructions
        // of that thread, however long it is preempted. Not a round: giving up here
        // would orphan a fiber that is about to be ready.
        std::this_thread::yield();
      } else if (job_waits_ > 0) {
        // Fibers wait for jobs that may use their stacks: sleep until one completes
        // (the job's thread wakes this one). Work handed to the loop meanwhile, such
        // as a job spawning a fiber, would never run: drop it, which fails what waits
        // for it (LoopClosed for a spawn, BrokenPromise for a promise the callback
        // held), so a job waiting for it ends instead of hanging us.
        LoopInternals::drop_callbacks(loop_);
        scheduler_.sleep_until_woken(loop_);
      } else {
        break;
      }
    }
  }
  orphan_remaining();
}

void LoopFibers::orphan_remaining() noexcept {
  if (live_count_ == 0 && ready_count_ == 0) return;
  if (live_count_ > 0)
    std::fprintf(stderr,
                 "fiberloop: %zu fiber(s) of a destroyed IOLoop are blocked on a Boost.Fiber primitive (mutex, "
                 "condition variable, channel, ...) and cannot be unwound: they keep their stacks, resume if the "
                 "primitive is signalled, and then their next fiberloop wait throws LoopClosed (see ~IOLoop)\n",
                 live_count_);
  while (FiberRecord* r = live_head_) {
    unlink(r);
    r->loop = nullptr;
  }
  while (ready_count_ > 0) scheduler_.adopt_orphan(LoopScheduler::pop(ready_, ready_count_));
}

}  // namespace fiberloop::detail
