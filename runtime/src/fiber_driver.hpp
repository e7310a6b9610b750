#pragma once
// The seam between the IOLoop (runtime/) and fiber scheduling (fibers/). The loop
// owns one driver once a fiber has been spawned on it and calls it once per
// iteration; runtime/ reaches fibers/ through this interface and one function,
// IOLoop::spawn_fiber_ (defined in fibers/src/spawn.cpp).

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include <fiberloop/io_loop.hpp>

namespace fiberloop::detail {

class FiberDriver {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~FiberDriver() = default;

  /// Whether fibers are ready, or the scheduler has bookkeeping it must do before
  /// the thread may sleep. `now` is the loop iteration's clock reading.
  virtual bool has_work(time_point now) const noexcept = 0;
  /// Runs each fiber that was ready when called, once. Fibers made ready meanwhile
  /// wait for the next pass, so I/O is polled between passes.
  virtual void run_pass(time_point now) noexcept = 0;
  /// The earliest deadline of a fiber sleeping in a Boost.Fiber timed wait.
  virtual time_point next_deadline() const noexcept = 0;
  /// Ends every fiber of this loop; their waits throw LoopClosed. Loop thread only.
  virtual void close() noexcept = 0;
  /// Fibers of this loop that have not finished.
  virtual std::size_t live_fibers() const noexcept = 0;
  /// Whether every live fiber is suspended in a fiberloop wait that nothing of this
  /// loop is bound to complete: none ready, running, blocked on a Boost.Fiber
  /// primitive (a timed one wakes by itself) or waiting for an executor job.
  virtual bool all_fibers_waiting_on_others() const noexcept = 0;
  /// Appends one line per live fiber to `out` (IOLoop::dump()). Loop thread only.
  virtual void dump(std::string& out, time_point now) const = 0;
  /// IOLoopMetrics::stack_high_water: per fiber name, the deepest stack use measured.
  virtual std::vector<IOLoopMetrics::StackUse> stack_high_water() const = 0;
};

}  // namespace fiberloop::detail
