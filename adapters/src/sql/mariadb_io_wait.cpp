// Connector/C's io-wait hook, and the per-call context it finds its fiber's socket
// and deadline in.

#include "sql/mariadb_io_wait.hpp"

#include <mysql.h>
#include <poll.h>

#include <cerrno>
#include <utility>

namespace fiberloop::detail {

namespace {

// The call the running fiber is making. Set by MariadbCall; the hook takes it while it
// suspends (another fiber's call may run meanwhile) and puts it back when it resumes,
// so only the fiber that made the call ever sees it.
thread_local MariadbCall* current_call = nullptr;

/// Outside a MariadbCall: as Connector/C itself would wait (a plain thread's blocking
/// client; none of fiberloop's calls come here).
int poll_socket(my_socket fd, bool is_read, int timeout_ms) {
  pollfd ready{fd, static_cast<short>(is_read ? POLLIN : POLLOUT), 0};
  int rc;
  do {
    rc = ::poll(&ready, 1, timeout_ms > 0 ? timeout_ms : -1);  // 0 means "no timeout" to Connector/C
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) errno = ETIMEDOUT;
  return rc;
}

/// The hook: Connector/C calls it where it would poll() `fd`; > 0 means ready, 0
/// timed out, < 0 failed (both fail the Connector/C call).
int io_wait(my_socket fd, my_bool is_read, int timeout_ms) {
  MariadbCall* call = std::exchange(current_call, nullptr);
  const int ready = call ? call->wait(fd, is_read != 0) : poll_socket(fd, is_read != 0, timeout_ms);
  current_call = call;
  return ready;
}

}  // namespace

void install_mariadb_io_wait(st_mysql* mysql) {
  int (*hook)(my_socket, my_bool, int) = io_wait;
  mysql_optionsv(mysql, MARIADB_OPT_IO_WAIT, hook);
}

bool MariadbSocket::wait(int fd, Events direction, std::chrono::steady_clock::time_point deadline, const char* what) {
  if (!waiter_ || waiter_->fd() != fd) {
    waiter_.reset();
    waiter_.emplace(*loop_, fd);
  }
  return waiter_->wait(direction, deadline, what);
}

void MariadbSocket::sync(st_mysql* mysql) noexcept {
  if (waiter_ && mysql_get_socket(mysql) != waiter_->fd()) waiter_.reset();
}

MariadbCall::MariadbCall(MariadbSocket& socket, st_mysql* mysql, std::chrono::steady_clock::time_point deadline) noexcept
    : socket_(socket), mysql_(mysql), deadline_(deadline) {
  current_call = this;
}

MariadbCall::~MariadbCall() {
  current_call = nullptr;
  if (mysql_) socket_.sync(mysql_);
}

int MariadbCall::wait(int fd, bool is_read) noexcept {
  if (wait_error_ || timed_out_) return 0;  // Connector/C gives up after one failed wait; be sure
  if (std::chrono::steady_clock::now() >= deadline_) {
    timed_out_ = true;
    errno = ETIMEDOUT;
    return 0;
  }
  try {
    if (socket_.wait(fd, is_read ? Events::read : Events::write, deadline_, "MariaDB"))
      return 1;
    timed_out_ = true;
    errno = ETIMEDOUT;
    return 0;
  } catch (...) {
    // Kept, not swallowed (forced unwinds included): the caller rethrows it as soon as
    // Connector/C has returned; an exception cannot unwind through its C frames.
    wait_error_ = std::current_exception();
    return -1;
  }
}

}  // namespace fiberloop::detail
