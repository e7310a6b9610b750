#include <fiberloop/semaphore.hpp>

#include <algorithm>
#include <exception>
#include <optional>

#include <boost/context/detail/exception.hpp>

#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/errors.hpp>
#include <fiberloop/wait.hpp>

namespace fiberloop {

namespace {
constexpr const char* acquire_what = "Semaphore::acquire()";
}  // namespace

Semaphore::~Semaphore() {
  // The waiters' promises live on their fibers' stacks; each fiber resumes later and
  // touches nothing of this semaphore once its promise holds an exception.
  while (!waiters_.empty()) {
    Promise<void>* waiter = waiters_.front();
    waiters_.pop_front();
    waiter->set_exception(std::make_exception_ptr(
        BrokenPromise("the fiberloop::Semaphore was destroyed while this fiber waited for a permit")));
  }
}

void Semaphore::acquire() { acquire(std::chrono::nanoseconds::max()); }

void Semaphore::acquire(std::chrono::nanoseconds timeout) {
  if (try_acquire()) return;
  if (timeout <= std::chrono::nanoseconds::zero()) detail::throw_timeout(acquire_what, timeout);
  const detail::steady_time deadline = detail::deadline_after(timeout);  // max(): wait_state sets no timer

  // In line: release() pops `handed` and completes it, handing its permit straight
  // to this fiber (available_ never counts it), so nobody can take it in between.
  Promise<void> handed;
  const Future<void> turn = handed.get_future();
  waiters_.push_back(&handed);
  bool in_time = false;
  try {
    in_time = detail::wait_state(*detail::state_of(turn), deadline, acquire_what);
  } catch (const boost::context::detail::forced_unwind&) {
    // The stack unwinds: leave the line, and pass on a permit handed over meanwhile.
    if (!turn.done()) {
      std::erase(waiters_, &handed);
    } else if (!turn.exception()) {
      release();
    }
    throw;
  } catch (...) {  // LoopClosed, BlockingCallError (nothing waited), a Deadline's TimeoutError
    if (!turn.done()) {
      std::erase(waiters_, &handed);
      throw;
    }
    if (turn.exception()) throw;  // the semaphore was destroyed: *this is gone
    return;                       // handed over just as the wait ended: the permit is ours
  }
  if (!in_time && !turn.done()) {
    std::erase(waiters_, &handed);
    detail::throw_timeout(acquire_what, timeout);
  }
  turn.result();  // BrokenPromise when the semaphore was destroyed meanwhile
}

bool Semaphore::try_acquire() noexcept {
  if (available_ == 0 || !waiters_.empty()) return false;
  --available_;
  return true;
}

void Semaphore::release() noexcept {
  if (waiters_.empty()) {
    ++available_;
    return;
  }
  Promise<void>* next = waiters_.front();
  waiters_.pop_front();
  next->set_value();  // the permit goes to it without passing through available_
}

}  // namespace fiberloop
