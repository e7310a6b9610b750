#pragma once
// The two things of an IOLoop's inside that adapters need, and nothing more (the
// fibers layer has runtime/src/loop_internals.hpp). Internal: not part of the API.

#include <exception>
#include <string>

#include <fiberloop/io_loop.hpp>

namespace fiberloop::detail {

/// Sends `error` to `loop`'s unhandled-exception report as if it had escaped work
/// done for `where` ("the HTTP handler for GET /"). Thread: the loop's.
void report_unhandled(IOLoop& loop, std::exception_ptr error, const std::string& where) noexcept;

/// True while `loop` is being destroyed: its fibers are unwinding with LoopClosed, and
/// an error caught on the way out is the unwinding, not news to report.
bool loop_closing(const IOLoop& loop) noexcept;

}  // namespace fiberloop::detail
