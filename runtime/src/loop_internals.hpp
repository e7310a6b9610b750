#pragma once
// What the fibers layer may touch inside an IOLoop. Private to runtime/ and fibers/
// (adapters get fiberloop/detail/loop_hooks.hpp).

#include <exception>
#include <memory>

#include <fiberloop/io_loop.hpp>

#include "fiber_driver.hpp"
#include "thread_wakeup.hpp"

namespace fiberloop::detail {

struct LoopInternals {
  static bool closing(const IOLoop& loop) noexcept { return loop.closing_; }
  static FiberDriver* fibers(const IOLoop& loop) noexcept { return loop.fibers_.get(); }
  static void set_fibers(IOLoop& loop, std::unique_ptr<FiberDriver> driver) noexcept {
    loop.fibers_ = std::move(driver);
  }
  static const std::shared_ptr<ThreadWakeup>& wakeup(const IOLoop& loop) noexcept { return loop.wakeup_; }
  static const std::shared_ptr<LoopAnchor>& anchor(const IOLoop& loop) noexcept { return loop.anchor_; }
  static void report(IOLoop& loop, std::exception_ptr error, const char* where) noexcept {
    loop.report(std::move(error), where);
  }
  static bool on_owner_thread(const IOLoop& loop) noexcept;
  /// The loop whose start() is running on this thread, or null.
  static IOLoop* running_here() noexcept;
  /// Hands over ownership of `loop` if it is this thread's default loop (see
  /// IOLoop::current()), else returns null.
  static std::unique_ptr<IOLoop> release_default_loop(IOLoop& loop) noexcept;
};

/// "Type: message" for an exception, with the type's name demangled.
std::string describe_exception(const std::exception_ptr& error);

}  // namespace fiberloop::detail
