#pragma once
// Fiber scheduling on the IOLoop. Two pieces:
//  - LoopScheduler: the Boost.Fiber scheduling algorithm, one per OS thread for the
//    thread's life (Boost installs an algorithm once per thread), shared by every
//    loop constructed on that thread.
//  - LoopFibers: one per IOLoop (its FiberDriver): that loop's ready queue and its
//    live fibers.
//
// How a pass works. The loop runs in the thread's main context. Each iteration it
// yields once; LoopScheduler then hands out the fibers that were ready at that
// moment, in FIFO order, and returns to the main context when they have run. Boost's
// dispatcher context (which moves fibers woken from other threads into the ready
// queue, wakes expired Boost sleeps and frees finished fibers) gets a turn at the
// end of a pass only when it has something to do — so a fiber woken by a loop
// callback costs exactly two context switches.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <boost/fiber/algo/algorithm.hpp>
#include <boost/fiber/context.hpp>
#include <boost/fiber/scheduler.hpp>

#include <fiberloop/io_loop.hpp>

#include "fiber_driver.hpp"
#include "fiber_record.hpp"
#include "stack_check.hpp"
#include "thread_wakeup.hpp"

namespace fiberloop::detail {

using boost::fibers::context;
using ReadyQueue = boost::fibers::scheduler::ready_queue_type;

class LoopFibers;

class LoopScheduler final : public boost::fibers::algo::algorithm {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  /// This thread's scheduler, installed on first use.
  static LoopScheduler& for_this_thread();
  /// This thread's scheduler if installed, else null (never installs).
  static LoopScheduler* installed() noexcept;

  LoopScheduler();
  ~LoopScheduler() override;

  // boost::fibers::algo::algorithm
  void awakened(context* ctx) noexcept override;
  context* pick_next() noexcept override;
  bool has_ready_fibers() const noexcept override;
  void suspend_until(const time_point& deadline) noexcept override;
  void notify() noexcept override;

  /// Whether fibers of `fibers` (or unowned ones) are ready or Boost's dispatcher
  /// has work.
  bool has_work(const LoopFibers& fibers, time_point now) const noexcept;
  /// One pass over `fibers`; main context only.
  void run_pass(LoopFibers& fibers, time_point now) noexcept;
  /// Earliest deadline of a Boost.Fiber timed wait, as of the dispatcher's last turn.
  time_point sleep_deadline() const noexcept { return sleep_deadline_; }
  /// Moves a ready fiber of a closing loop to the unowned queue.
  void adopt_orphan(context* ctx) noexcept;
  /// Drops references to a LoopFibers being destroyed.
  void forget(const LoopFibers& fibers) noexcept;
  static context* pop(ReadyQueue& queue, std::size_t& count) noexcept;
  /// A fiber of this thread is finishing: the dispatcher must free it. (Boost 1.81's
  /// terminated_is_linked() cannot tell: it is false for the tail of its list.)
  void fiber_finished() noexcept { dispatcher_wanted_ = true; }
  /// Main context, closing `loop`: sleeps until another thread makes a fiber of this
  /// thread ready or hands `loop` a callback.
  void sleep_until_woken(const IOLoop& loop) noexcept;
  /// Wakes from other threads that passed the epoch check but have not yet put
  /// the fiber in Boost's remote-ready queue.
  bool remote_wakes_in_flight() const noexcept { return remote_wakes_in_flight_.load(std::memory_order_acquire) > 0; }

 private:
  bool dispatcher_has_work(time_point now) const noexcept;

  context* pick(context* self) noexcept;
  /// Bookkeeping for the switch from `self` to `next` that Boost makes next.
  context* switching(context* self, context* next) noexcept;
  FiberLocals* locals_of(context* ctx) noexcept;
  void swap_fiber_locals(context* self, context* next) noexcept;

  ReadyQueue unowned_;  // fibers with no loop: plain Boost.Fiber fibers, orphans
  std::size_t unowned_count_ = 0;
  context* main_ = nullptr;        // the main context, parked during a pass
  context* dispatcher_ = nullptr;  // Boost's dispatcher, parked between turns

  LoopFibers* pass_owner_ = nullptr;  // non-null while a pass runs
  LoopFibers* last_owner_ = nullptr;  // the loop that ran the last pass
  std::size_t pass_left_ = 0;
  std::size_t unowned_left_ = 0;
  bool dispatcher_turn_ = false;    // the dispatcher is having its turn this pass
  bool deadline_asked_ = false;     // ...and has reported its sleep deadline

  bool dispatcher_wanted_ = false;  // a fiber finished or began a Boost sleep
  std::atomic<bool> remote_woken_{false};  // another thread made a fiber ready
  std::atomic<int> remote_wakes_in_flight_{0};
  friend class FiberWait;
  time_point sleep_deadline_ = time_point::max();
  std::shared_ptr<ThreadWakeup> wakeup_;
  ThreadFaultHandling fault_handling_;  // stack overflows on this thread are reported
  FiberLocals main_locals_, dispatcher_locals_, unowned_locals_;
#if defined(__SANITIZE_THREAD__)
  void* tsan_main_ = nullptr;
  void* tsan_dispatcher_ = nullptr;
#endif
#if defined(__SANITIZE_ADDRESS__)
  // The main context's stack as AddressSanitizer knows it, learned at the first switch
  // away from it. Boost's dispatcher runs on a stack we cannot see: announced as none.
  const void* asan_main_bottom_ = nullptr;
  std::size_t asan_main_size_ = 0;
  void announce_stack_switch(context* self, context* next) noexcept;
#endif
};

class LoopFibers final : public FiberDriver {
 public:
  /// The loop's driver, created (and the thread's scheduler installed) on first use.
  static LoopFibers& of(IOLoop& loop);

  LoopFibers(IOLoop& loop, LoopScheduler& scheduler) noexcept : loop_(loop), scheduler_(scheduler) {}
  ~LoopFibers() override;

  void spawn(std::unique_ptr<FiberTask> task);

  // FiberDriver
  bool has_work(time_point now) const noexcept override { return scheduler_.has_work(*this, now); }
  void run_pass(time_point now) noexcept override { scheduler_.run_pass(*this, now); }
  time_point next_deadline() const noexcept override { return scheduler_.sleep_deadline(); }
  void close() noexcept override;
  std::size_t live_fibers() const noexcept override { return live_count_; }
  void dump(std::string& out, time_point now) const override;
  bool all_fibers_waiting_on_others() const noexcept override;
  std::vector<IOLoopMetrics::StackUse> stack_high_water() const override { return stack_use_.report(); }

  /// A fiber of this loop, woken by close(), stays suspended until the job it waits
  /// for ends (wait.cpp); close() waits for it.
  void job_wait_began() noexcept { ++job_waits_; }
  void job_wait_ended() noexcept { --job_waits_; }

 private:
  friend class LoopScheduler;
  static void run_fiber(FiberRecord* record);
  void unlink(FiberRecord* record) noexcept;
  void orphan_remaining() noexcept;

  IOLoop& loop_;
  LoopScheduler& scheduler_;
  ReadyQueue ready_;
  std::size_t ready_count_ = 0;
  FiberRecord* live_head_ = nullptr;
  std::size_t live_count_ = 0;
  std::size_t job_waits_ = 0;
  std::uint64_t next_id_ = 1;
  StackUseTable stack_use_;
};

}  // namespace fiberloop::detail
