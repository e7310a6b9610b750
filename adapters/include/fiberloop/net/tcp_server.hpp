#pragma once
/// @file
/// TcpServer: listens on a TCP port and runs the user's handler in a fiber per
/// accepted connection, with a graceful stop and a cap on concurrent connections.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <fiberloop/future.hpp>
#include <fiberloop/io_loop.hpp>
#include <fiberloop/net/tcp_stream.hpp>

namespace fiberloop {

/// The connection cap TcpServer and HttpServer take unless told otherwise: the soft
/// RLIMIT_NOFILE as it is when called, minus a reserve for the process's other
/// descriptors (files, outgoing connections, the loop's own) of a quarter of it, at
/// least 16 and at most 1 024; never below 1. Thread: any.
std::size_t default_max_connections() noexcept;

/// TcpServer::Options. (Outside the class so that `Options options = {}` works as a default argument.)
struct TcpServerOptions {
  int backlog = 1024;
  /// Live connections at most. A connection beyond it is accepted, sent `refusal`
  /// and closed at once: it neither waits unseen in the kernel backlog nor takes the
  /// descriptors the live ones need. 0 = unlimited.
  std::size_t max_connections = default_max_connections();
  /// Bytes written to a connection refused at max_connections before it is closed
  /// (best effort, without waiting); HttpServer sends a 503. Empty: just closed.
  std::string refusal;
  std::chrono::milliseconds accept_backoff{100};  // pause after EMFILE/ENFILE/ENOBUFS/ENOMEM
  std::string name = "tcp";                       // used in fiber names / reports
};

class TcpServer {
 public:
  using Handler = std::function<void(TcpStream&)>;  // runs in its own fiber per connection
  using Options = TcpServerOptions;
  /// Thread: the loop's (as every method below but the destructor; others throw std::logic_error).
  explicit TcpServer(Handler handler, Options options = {}, IOLoop& loop = IOLoop::current());
  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;
  /// If still listening: stops accepting and closes connections (no wait). Thread: any;
  /// from another thread the loop does it in its next iteration. May run after the loop
  /// is destroyed (then only the listening socket is left to close).
  ~TcpServer();
  /// Binds and listens (SO_REUSEADDR; "::1"/"::" for IPv6). Port 0 picks a free one. Returns the port.
  std::uint16_t listen(std::uint16_t port, const std::string& host = "127.0.0.1");
  std::uint16_t port() const noexcept;
  std::size_t connections() const noexcept;  // live connection fibers
  /// Stops accepting; in-flight handlers get `grace` to finish; then their streams are closed
  /// (their waits throw StreamClosed); returns when every connection fiber has ended.
  /// Waits like wait_for_future (in a fiber: suspends; loop thread outside a fiber: BlockingCallError).
  /// From inside one of this server's handlers use stop_async(): stop() would wait for its own fiber.
  void stop(std::chrono::nanoseconds grace = std::chrono::seconds(5));
  Future<void> stop_async(std::chrono::nanoseconds grace = std::chrono::seconds(5));  // callable from a callback
  /// Exceptions escaping the handler are reported through the loop's unhandled-exception report
  /// (type, message) and the connection is closed; the server goes on. StreamClosed (the peer
  /// left, or stop() closed the stream) and LoopClosed are the normal end of a connection: not reported.

  /// accept() calls made so far, failed ones included (lets tests see the EMFILE back-off).
  std::size_t accept_attempts() const noexcept;

 private:
  struct State;  // adapters/src/net/tcp_server.cpp
  std::shared_ptr<State> state_;
};

}  // namespace fiberloop
