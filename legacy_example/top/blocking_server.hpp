#pragma once
/// @file
/// The parts of a classic blocking HTTP server that the two threaded tops share:
/// the listening socket, accepting until SIGINT/SIGTERM, the live connections (so a
/// stop can wake them), and the keep-alive request loop of one connection
/// (Boost.Beast on a blocking socket) that calls the middle's handle_request().

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_set>

namespace legacy {

/// A bound, listening TCP socket (SO_REUSEADDR; backlog as large as the kernel allows).
/// Throws std::system_error.
int listen_tcp(const std::string& host, std::uint16_t port);

/// The port `fd` is bound to.
std::uint16_t bound_port(int fd);

/// Waits for a connection on `listen_fd` or a signal on `signal_fd`. Returns the
/// accepted (blocking) socket, or -1 once the signal came. Out of descriptors
/// (EMFILE), it pauses 100 ms rather than spinning on the pending connection.
int accept_or_stop(int listen_fd, int signal_fd);

/// Serves HTTP/1.1 requests on `fd` with handle_request() until the peer closes,
/// asks to close, sends garbage (400), or is idle past the keep-alive timeout.
/// Does not close `fd`. Thread: any; blocks the calling thread.
void serve_connection(int fd);

/// The connections being served, so that a stop can wake their threads. A
/// connection is registered by the accepting thread (add) and ends in exactly one
/// of serve, refuse or drop, which unregister and close it.
class Connections {
 public:
  /// Registers `fd`; false (and `fd` closed) once shut_down_all() was called.
  bool add(int fd);
  /// Serves `fd` (serve_connection), then unregisters and closes it. Blocks.
  void serve(int fd) noexcept;
  /// Answers 503 (no thread free to serve it), then unregisters and closes `fd`.
  void refuse(int fd) noexcept;
  /// Unregisters and closes `fd` without a word.
  void drop(int fd) noexcept;
  /// Shuts every live connection down (their blocked reads return) and makes
  /// add() refuse new ones.
  void shut_down_all();
  /// Waits until no connection is registered, at most `limit`. True when none is left.
  bool wait_idle(std::chrono::milliseconds limit);

 private:
  std::mutex mutex_;
  std::condition_variable idle_;
  std::unordered_set<int> live_;
  bool stopping_ = false;
};

}  // namespace legacy
