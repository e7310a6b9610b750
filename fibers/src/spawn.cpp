// IOLoop::spawn_fiber_ is defined here, beside the scheduler it hands fibers to:
// runtime/ declares it and fibers/ defines it, which is why the two are compiled into
// one library (fiberloop_core) while their sources keep their include direction.

#include <fiberloop/io_loop.hpp>

#include "loop_internals.hpp"
#include "loop_scheduler.hpp"

namespace fiberloop {

void IOLoop::spawn_fiber_(std::unique_ptr<detail::FiberTask> task) {
  if (!detail::LoopInternals::on_owner_thread(*this)) {
    // Fibers belong to the loop's thread: start it there. If the loop is destroyed
    // first, the dropped callback fails the fiber like any fiber that never started.
    struct Handover {
      std::unique_ptr<detail::FiberTask> task;
      ~Handover() {
        if (task) task->fail(std::make_exception_ptr(LoopClosed("the IOLoop was destroyed before this fiber started")));
      }
    };
    auto handover = std::make_shared<Handover>();
    handover->task = std::move(task);
    add_callback([this, handover] { spawn_fiber_(std::move(handover->task)); });
    return;
  }
  if (closing_) {
    task->fail(std::make_exception_ptr(LoopClosed("spawn() on an IOLoop that is being destroyed")));
    return;
  }
  detail::LoopFibers::of(*this).spawn(std::move(task));
}

}  // namespace fiberloop
