#pragma once
// What adapters need of an IOLoop's inside, and nothing more (the fibers layer has
// runtime/src/loop_internals.hpp): reporting an error, and living safely beside a loop
// that may die first or be reached from another thread. Internal: not part of the API.

#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>

#include <fiberloop/errors.hpp>
#include <fiberloop/future.hpp>
#include <fiberloop/io_loop.hpp>

namespace fiberloop::detail {

/// Sends `error` to `loop`'s unhandled-exception report as if it had escaped work
/// done for `where` ("the HTTP handler for GET /"). Thread: the loop's.
void report_unhandled(IOLoop& loop, std::exception_ptr error, const std::string& where) noexcept;

/// True while `loop` is being destroyed: its fibers are unwinding with LoopClosed, and
/// an error caught on the way out is the unwinding, not news to report.
bool loop_closing(const IOLoop& loop) noexcept;

/// The loop's anchor. Keep it, not the IOLoop&, in objects that may outlive the loop:
/// it says whether the loop still exists, and names this loop alone (a later loop
/// may be built at the same address). Thread: any.
const std::shared_ptr<LoopAnchor>& loop_anchor(const IOLoop& loop) noexcept;

/// True on the thread that owns `loop`. Thread: any.
bool on_loop_thread(const IOLoop& loop) noexcept;

/// The anchor's loop if it is alive (or being destroyed: its fibers are unwinding)
/// and owned by the calling thread (which alone may destroy it, so it stays alive
/// while the caller uses it), else null.
IOLoop* alive_on_this_thread(LoopAnchor& anchor) noexcept;

/// Off the thread of the anchor's live loop, queues `fn` there (add_callback) and
/// returns true: for work on state only the loop's thread may touch. Returns false,
/// `fn` untouched, on the loop's thread or once the loop is gone, where the caller
/// may do the work itself. Throws what add_callback() throws (`fn` is then lost).
bool hand_to_loop_thread(LoopAnchor& anchor, std::function<void()>& fn);

/// Spawns `fn` on the anchor's loop from any thread: directly on the loop's own
/// thread, else queued there. Once the loop is gone, a future failed with LoopClosed
/// ("`who`: its IOLoop was destroyed"). Thread: any.
template <class F>
auto spawn_on_loop(LoopAnchor& anchor, F&& fn, const char* who) -> Future<std::invoke_result_t<std::decay_t<F>&>> {
  using R = std::invoke_result_t<std::decay_t<F>&>;
  if (IOLoop* loop = alive_on_this_thread(anchor)) return loop->spawn(std::forward<F>(fn));
  std::lock_guard lock(anchor.lock);
  if (!anchor.loop)
    return make_exceptional_future<R>(std::make_exception_ptr(LoopClosed(std::string(who) + ": its IOLoop was destroyed")));
  return anchor.loop->spawn(std::forward<F>(fn));  // from another thread: queued with add_callback
}

}  // namespace fiberloop::detail
