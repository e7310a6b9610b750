#pragma once
// FdWaiter: suspends fibers of one loop until a descriptor someone else reads and
// writes is ready. For libraries that do their own socket I/O and only need to be
// told when to try again (Connector/C's io-wait hook). Internal.

#include <chrono>
#include <memory>

#include <fiberloop/future.hpp>
#include <fiberloop/io_loop.hpp>

namespace fiberloop::detail {

class FdWaiter {
 public:
  /// Watches nothing yet: the fd gets a handler on `loop` at the first wait.
  FdWaiter(IOLoop& loop, int fd);
  /// release().
  ~FdWaiter() { release(); }
  FdWaiter(const FdWaiter&) = delete;
  FdWaiter& operator=(const FdWaiter&) = delete;

  /// Suspends the calling fiber until fd is ready for `direction` (Events::read or
  /// Events::write) or reports an error or hang-up (the caller's next call on the fd
  /// says which). False when `deadline` passed first. One waiter per direction.
  /// Throws LoopClosed when the loop is destroyed meanwhile. Fiber: of the loop.
  bool wait(Events direction, std::chrono::steady_clock::time_point deadline, const char* what);
  /// Removes fd's handler, if any. Call it before the fd is closed, or at once after
  /// with no suspension in between (the number may be reused): the loop must never
  /// watch the next file of that number for us. A waiter still suspended is woken.
  /// Thread: the loop's, or any once the loop is gone.
  void release() noexcept;
  int fd() const noexcept { return fd_; }

 private:
  void on_ready(Events events);
  Events wake(Promise<void>*& waiter, Events direction, Events events, bool error);

  IOLoop* loop_;
  std::shared_ptr<LoopAnchor> anchor_;  // says whether loop_ is still alive
  int fd_;
  bool registered_ = false;
  Events interest_ = Events::none;  // what the handler listens for
  Promise<void>* read_waiter_ = nullptr;
  Promise<void>* write_waiter_ = nullptr;
};

}  // namespace fiberloop::detail
