#pragma once
/// @file
/// HttpClient: HTTP/1.1 requests (http:// only) with a per-host pool of kept-alive
/// connections. fetch() returns a Future; inside a fiber,
/// wait_for_future(client.fetch(url)) is the blocking-looking form.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include <fiberloop/future.hpp>
#include <fiberloop/io_loop.hpp>
#include <fiberloop/net/http.hpp>

namespace fiberloop {

/// One request's settings. A timeout of nanoseconds::max() means no limit.
struct FetchOptions {
  std::string method = "GET";
  HttpHeaders headers;  ///< Host, Content-Length and User-Agent are added when absent
  std::string body;
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(10);
  /// The whole fetch: connecting, sending, the response with its body, redirects.
  std::chrono::nanoseconds request_timeout = std::chrono::seconds(30);
  /// Follow 301/302/303/307/308 with a Location: 303 (but for HEAD), and 301/302 after
  /// a POST, become a GET without the body and its Content-* headers; 307/308 keep
  /// method and body. To another origin (host or port) Authorization,
  /// Proxy-Authorization, Cookie and an explicit Host are not sent, as curl and
  /// browsers do.
  bool follow_redirects = false;
  int max_redirects = 5;          ///< more -> Error
  std::size_t max_body_bytes = 64 * 1024 * 1024;  ///< larger response body -> Error
};

/// HttpClient's pool settings.
struct HttpClientOptions {
  std::size_t max_idle_per_host = 16;  ///< idle kept-alive connections per host:port
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(60);  ///< idle this long: closed
};

class HttpClient {
 public:
  using Options = HttpClientOptions;

  /// Thread: the loop's thread.
  explicit HttpClient(Options options = {}, IOLoop& loop = IOLoop::current());
  /// Closes the idle connections. Fetches in flight still complete (or end with
  /// LoopClosed when the loop is destroyed). Thread: the loop's thread; before or
  /// after the loop is destroyed.
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  /// Requests `url` ("http://host[:port]/path?query"). Thread: any (the request runs
  /// on a fiber of the client's loop, where the future completes). Non-2xx statuses
  /// are responses, not errors. Fails with Error for a bad or non-http URL, a bad
  /// header, a malformed or oversized response (naming the server and the limit) or
  /// too many redirects; TimeoutError past connect_timeout or request_timeout;
  /// StreamClosed (the server closed mid-response) or std::system_error for transport
  /// failures. A pooled connection is reused only while silent and open (a server
  /// may send a 408 before closing it); a GET or HEAD that still meets a closed one
  /// (or a 408 on it) is retried once on a newly connected one. The connection of a
  /// 101, of a CONNECT, or of any response that leaves its state unknown is closed,
  /// never pooled. LoopClosed once the client's loop is destroyed.
  [[nodiscard]] Future<HttpResponse> fetch(const std::string& url, FetchOptions options = {});

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace fiberloop
