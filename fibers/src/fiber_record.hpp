#pragma once
// What fiberloop keeps per fiber. It rides in Boost.Fiber's properties slot, so the
// running fiber finds it in one pointer load, and Boost deletes it with the context.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <typeinfo>

#include <boost/fiber/context.hpp>
#include <boost/fiber/properties.hpp>

#include <fiberloop/detail/call_site.hpp>
#include <fiberloop/detail/wait_label.hpp>
#include <fiberloop/io_loop.hpp>

#include "stack_check.hpp"

namespace fiberloop::detail {

class LoopFibers;
class LoopScheduler;

/// The C++ runtime's per-thread exception state (Itanium ABI __cxa_eh_globals): the
/// stack of exceptions being handled and std::uncaught_exceptions(). Each fiber gets
/// its own, swapped on every switch, as if it ran on its own thread.
struct ExceptionState {
  void* caught_exceptions = nullptr;
  unsigned int uncaught_exceptions = 0;
};

/// What a context (fiber, main, dispatcher) keeps of the thread's state while it is
/// switched out: its C++ exception state, its active stack contexts, and how many
/// Future done callbacks it is inside (tls_done_callback_depth).
struct FiberLocals {
  ExceptionState exceptions;
  ContextNode* chain = nullptr;  // holds the reference tls_active_chain holds while it runs
  unsigned done_callback_depth = 0;
};

/// One suspension of a fiber: whoever wakes it first (completion, timeout, closing
/// loop) wins; later wakes are no-ops. It is Boost's waker protocol (the context's
/// epoch), done without touching Boost.Fiber on the waking thread — so executor and
/// plain threads that complete promises never set up a Boost.Fiber runtime.
class FiberWait {
 public:
  /// A wait for the running fiber; invalidates every earlier wait of it.
  FiberWait() noexcept;
  /// Thread: any. Makes the fiber ready unless it was already woken.
  bool wake() noexcept;
  /// Whether wake() has won (the fiber is ready to resume). Owner thread.
  bool woken() const noexcept { return ctx_->waker_epoch_.load(std::memory_order_relaxed) != epoch_; }

 private:
  boost::fibers::context* ctx_;
  LoopScheduler* scheduler_;  // of the fiber's thread; lives as long as the thread
  std::size_t epoch_;
};

/// What a suspended fiber waits on, kept on its stack for IOLoop::dump().
struct WaitSite {
  const char* what;                    // "wait_for_future()", "sleep_for()", ...
  const CallSite* where;   // the waiting caller's line, if known
  const WaitLabel* label;              // an adapter's words for it, if any
  std::chrono::steady_clock::time_point since;  // as of the loop iteration it began in
  std::optional<std::chrono::steady_clock::time_point> until;  // when the wait times out
  bool on_job = false;                 // for an executor job's result: another thread will complete it
};

class FiberRecord final : public boost::fibers::fiber_properties {
 public:
  FiberRecord(IOLoop& owner, LoopFibers& driver, std::unique_ptr<FiberTask> body, std::uint64_t number) noexcept
      : fiber_properties(nullptr), loop(&owner), fibers(&driver), task(std::move(body)), id(number) {}

  /// The record of the running fiber, or null outside fiberloop fibers.
  static FiberRecord* current() noexcept;
  /// Aborts with the overflow message if the fiber's stack is unguarded and its
  /// canary was overwritten. (Not instrumented: under AddressSanitizer a frame that
  /// overflowed onto the canary has left it poisoned, and the report must be ours.)
  [[gnu::no_sanitize_address]] void check_stack_canary() const noexcept {
    if (!stack_guarded && *reinterpret_cast<const std::uint64_t*>(stack_bottom) != stack_canary_for(stack_bottom))
        [[unlikely]]
      report_stack_overflow(*this);
  }
  static FiberRecord* of(boost::fibers::context* ctx) noexcept {
    boost::fibers::fiber_properties* props = ctx->get_properties();
    // Users may give their own Boost.Fiber fibers properties; only ours qualify.
    return props && typeid(*props) == typeid(FiberRecord) ? static_cast<FiberRecord*>(props) : nullptr;
  }

  IOLoop* loop;          // null once the loop is gone (the fiber was orphaned)
  LoopFibers* fibers;    // the loop's fiber driver; null when orphaned
  std::unique_ptr<FiberTask> task;
  std::uint64_t id;
  FiberWait* wait = nullptr;  // set while suspended in a fiberloop wait
  const WaitSite* site = nullptr;  // what that wait is, for dump()
  const WaitLabel* label = nullptr;  // the innermost active WaitLabel
  boost::fibers::context* ctx = nullptr;  // set when the fiber first runs
  FiberLocals locals;  // saved while the fiber is switched out
  FiberRecord* prev_live = nullptr;  // the loop's list of unfinished fibers
  FiberRecord* next_live = nullptr;
  // The fiber's stack (StackAllocator::last_allocated()): checked at every switch
  // away from it (its canary, if unguarded), searched by the fault handler, and
  // announced to AddressSanitizer on every switch.
  char* stack_bottom = nullptr;  // its lowest byte: the canary's, if unguarded
  std::size_t stack_size = 0;
  bool stack_guarded = false;
  StackUseEntry* stack_use = nullptr;  // where its stack use goes, if it is measured
#if defined(__SANITIZE_THREAD__)
  ~FiberRecord() override;
  void* tsan_fiber = nullptr;  // ThreadSanitizer's handle for this fiber's stack
#endif
};

}  // namespace fiberloop::detail
