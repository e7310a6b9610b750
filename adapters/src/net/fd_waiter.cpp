// FdWaiter: one level-triggered handler per fd, kept across waits (most waits are in
// the same direction as the last, so they cost no epoll_ctl), waking the fiber that
// waits in each direction.

#include "net/fd_waiter.hpp"

#include <stdexcept>
#include <string>
#include <utility>

#include <fiberloop/detail/loop_hooks.hpp>
#include <fiberloop/detail/wait_label.hpp>
#include <fiberloop/wait.hpp>

namespace fiberloop::detail {

FdWaiter::FdWaiter(IOLoop& loop, int fd) : loop_(&loop), anchor_(loop_anchor(loop)), fd_(fd) {}

bool FdWaiter::wait(Events direction, std::chrono::steady_clock::time_point deadline, const char* what) {
  IOLoop* here = current_fiber_loop();
  if (here != loop_)
    throw std::logic_error(std::string(what) + ": waits on a socket of an IOLoop only from a fiber of that loop");
  Promise<void>*& slot = direction == Events::read ? read_waiter_ : write_waiter_;
  if (slot) throw std::logic_error(std::string(what) + ": another fiber already waits on this socket");
  Promise<void> promise;
  Future<void> ready = promise.get_future();
  const Events wanted = interest_ | direction;
  if (!registered_) {
    loop_->add_handler(fd_, wanted, [this](int, Events events) { on_ready(events); });
    registered_ = true;
  } else if (wanted != interest_) {
    loop_->update_handler(fd_, wanted);
  }
  interest_ = wanted;
  slot = &promise;
  bool woke = false;
  const WaitLabel label(what, fd_);
  try {
    woke = wait_state(*state_of(ready), deadline, what);
  } catch (...) {  // LoopClosed, or the fiber's forced unwind: nothing to swallow, only to unhook
    if (slot == &promise) slot = nullptr;
    throw;
  }
  if (slot == &promise) slot = nullptr;
  return woke;
}

void FdWaiter::release() noexcept {
  if (registered_)
    if (IOLoop* alive = alive_on_this_thread(*anchor_)) alive->remove_handler(fd_);
  registered_ = false;
  interest_ = Events::none;
  if (read_waiter_) std::exchange(read_waiter_, nullptr)->set_value();
  if (write_waiter_) std::exchange(write_waiter_, nullptr)->set_value();
}

/// The loop saw fd ready. Wakes the waiting fibers; keeps the interest of a direction
/// that had a waiter (it will likely wait again) and drops the rest, since a
/// level-triggered fd nobody reads would wake the loop forever.
void FdWaiter::on_ready(Events events) {
  const bool error = any(events & Events::error);
  const Events keep =
      wake(read_waiter_, Events::read, events, error) | wake(write_waiter_, Events::write, events, error);
  if (error && keep == Events::none) {
    // ERR/HUP are reported whatever the interest: only removing the handler quiets them.
    loop_->remove_handler(fd_);
    registered_ = false;
    interest_ = Events::none;
    return;
  }
  if (keep == interest_) return;
  loop_->update_handler(fd_, keep);
  interest_ = keep;
}

/// on_ready() for one direction: the interest to keep in it.
Events FdWaiter::wake(Promise<void>*& waiter, Events direction, Events events, bool error) {
  if (!any(events & direction) && !error) return interest_ & direction;  // not reported: unchanged
  if (!waiter) return Events::none;                                       // reported, nobody waits: drop
  std::exchange(waiter, nullptr)->set_value();
  return direction;
}

}  // namespace fiberloop::detail
