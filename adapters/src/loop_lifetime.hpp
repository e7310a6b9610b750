#pragma once
// Whether an adapter object's loop still exists. Internal.

#include <memory>
#include <mutex>

#include <fiberloop/detail/loop_internals.hpp>
#include <fiberloop/io_loop.hpp>
#include <fiberloop/wait.hpp>

namespace fiberloop::detail {

/// Tells whether a loop still exists, for objects that may outlive theirs: a
/// TcpStream (an HttpClient's pooled connection), a TcpServer, an HttpClient. Once
/// the loop is gone they only close their sockets and leave the loop alone.
class LoopLifetime {
 public:
  explicit LoopLifetime(IOLoop& loop) noexcept : anchor_(LoopInternals::anchor(loop)) {}

  /// Thread: any. ~IOLoop clears the anchor first, then unwinds the loop's fibers
  /// while the loop is still whole: on one of those fibers it counts as alive, so
  /// what they close still leaves the loop cleanly (no handler left on an fd number
  /// the next socket may get).
  bool alive() const noexcept {
    {
      std::lock_guard lock(anchor_->lock);
      if (anchor_->loop) return true;
    }
    IOLoop* here = current_fiber_loop();
    return here && LoopInternals::anchor(*here) == anchor_;
  }

 private:
  std::shared_ptr<LoopAnchor> anchor_;  // held: its address names this loop alone
};

}  // namespace fiberloop::detail
