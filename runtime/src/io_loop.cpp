#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <string>
#include <system_error>
#include <utility>

#include <fiberloop/detail/loop_hooks.hpp>
#include <fiberloop/io_loop.hpp>
#include <fiberloop/thread_pool_executor.hpp>

#include "loop_internals.hpp"
#include "watchdog.hpp"

namespace fiberloop {

namespace {

using clock = IOLoop::clock;

// While work is ready, epoll is still polled (with timeout 0) at least this often, so
// a loop busy with callbacks and fibers cannot starve I/O, yet a fast ping-pong
// between fibers does not pay a syscall per iteration.
constexpr auto kBusyPollInterval = std::chrono::microseconds(50);
constexpr int kMaxEventsPerPoll = 256;
constexpr std::uint64_t kWakeupToken = ~std::uint64_t{0};
constexpr std::uint64_t kDumpSignalToken = ~std::uint64_t{0} - 1;

thread_local IOLoop* tls_running_loop = nullptr;
// Plain pointers: trivially destructible thread_locals stay valid during thread exit,
// whatever order the other thread_locals die in.
thread_local IOLoop* tls_newest_loop = nullptr;
thread_local IOLoop* tls_default_loop = nullptr;  // IOLoop::current()'s own loop
thread_local std::unique_ptr<IOLoop> tls_default_holder;
thread_local char tls_thread_marker;

std::uint32_t to_epoll(Events events) {
  std::uint32_t out = 0;
  if (any(events & Events::read)) out |= EPOLLIN;
  if (any(events & Events::write)) out |= EPOLLOUT;
  return out;  // EPOLLERR and EPOLLHUP are always reported
}

Events from_epoll(std::uint32_t events) {
  Events out = Events::none;
  if (events & (EPOLLIN | EPOLLPRI | EPOLLRDHUP)) out |= Events::read;
  if (events & EPOLLOUT) out |= Events::write;
  if (events & (EPOLLERR | EPOLLHUP)) out |= Events::error;
  return out;
}

std::atomic<std::uint32_t> g_last_loop_serial{0};

std::uint32_t next_loop_serial() noexcept {
  std::uint32_t serial;
  do {
    serial = g_last_loop_serial.fetch_add(1, std::memory_order_relaxed) + 1;
  } while (serial == 0);  // 0 is a default handle's
  return serial;
}

int real_epoll_pwait2(int epoll_fd, epoll_event* events, int max_events, const timespec* timeout) {
  return ::epoll_pwait2(epoll_fd, events, max_events, timeout, nullptr);
}
std::atomic<detail::EpollPwait2> g_epoll_pwait2{&real_epoll_pwait2};
// Set once epoll_pwait2 failed where epoll_wait works: from then on every loop of the
// process polls with epoll_wait (a failing call would return at once, every iteration,
// and the loop would spin).
std::atomic<bool> g_use_epoll_wait{false};

/// Waits for events on `epoll_fd` until `timeout` (null: no limit). Returns what
/// epoll_pwait2 returns; -1 with EINTR counts as no events.
int poll_epoll(int epoll_fd, epoll_event* events, int max_events, const timespec* timeout) noexcept {
  if (!g_use_epoll_wait.load(std::memory_order_relaxed)) {
    const int n = g_epoll_pwait2.load(std::memory_order_relaxed)(epoll_fd, events, max_events, timeout);
    if (n >= 0 || errno == EINTR) return n;
    // ENOSYS (kernels before 5.11), EPERM (a seccomp profile that does not know the
    // call), or anything else: epoll_wait has done the same since Linux 2.6, at
    // millisecond resolution.
  }
  int ms = -1;
  if (timeout) {
    ms = static_cast<int>(std::min<long long>(
        static_cast<long long>(std::min<std::time_t>(timeout->tv_sec, 1'000'000)) * 1000 +
            (timeout->tv_nsec + 999'999) / 1'000'000,
        1'000'000'000));
  }
  const int n = ::epoll_wait(epoll_fd, events, max_events, ms);
  if ((n >= 0 || errno == EINTR) && !g_use_epoll_wait.load(std::memory_order_relaxed))
    g_use_epoll_wait.store(true, std::memory_order_relaxed);
  return n;
}

void default_unhandled_handler(std::exception_ptr error, const std::string& where) {
  std::fprintf(stderr, "fiberloop: unhandled exception in %s: %s\n", where.c_str(),
               detail::describe_exception(error).c_str());
}

}  // namespace

// Each piece of registered work keeps the stack contexts captured with it. Queued
// callbacks keep them aside, for the ones that have any.
struct IOLoop::ChainedCallback {
  std::size_t index;  // in pending_callbacks_ / running_callbacks_
  detail::ChainRef chain;
};

struct IOLoop::TimerSlot {
  std::function<void()> fn;
  detail::ChainRef chain;
  std::uint64_t id = 0;  // 0 while the slot is free
};

struct IOLoop::TimerEntry {
  clock::time_point when;
  std::uint64_t id;  // also the tie-breaker: equal deadlines run in the order added
  std::uint32_t slot;
  // std::*_heap build a max-heap; "greater" puts the earliest entry on top.
  friend bool operator<(const TimerEntry& a, const TimerEntry& b) noexcept {
    return a.when != b.when ? a.when > b.when : a.id > b.id;
  }
};

struct IOLoop::HandlerSlot {
  std::function<void(int, Events)> fn;
  detail::ChainRef chain;
  std::uint32_t generation = 0;
  bool active = false;
};

IOLoop::IOLoop() : IOLoop(Options{}) {}

IOLoop::IOLoop(Options options)
    : options_(options),
      serial_(next_loop_serial()),
      wakeup_(detail::ThreadWakeup::for_this_thread()),
      owner_(&tls_thread_marker) {
  // First: should anything below throw, the member's destructor joins the thread.
  if (options_.watchdog_threshold > std::chrono::nanoseconds::zero())
    watchdog_ = std::make_unique<detail::Watchdog>(*this, options_.watchdog_threshold);
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw std::system_error(errno, std::generic_category(), "fiberloop: epoll_create1()");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeupToken;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wakeup_->fd(), &ev) != 0) {
    int err = errno;
    ::close(epoll_fd_);
    throw std::system_error(err, std::generic_category(), "fiberloop: watching the loop's eventfd");
  }
  if (options_.dump_on_sigusr1) {
    // Edge-triggered, never drained: every SIGUSR1 is one event for every such loop.
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = kDumpSignalToken;
    const int signal_fd = detail::dump_signal_fd();
    dump_signals_seen_ = detail::dump_signals_received();
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, signal_fd, &ev) != 0) {
      int err = errno;
      ::close(epoll_fd_);
      throw std::system_error(err, std::generic_category(), "fiberloop: watching SIGUSR1 for dumps");
    }
  }
  unhandled_handler_ = default_unhandled_handler;
  anchor_ = std::make_shared<detail::LoopAnchor>();
  anchor_->loop = this;
  older_alive_ = tls_newest_loop;
  if (older_alive_) older_alive_->newer_alive_ = this;
  tls_newest_loop = this;
}

IOLoop::~IOLoop() {
  watchdog_.reset();  // it reads the loop's state: stop it before that goes
  {
    std::lock_guard lock(anchor_->lock);
    anchor_->loop = nullptr;
    anchor_->closing = this;
  }
  closing_ = true;
  // Jobs that have not started never will; running ones may use the stacks of the
  // fibers waiting for them, which LoopFibers::close() keeps until the jobs end.
  if (blocking_executor_)
    blocking_executor_->fail_queued(
        std::make_exception_ptr(LoopClosed("the IOLoop was destroyed before this run_blocking() job started")));
  if (fibers_) fibers_->close();
  drop_pending_work();
  if (blocking_executor_) {
    blocking_executor_->shutdown(true);
    blocking_executor_.reset();
    drop_pending_work();  // completions of blocking tasks may have queued callbacks
  }
  fibers_.reset();
  {
    std::lock_guard lock(anchor_->lock);
    anchor_->closing = nullptr;
  }
  ::close(epoll_fd_);
  (newer_alive_ ? newer_alive_->older_alive_ : tls_newest_loop) = older_alive_;
  if (older_alive_) older_alive_->newer_alive_ = newer_alive_;
  if (tls_running_loop == this) tls_running_loop = nullptr;
  if (tls_default_loop == this) tls_default_loop = nullptr;
}

bool IOLoop::drop_pending_callbacks() noexcept {
  bool dropped = false;
  // Destroying a callback can complete a promise whose callbacks queue more.
  for (int round = 0; round < 100; ++round) {
    std::vector<std::function<void()>> callbacks;
    std::vector<ChainedCallback> chains;
    {
      std::lock_guard lock(callbacks_lock_);
      callbacks.swap(pending_callbacks_);
      chains.swap(pending_chains_);
      has_callbacks_.store(false, std::memory_order_relaxed);
    }
    if (callbacks.empty()) break;
    dropped = true;
  }
  return dropped;
}

void IOLoop::drop_pending_work() noexcept {
  // Destroying a callback can destroy a Promise, whose waiters may queue more
  // callbacks; repeat until nothing is left.
  for (int round = 0; round < 100; ++round) {
    const bool dropped_callbacks = drop_pending_callbacks();
    std::vector<TimerSlot> timers;
    timers.swap(timer_slots_);
    timer_heap_.clear();
    free_timer_slots_.clear();
    dead_timer_entries_ = 0;
    std::vector<HandlerSlot> handlers;
    handlers.swap(handlers_);
    removed_handlers_.clear();
    if (!dropped_callbacks && timers.empty() && handlers.empty()) return;
  }
}

IOLoop& IOLoop::current() {
  if (tls_running_loop) return *tls_running_loop;
  if (tls_newest_loop) return *tls_newest_loop;
  // Destroyed at thread exit. Once the loop runs fibers, the fibers layer takes it
  // into a holder made after Boost.Fiber's thread state, so it dies before that does.
  tls_default_holder = std::make_unique<IOLoop>();
  tls_default_loop = tls_default_holder.get();
  return *tls_default_loop;
}

std::unique_ptr<IOLoop> detail::LoopInternals::release_default_loop(IOLoop& loop) noexcept {
  if (tls_default_loop != &loop) return nullptr;
  tls_default_loop = nullptr;
  return std::move(tls_default_holder);
}

void IOLoop::check_owner(const char* what) const {
  if (owner_ != &tls_thread_marker)
    throw std::logic_error(std::string("IOLoop::") + what +
                           "() called from a thread that does not own the loop; use add_callback() to hand work to it");
}

void IOLoop::check_startable(const char* what) const {
  check_owner(what);
  if (running_.load(std::memory_order_relaxed))
    throw std::logic_error(std::string("IOLoop::") + what + "(): the loop is already running");
  if (tls_running_loop)
    throw std::logic_error(std::string("IOLoop::") + what +
                           "(): another loop is running on this thread (nested loops are not supported); "
                           "inside a fiber, wait with wait_for_future() instead");
}

bool detail::LoopInternals::on_owner_thread(const IOLoop& loop) noexcept { return loop.owner_ == &tls_thread_marker; }

bool detail::LoopInternals::watches(const IOLoop& loop, int fd) noexcept {
  return fd >= 0 && static_cast<std::size_t>(fd) < loop.handlers_.size() &&
         loop.handlers_[static_cast<std::size_t>(fd)].active;
}

std::size_t detail::LoopInternals::live_timers(const IOLoop& loop) noexcept {
  return loop.timer_slots_.size() - loop.free_timer_slots_.size();
}

bool detail::LoopInternals::hand_to_loop_thread(LoopAnchor& anchor, std::function<void()>& fn) {
  std::lock_guard lock(anchor.lock);  // the loop cannot be destroyed meanwhile
  IOLoop* loop = anchor.loop;
  if (!loop || loop->owner_ == &tls_thread_marker) return false;
  loop->add_callback(std::move(fn));
  return true;
}

IOLoop* detail::LoopInternals::alive_on_this_thread(LoopAnchor& anchor) noexcept {
  std::lock_guard lock(anchor.lock);
  IOLoop* loop = anchor.loop ? anchor.loop : anchor.closing;
  return loop && loop->owner_ == &tls_thread_marker ? loop : nullptr;
}
IOLoop* detail::LoopInternals::running_here() noexcept { return tls_running_loop; }

void IOLoop::start() {
  check_startable("start");
  running_.store(true, std::memory_order_relaxed);
  tls_running_loop = this;
  // The loop's own code runs with no context active; every piece of work brings its own.
  detail::ChainScope no_context(nullptr);
  struct Reset {
    IOLoop* loop;
    ~Reset() {
      loop->stop_requested_.store(false, std::memory_order_relaxed);
      loop->running_.store(false, std::memory_order_relaxed);
      tls_running_loop = nullptr;
    }
  } reset{this};
  do {
    const clock::time_point now = clock::now();
    ++counters_.loop_iterations;
    counters_.iteration_began = now;
    run_due_timers(now);
    run_callbacks();
    if (fibers_ && fibers_->has_work(now)) fibers_->run_pass(now);
    poll_io(now);
  } while (!stop_requested_.load(std::memory_order_acquire));
}

void IOLoop::stop() noexcept {
  stop_requested_.store(true, std::memory_order_seq_cst);
  wakeup_->wake();
}

bool IOLoop::running() const noexcept { return running_.load(std::memory_order_relaxed); }

// ---- callbacks ---------------------------------------------------------------

void IOLoop::add_callback(std::function<void()> fn) {
  // Work handed over from another thread runs here: its contexts must count atomically.
  detail::ChainRef chain = detail::ChainRef::capture_for([this] { return owner_ == &tls_thread_marker; });
  {
    std::lock_guard lock(callbacks_lock_);
    pending_callbacks_.push_back(std::move(fn));
    if (chain) {
      try {
        pending_chains_.push_back({pending_callbacks_.size() - 1, std::move(chain)});
      } catch (...) {
        pending_callbacks_.pop_back();  // no callback without its contexts
        throw;
      }
    }
    has_callbacks_.store(true, std::memory_order_seq_cst);
  }
  wakeup_->wake();
}

void IOLoop::run_callbacks() {
  if (!has_callbacks_.load(std::memory_order_acquire)) return;
  {
    std::lock_guard lock(callbacks_lock_);
    running_callbacks_.swap(pending_callbacks_);
    running_chains_.swap(pending_chains_);
    has_callbacks_.store(false, std::memory_order_relaxed);
  }
  // Only the callbacks queued before this phase run now; ones they add wait for the
  // next iteration, after I/O has been polled.
  std::size_t chained = 0;
  for (std::size_t i = 0; i < running_callbacks_.size(); ++i) {
    counters_.callback_began();
    if (chained < running_chains_.size() && running_chains_[chained].index == i) {
      detail::run_in_chain(std::move(running_chains_[chained++].chain), running_callbacks_[i], "a callback");
    } else {
      detail::run_without_chain(running_callbacks_[i], "a callback");
    }
  }
  running_callbacks_.clear();
  running_chains_.clear();
}

// ---- timeouts ----------------------------------------------------------------

TimeoutHandle IOLoop::call_at(clock::time_point when, std::function<void()> fn) {
  check_owner("call_at");
  std::uint32_t slot;
  if (!free_timer_slots_.empty()) {
    slot = free_timer_slots_.back();
    free_timer_slots_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(timer_slots_.size());
    timer_slots_.emplace_back();
  }
  const std::uint64_t id = next_timer_id_++;
  timer_slots_[slot].fn = std::move(fn);
  timer_slots_[slot].chain = detail::ChainRef::capture();
  timer_slots_[slot].id = id;
  timer_heap_.push_back({when, id, slot});
  std::push_heap(timer_heap_.begin(), timer_heap_.end());
  return TimeoutHandle(serial_, slot, id);
}

void IOLoop::remove_timeout(TimeoutHandle handle) {
  check_owner("remove_timeout");
  if (handle.loop_ != serial_ || handle.slot_ >= timer_slots_.size()) return;
  TimerSlot& slot = timer_slots_[handle.slot_];
  if (slot.id != handle.id_) return;  // already ran or removed
  std::function<void()> doomed = std::move(slot.fn);
  detail::ChainRef doomed_chain = std::move(slot.chain);
  slot.fn = nullptr;
  slot.id = 0;
  free_timer_slots_.push_back(handle.slot_);
  // The heap entry stays until it surfaces; compact when the dead ones dominate.
  if (++dead_timer_entries_ > 512 && dead_timer_entries_ > timer_heap_.size() / 2) compact_timers();
  // `doomed` and its contexts are destroyed here, after the loop's state is consistent again.
}

void IOLoop::compact_timers() {
  std::erase_if(timer_heap_, [this](const TimerEntry& e) { return timer_slots_[e.slot].id != e.id; });
  std::make_heap(timer_heap_.begin(), timer_heap_.end());
  dead_timer_entries_ = 0;
}

void IOLoop::run_due_timers(clock::time_point now) {
  if (timer_heap_.empty() || timer_heap_.front().when > now) return;
  // Collect first, so a timeout that schedules another for "now" cannot starve I/O.
  while (!timer_heap_.empty() && timer_heap_.front().when <= now) {
    std::pop_heap(timer_heap_.begin(), timer_heap_.end());
    const TimerEntry entry = timer_heap_.back();
    timer_heap_.pop_back();
    if (timer_slots_[entry.slot].id == entry.id) {
      due_timers_.push_back(entry);
    } else if (dead_timer_entries_ > 0) {
      --dead_timer_entries_;
    }
  }
  for (std::size_t i = 0; i < due_timers_.size(); ++i) {
    const TimerEntry entry = due_timers_[i];
    TimerSlot& slot = timer_slots_[entry.slot];
    if (slot.id != entry.id) continue;  // removed by an earlier timeout of this batch
    std::function<void()> fn = std::move(slot.fn);
    detail::ChainRef chain = std::move(slot.chain);
    slot.fn = nullptr;
    slot.id = 0;
    free_timer_slots_.push_back(entry.slot);
    counters_.callback_began();
    detail::run_in_chain(std::move(chain), fn, "a timeout callback");
  }
  due_timers_.clear();
}

// ---- I/O ---------------------------------------------------------------------

void IOLoop::add_handler(int fd, Events events, std::function<void(int, Events)> fn) {
  check_owner("add_handler");
  if (fd < 0) throw std::system_error(EBADF, std::generic_category(), "IOLoop::add_handler()");
  if (static_cast<std::size_t>(fd) >= handlers_.size()) handlers_.resize(static_cast<std::size_t>(fd) + 1);
  HandlerSlot& slot = handlers_[static_cast<std::size_t>(fd)];
  epoll_event ev{};
  ev.events = to_epoll(events);
  ev.data.u64 = (static_cast<std::uint64_t>(slot.generation + 1) << 32) | static_cast<std::uint32_t>(fd);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    const int err = errno;
    if (err == EEXIST)
      throw std::system_error(EEXIST, std::generic_category(),
                              "IOLoop::add_handler(fd=" + std::to_string(fd) + "): fd already has a handler; use update_handler()");
    throw std::system_error(err, std::generic_category(), "IOLoop::add_handler(fd=" + std::to_string(fd) + ")");
  }
  if (slot.active) {
    // epoll took the fd, so it forgot the one this slot watched: that fd was closed
    // without remove_handler(), and this is a new file with its number. The stale
    // handler goes (kept alive until the poll phase ends: it may be running now), and
    // the mistake is reported: had the old file been dup()ed or inherited by a child,
    // epoll would still watch it and its events, now nobody's, could keep the loop busy.
    removed_handlers_.push_back({std::move(slot.fn), std::move(slot.chain)});
    slot.fn = nullptr;
    report(std::make_exception_ptr(std::logic_error(
               "fd " + std::to_string(fd) +
               " was closed while it had a handler; its handler is dropped for the new fd with that number. "
               "Call remove_handler() before closing a watched fd")),
           "IOLoop::add_handler()");
  }
  ++slot.generation;
  slot.fn = std::move(fn);
  slot.chain = detail::ChainRef::capture();
  if (!slot.active) ++watched_fds_;
  slot.active = true;
}

void IOLoop::update_handler(int fd, Events events) {
  check_owner("update_handler");
  if (fd < 0 || static_cast<std::size_t>(fd) >= handlers_.size() || !handlers_[static_cast<std::size_t>(fd)].active)
    throw std::logic_error("IOLoop::update_handler(fd=" + std::to_string(fd) + "): fd has no handler");
  epoll_event ev{};
  ev.events = to_epoll(events);
  ev.data.u64 = (static_cast<std::uint64_t>(handlers_[static_cast<std::size_t>(fd)].generation) << 32) |
                static_cast<std::uint32_t>(fd);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0)
    throw std::system_error(errno, std::generic_category(), "IOLoop::update_handler(fd=" + std::to_string(fd) + ")");
}

void IOLoop::remove_handler(int fd) {
  check_owner("remove_handler");
  if (fd < 0 || static_cast<std::size_t>(fd) >= handlers_.size()) return;
  HandlerSlot& slot = handlers_[static_cast<std::size_t>(fd)];
  if (!slot.active) return;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);  // fails harmlessly if fd was closed
  slot.active = false;
  --watched_fds_;
  // The handler may be the one running now: keep it alive until the poll phase ends.
  removed_handlers_.push_back({std::move(slot.fn), std::move(slot.chain)});
  slot.fn = nullptr;
}

bool IOLoop::has_ready_work(clock::time_point now) const noexcept {
  return has_callbacks_.load(std::memory_order_seq_cst) || stop_requested_.load(std::memory_order_seq_cst) ||
         (fibers_ && fibers_->has_work(now)) || (!timer_heap_.empty() && timer_heap_.front().when <= now);
}

clock::time_point IOLoop::next_wakeup() const noexcept {
  clock::time_point next = clock::time_point::max();
  if (!timer_heap_.empty()) next = timer_heap_.front().when;
  if (fibers_) next = std::min(next, fibers_->next_deadline());
  return next;
}

bool IOLoop::may_be_stuck() const {
  // Nothing registered could wake a suspended fiber: no timer (checked by the
  // caller), fd handler or blocking job. Another thread may still hold a Promise.
  return options_.stuck_loop_grace > std::chrono::nanoseconds::zero() && !stuck_reported_ && watched_fds_ == 0 &&
         live_fibers() > 0 && (!blocking_executor_ || blocking_executor_->in_flight() == 0) &&
         fibers_->all_fibers_waiting_on_others();
}

void IOLoop::report_stuck() {
  stuck_reported_ = true;  // once, until the loop does something again
  ++counters_.stuck_reports;
  const auto grace_ms = std::chrono::duration_cast<std::chrono::milliseconds>(options_.stuck_loop_grace).count();
  std::string fibers = dump();
  detail::LoopInternals::emit_report(
      *this, "fiberloop: probable deadlock: the loop has been idle for " + std::to_string(grace_ms) +
                 " ms with fibers suspended and nothing registered that could wake them (no timer, fd handler, "
                 "callback or run_blocking job); only another thread completing a Promise still could.\n" +
                 fibers);
  if (options_.throw_when_stuck && run_sync_active_) {
    stuck_dump_ = std::move(fibers);
    stop();
  }
}

void IOLoop::poll_io(clock::time_point now) {
  bool busy = has_ready_work(now);
  if (busy) stuck_reported_ = false;
  if (busy && now - last_poll_ < kBusyPollInterval) return;
  last_poll_ = now;

  timespec timeout{0, 0};
  bool sleeping = false;
  bool watching_for_stuck = false;
  if (!busy) {
    wakeup_->begin_sleep();  // pairs with ThreadWakeup::wake(): no wakeup is lost
    sleeping = true;
    if (!has_ready_work(now)) {
      const clock::time_point next = next_wakeup();
      if (next == clock::time_point::max() && may_be_stuck()) {
        watching_for_stuck = true;
        const auto grace = options_.stuck_loop_grace;
        timeout.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(grace).count();
        timeout.tv_nsec = (grace - std::chrono::seconds(timeout.tv_sec)).count();
      } else if (next == clock::time_point::max()) {
        timeout.tv_sec = -1;
      } else {
        // Compared first: a deadline far behind now (time_point::min()) would overflow.
        const clock::time_point current = clock::now();
        const clock::duration left = next > current ? next - current : clock::duration::zero();
        const auto secs = std::chrono::duration_cast<std::chrono::seconds>(left);
        timeout.tv_sec = secs.count();
        timeout.tv_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(left - secs).count();
      }
    }
  }
  epoll_event events[kMaxEventsPerPoll];
  counters_.poll_began();
  const int n = poll_epoll(epoll_fd_, events, kMaxEventsPerPoll, timeout.tv_sec < 0 ? nullptr : &timeout);
  counters_.poll_ended();
  if (sleeping) wakeup_->end_sleep();
  if (n > 0) stuck_reported_ = false;
  if (watching_for_stuck && n == 0) report_stuck();
  for (int i = 0; i < n; ++i) {
    const std::uint64_t token = events[i].data.u64;
    if (token == kDumpSignalToken) {
      // Edge-triggered on a counter never drained: adding the fd reports it ready once.
      if (const std::uint64_t signals = detail::dump_signals_received(); signals != dump_signals_seen_) {
        dump_signals_seen_ = signals;
        detail::LoopInternals::emit_report(*this, "fiberloop: SIGUSR1: " + dump());
      }
      continue;
    }
    if (token == kWakeupToken) {
      wakeup_->drain();
      continue;
    }
    const auto fd = static_cast<std::size_t>(token & 0xffffffffu);
    const auto generation = static_cast<std::uint32_t>(token >> 32);
    if (fd >= handlers_.size()) continue;
    HandlerSlot& slot = handlers_[fd];
    // Skip handlers removed (or replaced) by an earlier handler of this batch.
    if (!slot.active || slot.generation != generation) continue;
    // Copy: the handler may add handlers (reallocating handlers_) or remove itself.
    auto fn = slot.fn;
    auto call = [&fn, fd, ready = from_epoll(events[i].events)] { fn(static_cast<int>(fd), ready); };
    counters_.callback_began();
    detail::run_in_chain(slot.chain, call, "an fd handler");
  }
  removed_handlers_.clear();
}

// ---- run_sync, reports, executor -----------------------------------------------

namespace {
class StopLoopWhenDone final : public detail::Waiter {
 public:
  explicit StopLoopWhenDone(IOLoop& loop) noexcept : Waiter(false), loop_(loop) {}
  void notify_locked() noexcept override { loop_.stop(); }

 private:
  IOLoop& loop_;
};
}  // namespace

void IOLoop::run_until_done_(detail::FutureStateBase& state, std::optional<std::chrono::nanoseconds> timeout) {
  StopLoopWhenDone stopper(*this);
  stuck_dump_.clear();  // a report from an earlier run_sync that finished anyway
  if (!state.link_waiter(stopper)) stop();
  struct RunSyncScope {
    IOLoop& loop;
    explicit RunSyncScope(IOLoop& l) : loop(l) { loop.run_sync_active_ = true; }
    ~RunSyncScope() { loop.run_sync_active_ = false; }
  } run_sync_scope(*this);
  bool timed_out = false;
  TimeoutHandle timer;
  if (timeout) timer = call_later(*timeout, [this, &timed_out] {
      timed_out = true;
      stop();
    });
  try {
    start();
  } catch (...) {
    state.unlink_waiter(stopper);
    throw;
  }
  state.unlink_waiter(stopper);
  if (timeout) remove_timeout(timer);
  if (state.done()) return;
  if (!stuck_dump_.empty()) {
    std::string fibers = std::exchange(stuck_dump_, {});
    throw StuckLoopError("run_sync(): the loop is stuck: its fibers wait for something nothing registered can "
                         "bring (a Promise never set, a lock never released); they stay suspended. The dump:\n" +
                             fibers,
                         fibers);
  }
  if (timed_out)
    throw TimeoutError("run_sync(): the function did not finish within " +
                       std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(*timeout).count()) +
                       " ms; its fiber stays suspended and continues if the loop runs again");
  throw Error("run_sync(): the loop was stopped before the function finished");
}

void IOLoop::set_unhandled_exception_handler(UnhandledExceptionHandler handler) {
  check_owner("set_unhandled_exception_handler");
  unhandled_handler_ = handler ? std::move(handler) : UnhandledExceptionHandler(default_unhandled_handler);
}

void IOLoop::report(std::exception_ptr error, const char* where) noexcept {
  try {
    unhandled_handler_(std::move(error), where);
  } catch (...) {
    if (detail::handling_forced_unwind()) [[unlikely]]
      detail::abort_on_forced_unwind("the unhandled-exception handler");
    std::fprintf(stderr, "fiberloop: the unhandled-exception handler threw while reporting an error in %s\n", where);
  }
}

ThreadPoolExecutor& IOLoop::blocking_executor() {
  check_owner("blocking_executor");
  if (!blocking_executor_) blocking_executor_ = std::make_unique<ThreadPoolExecutor>(options_.blocking_threads);
  return *blocking_executor_;
}

void detail::report_unhandled(IOLoop& loop, std::exception_ptr error, const std::string& where) noexcept {
  loop.report(std::move(error), where.c_str());
}

bool detail::loop_closing(const IOLoop& loop) noexcept { return loop.closing_; }

const std::shared_ptr<detail::LoopAnchor>& detail::loop_anchor(const IOLoop& loop) noexcept {
  return LoopInternals::anchor(loop);
}

bool detail::on_loop_thread(const IOLoop& loop) noexcept { return LoopInternals::on_owner_thread(loop); }

IOLoop* detail::alive_on_this_thread(LoopAnchor& anchor) noexcept { return LoopInternals::alive_on_this_thread(anchor); }

bool detail::hand_to_loop_thread(LoopAnchor& anchor, std::function<void()>& fn) {
  return LoopInternals::hand_to_loop_thread(anchor, fn);
}

void detail::replace_epoll_pwait2_for_testing(EpollPwait2 fn) noexcept {
  g_epoll_pwait2.store(fn ? fn : &real_epoll_pwait2, std::memory_order_relaxed);
  g_use_epoll_wait.store(false, std::memory_order_relaxed);
}

bool detail::polling_with_epoll_wait() noexcept { return g_use_epoll_wait.load(std::memory_order_relaxed); }

std::size_t IOLoop::live_fibers() const noexcept { return fibers_ ? fibers_->live_fibers() : 0; }

}  // namespace fiberloop
