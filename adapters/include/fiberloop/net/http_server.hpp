#pragma once
/// @file
/// HttpServer: HTTP/1.1 on a TcpServer. Each connection runs on its own fiber and
/// serves its requests one after another (pipelined requests are answered in order);
/// the handler is a plain synchronous function that may wait_for_future at any depth.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <fiberloop/future.hpp>
#include <fiberloop/io_loop.hpp>
#include <fiberloop/net/http.hpp>
#include <fiberloop/net/tcp_server.hpp>

namespace fiberloop {

/// HttpServer's limits. Bad input gets its status and the connection is closed:
/// 400 for a malformed or ambiguous request (obs-fold, a repeated Host,
/// Content-Length or Transfer-Encoding line, Content-Length with Transfer-Encoding,
/// a chunk-size line over 4 KiB), 501 for a Transfer-Encoding other than "chunked",
/// 505 for a version other than 1.0 and 1.1. A timeout of nanoseconds::max() means
/// no limit. (Outside the class so that `Options options = {}` works as a default
/// argument.)
struct HttpServerOptions {
  /// Request line + headers; 431 beyond. A chunked body's trailer fields get what the
  /// headers left of it (431 beyond too).
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;  ///< de-chunked body; 413 beyond
  /// From a request's first byte to the end of its headers (slowloris); 408 after.
  std::chrono::nanoseconds header_timeout = std::chrono::seconds(10);
  /// From the end of the headers to the end of the body; 408 after.
  std::chrono::nanoseconds body_timeout = std::chrono::seconds(30);
  /// Idle time allowed between requests on a kept-alive connection; then it is
  /// closed without a response.
  std::chrono::nanoseconds keep_alive_timeout = std::chrono::seconds(60);
  /// Live connections at most (see default_max_connections()); one more gets a 503
  /// and is closed at once, while the live ones go on being served. 0 = unlimited.
  std::size_t max_connections = default_max_connections();
  std::string server_header = "fiberloop";  ///< "Server:" value; empty sends none
  /// 0: none. Else each request's handler runs under a Deadline this long
  /// (stack_context.hpp): every wait in it, and in the work it hands on, ends with
  /// TimeoutError when it passes; a handler that fails once it has passed is
  /// answered 504 Gateway Timeout (and its error reported, like any escaping error).
  std::chrono::nanoseconds request_deadline{0};
  /// Empty: none. Else a GET of exactly this path answers the loop's IOLoop::dump()
  /// (every fiber, what it waits on) as text/plain, without calling the handler.
  /// For operators: serve it only where only they can reach (a loopback listener).
  std::string dump_path;
};

class HttpServer {
 public:
  /// Runs on the connection's fiber; may suspend it (wait_for_future, sleep_for,
  /// run_blocking). An exception escaping it becomes a 500 whose body says nothing
  /// about it, and is reported through the loop's unhandled-exception report; the
  /// connection stays open.
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  using Options = HttpServerOptions;

  /// Thread: the loop's thread.
  explicit HttpServer(Handler handler, Options options = {}, IOLoop& loop = IOLoop::current());
  /// Stops accepting and closes connections without waiting (prefer stop()). May
  /// run after the loop is destroyed (which ended every connection): then it only
  /// closes the listening socket.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds and listens; port 0 picks a free one. Returns the port.
  std::uint16_t listen(std::uint16_t port, const std::string& host = "127.0.0.1");
  std::uint16_t port() const noexcept;
  /// Stops accepting, closes idle kept-alive connections at once, gives requests in
  /// progress `grace` to finish (their connections close after the response), then
  /// closes the rest. Fiber: suspends the calling fiber (BlockingCallError on the
  /// loop's thread outside a fiber).
  void stop(std::chrono::nanoseconds grace = std::chrono::seconds(5));
  /// As stop(), callable from a loop callback; the future completes when all
  /// connections have ended.
  [[nodiscard]] Future<void> stop_async(std::chrono::nanoseconds grace = std::chrono::seconds(5));

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace fiberloop
