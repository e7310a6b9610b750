#pragma once
// What adapters need of an IOLoop's inside, and nothing more (the fibers layer has
// runtime/src/loop_internals.hpp): reporting an error, and living safely beside a loop
// that may die first or be reached from another thread. Internal: not part of the API.

#include <exception>
#include <functional>
#include <memory>
#include <string>

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

}  // namespace fiberloop::detail
