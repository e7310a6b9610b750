#pragma once
// How a fiber waits on Connector/C: its io-wait hook (MARIADB_OPT_IO_WAIT). The plain
// blocking API reads and writes with MSG_DONTWAIT and, where it would poll() the
// socket, calls the hook instead; ours suspends the calling fiber on the socket while
// the loop serves others. docs/sql.md says why this way and not the non-blocking API.
// Internal.

#include <chrono>
#include <exception>
#include <optional>

#include <fiberloop/io_loop.hpp>

#include "net/fd_waiter.hpp"

struct st_mysql;

namespace fiberloop::detail {

/// Sets the hook on `mysql` (before mysql_real_connect). From then on every wait of
/// that connection goes to the hook: inside a MariadbCall, it suspends the fiber until
/// the call's deadline; in a fiber without one, until the connection's own read or
/// write timeout (none by default); on a plain thread, it poll()s as Connector/C would.
void install_mariadb_io_wait(st_mysql* mysql);

/// One connection's socket as the hook waits on it: a handler on the loop, kept from
/// wait to wait.
class MariadbSocket {
 public:
  explicit MariadbSocket(IOLoop& loop) noexcept : loop_(&loop) {}
  MariadbSocket(const MariadbSocket&) = delete;
  MariadbSocket& operator=(const MariadbSocket&) = delete;

  /// False when `deadline` passed first. Fiber: of the loop.
  bool wait(int fd, Events direction, std::chrono::steady_clock::time_point deadline, const char* what);
  /// After every Connector/C call: forgets the socket if Connector/C closed it (it
  /// does on a lost connection), before the number can be reused.
  void sync(st_mysql* mysql) noexcept;
  /// Before mysql_close(), or once the socket is closed.
  void release() noexcept { waiter_.reset(); }

 private:
  IOLoop* loop_;
  std::optional<FdWaiter> waiter_;
};

/// One Connector/C call made by a fiber: while it lives, the hook suspends this fiber
/// on `socket` until `deadline` at most (a deadline already past: no wait at all, the
/// hook answers "timed out" at once). Make it right around the call: between its
/// construction and destruction the fiber must not suspend except in the hook.
class MariadbCall {
 public:
  /// `mysql` is synced with `socket` at the end (null: not, for mysql_close()).
  MariadbCall(MariadbSocket& socket, st_mysql* mysql, std::chrono::steady_clock::time_point deadline) noexcept;
  ~MariadbCall();
  MariadbCall(const MariadbCall&) = delete;
  MariadbCall& operator=(const MariadbCall&) = delete;

  /// True when a wait reached the deadline (the hook then told Connector/C it timed
  /// out: it closed the connection and its call failed with a lost connection).
  bool timed_out() const noexcept { return timed_out_; }
  /// What a wait threw (LoopClosed; a fiber's forced unwind), for the caller to rethrow
  /// once Connector/C has returned: an exception cannot unwind through its C frames, so
  /// the hook keeps it and tells Connector/C the wait failed.
  std::exception_ptr wait_error() const noexcept { return wait_error_; }

  /// The hook's body for this call. No-throw: errors are kept for wait_error().
  int wait(int fd, bool is_read) noexcept;

 private:
  MariadbSocket& socket_;
  st_mysql* mysql_;
  std::chrono::steady_clock::time_point deadline_;
  bool timed_out_ = false;
  std::exception_ptr wait_error_;
};

}  // namespace fiberloop::detail
