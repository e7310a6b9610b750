#pragma once
// Fault injection for accept4(): errors the kernel gives only when the whole system
// is short of something (ENFILE: the system-wide file table is full; ENOBUFS, ENOMEM)
// cannot be produced on demand in a test, so the test binary interposes accept4()
// (support/accept_fault.cpp) and fails it on request.

namespace fiberloop::testing {

/// While it exists, every accept4() on `listen_fd` fails with `error`; other sockets
/// accept as usual. One at a time.
class AcceptFault {
 public:
  AcceptFault(int listen_fd, int error) noexcept;
  ~AcceptFault();
  AcceptFault(const AcceptFault&) = delete;
  AcceptFault& operator=(const AcceptFault&) = delete;

  /// The accept4() calls on `listen_fd` failed so far.
  int failed_calls() const noexcept;
};

/// The descriptor of this process's socket listening on TCP `port`, or -1.
int listening_fd_of_port(int port);

}  // namespace fiberloop::testing
