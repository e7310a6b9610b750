// HttpServer: one fiber per connection (TcpServer's), requests served in order.

#include <sys/socket.h>

#include <boost/context/detail/exception.hpp>

#include <list>
#include <optional>
#include <string>
#include <system_error>

#include <fiberloop/detail/loop_hooks.hpp>
#include <fiberloop/net/http_server.hpp>
#include <fiberloop/net/tcp_server.hpp>
#include <fiberloop/net/tcp_stream.hpp>
#include <fiberloop/stack_context.hpp>
#include <fiberloop/wait.hpp>

#include "http_read.hpp"

namespace fiberloop {

namespace {

using namespace detail;

bool has_no_body(int status) noexcept { return status < 200 || status == 204 || status == 304; }

/// Writes the status line and headers of `response` into `out` (and the body too if
/// `with_body`). Throws Error for a response that cannot be sent as it is.
void serialize_head(std::string& out, const HttpResponse& response, bool close, int request_version,
                    const std::string& server_header) {
  if (response.status < 200 || response.status > 999)
    throw Error("HTTP handler returned status " + std::to_string(response.status) + "; use 200-999");
  out.clear();
  out.append("HTTP/1.1 ");
  append_decimal(out, static_cast<std::uint64_t>(response.status));
  out.push_back(' ');
  if (response.reason.empty()) {
    out.append(http_reason_phrase(response.status));
  } else {
    if (has_control(response.reason)) throw Error("HTTP handler returned a reason phrase with a control character");
    out.append(response.reason);
  }
  out.append("\r\n");
  if (!server_header.empty() && !response.headers.find("server"))
    out.append("Server: ").append(server_header).append("\r\n");
  append_fields(out, response.headers, {"content-length", "transfer-encoding", "connection"});
  if (!has_no_body(response.status)) {
    out.append("Content-Length: ");
    append_decimal(out, response.body.size());
    out.append("\r\n");
  }
  if (close)
    out.append("Connection: close\r\n");
  else if (request_version == 10)
    out.append("Connection: keep-alive\r\n");
  out.append("\r\n");
}

// Bodies larger than this go out in their own write instead of being copied.
constexpr std::size_t copy_body_below = 16 * 1024;

}  // namespace

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  struct Connection {
    TcpStream* stream;
    bool idle;  // waiting for a request's first byte: stop() may close it at once
  };

  Impl(Handler h, Options o, IOLoop& l)
      : handler(std::move(h)), options(std::move(o)), anchor(loop_anchor(l)) {}

  void serve(TcpStream& stream);
  void close_idle() noexcept {
    stopping = true;
    for (auto& connection : connections)
      if (connection.idle) connection.stream->close();
  }
  /// Runs the handler and serialises the response head into `out`; `close` comes in
  /// as "the request asked to close" and goes out as "close after this response".
  HttpResponse run_handler(const HttpRequest& request, std::string& out, bool& close);
  HttpResponse dump_response() const;
  void reject(TcpStream& stream, std::string& out, int status);
  static void close_gracefully(TcpStream& stream) noexcept;

  Handler handler;
  Options options;
  std::shared_ptr<LoopAnchor> anchor;  // the loop's, which may die first
  bool stopping = false;
  std::list<Connection> connections;
  std::unique_ptr<TcpServer> tcp;
};

void HttpServer::Impl::serve(TcpStream& stream) {
  const auto self = shared_from_this();  // the connection may outlive the HttpServer
  connections.push_front({&stream, true});
  struct Forget {
    std::list<Connection>& list;
    std::list<Connection>::iterator it;
    ~Forget() { list.erase(it); }
  } forget{connections, connections.begin()};
  Connection& connection = *forget.it;

  WireBuffer buffer;
  HttpRequest request;
  std::string out;
  std::string remote;
  try {
    remote = stream.peer_address();
  } catch (const std::exception&) {
    // Already gone; the first read will notice.
  }
  bool first = true;
  for (;;) {
    connection.idle = true;
    if (stopping) return;
    const auto waiting_since = http_clock::now();
    if (buffer.empty()) {
      try {
        buffer.fill(stream, first ? options.header_timeout : options.keep_alive_timeout);
      } catch (const TimeoutError&) {
        if (first) reject(stream, out, 408);
        return;  // an idle kept-alive connection just closes
      } catch (const StreamClosed&) {
        return;
      } catch (const std::system_error&) {
        return;  // reset by the peer
      }
    }
    connection.idle = false;
    // A new connection's first request must be complete header_timeout after the
    // accept; a later one, header_timeout after its first byte.
    const auto header_deadline = saturating_add(first ? waiting_since : http_clock::now(), options.header_timeout);
    first = false;

    RequestRead read;
    try {
      read = read_request(buffer, stream, options, header_deadline, request);
    } catch (const StreamClosed&) {
      return;
    } catch (const std::system_error&) {
      return;
    }
    if (read.error_status != 0) {
      reject(stream, out, read.error_status);
      return;
    }

    request.remote_address = remote;
    bool close = !read.keep_alive;
    const HttpResponse response = run_handler(request, out, close);
    const bool send_body = request.method != "HEAD" && !has_no_body(response.status);
    if (send_body && response.body.size() < copy_body_below) out.append(response.body);
    try {
      stream.write_all(out, options.body_timeout);
      if (send_body && response.body.size() >= copy_body_below) stream.write_all(response.body, options.body_timeout);
    } catch (const Error&) {
      return;  // StreamClosed or TimeoutError: the client is gone or stuck
    } catch (const std::system_error&) {
      return;
    }
    if (close) {
      close_gracefully(stream);
      return;
    }
  }
}

HttpResponse HttpServer::Impl::run_handler(const HttpRequest& request, std::string& out, bool& close) {
  std::optional<Deadline> deadline;
  if (options.request_deadline > std::chrono::nanoseconds::zero()) deadline.emplace(options.request_deadline);
  bool cut_by_deadline = false;
  try {
    HttpResponse response = !options.dump_path.empty() && request.method == "GET" && request.path == options.dump_path
                                ? dump_response()
                                : handler(request);
    // Decided after the handler: stop() may have begun while it ran.
    const std::string* connection_header = response.headers.find("connection");
    close = close || stopping || (connection_header && has_token(*connection_header, "close"));
    serialize_head(out, response, close, request.version, options.server_header);
    return response;
  } catch (const boost::context::detail::forced_unwind&) {
    throw;  // Boost.Context unwinding this fiber's stack: must propagate
  } catch (const LoopClosed&) {
    throw;
  } catch (...) {
    cut_by_deadline = deadline && http_clock::now() >= deadline->when();
    const std::string where = "the HTTP handler for " + request.method + " " + request.path;
    // Through the anchor: a fiber orphaned by ~IOLoop may get here after the loop.
    if (IOLoop* alive = alive_on_this_thread(*anchor)) report_unhandled(*alive, std::current_exception(), where);
  }
  // The body names no detail of the failure: that went to the report.
  close = close || stopping;
  HttpResponse failure;
  failure.status = cut_by_deadline ? 504 : 500;
  failure.headers.add("Content-Type", "text/plain");
  failure.body.append(http_reason_phrase(failure.status)).push_back('\n');
  serialize_head(out, failure, close, request.version, options.server_header);
  return failure;
}

HttpResponse HttpServer::Impl::dump_response() const {
  HttpResponse response;
  response.headers.add("Content-Type", "text/plain; charset=utf-8");
  response.headers.add("Cache-Control", "no-store");
  if (IOLoop* loop = alive_on_this_thread(*anchor)) response.body = loop->dump();
  return response;
}

void HttpServer::Impl::reject(TcpStream& stream, std::string& out, int status) {
  HttpResponse response;
  response.status = status;
  response.headers.add("Content-Type", "text/plain");
  response.body.append(http_reason_phrase(status)).push_back('\n');
  serialize_head(out, response, true, 11, options.server_header);
  out.append(response.body);
  try {
    stream.write_all(out, std::chrono::seconds(5));
  } catch (const Error&) {
    stream.close();
    return;
  } catch (const std::system_error&) {
    stream.close();
    return;
  }
  close_gracefully(stream);
}

void HttpServer::Impl::close_gracefully(TcpStream& stream) noexcept {
  // Closing a socket with unread input makes the kernel send a reset, which can
  // destroy our response before the client reads it. So: send FIN, then read and
  // discard what the client still sends, for a bounded time, then close.
  ::shutdown(stream.fd(), SHUT_WR);
  char sink[4096];
  const auto deadline = http_clock::now() + std::chrono::seconds(1);
  std::size_t drained = 0;
  try {
    while (drained < (1u << 20)) {
      const auto left = deadline - http_clock::now();
      if (left <= std::chrono::nanoseconds::zero()) break;
      drained += stream.read_some(std::span<char>(sink, sizeof sink), left);
    }
  } catch (const Error&) {
    // EOF (the client closed too) or timeout.
  } catch (const std::system_error&) {
  } catch (const std::logic_error&) {
  }
  stream.close();
}

HttpServer::HttpServer(Handler handler, Options options, IOLoop& loop)
    : impl_(std::make_shared<Impl>(std::move(handler), std::move(options), loop)) {
  if (has_control(impl_->options.server_header))
    throw std::invalid_argument("HttpServer: server_header must not hold a control character (CR, LF...)");
  TcpServer::Options tcp_options;
  tcp_options.max_connections = impl_->options.max_connections;
  tcp_options.name = "http";
  // Refused at the cap: a 503 that tells the client to come back, then the close.
  HttpResponse busy;
  busy.status = 503;
  busy.headers.add("Content-Type", "text/plain");
  busy.body.append(http_reason_phrase(503)).push_back('\n');
  serialize_head(tcp_options.refusal, busy, true, 11, impl_->options.server_header);
  tcp_options.refusal.append(busy.body);
  std::weak_ptr<Impl> weak = impl_;
  impl_->tcp = std::make_unique<TcpServer>(
      [weak](TcpStream& stream) {
        if (auto impl = weak.lock()) impl->serve(stream);
      },
      tcp_options, loop);
}

HttpServer::~HttpServer() {
  if (!impl_) return;
  auto shut_down = [](Impl& impl) {
    impl.close_idle();
    impl.tcp.reset();  // connection fibers still running keep Impl alive
  };
  // Off the loop's thread, while the loop lives, the loop does it: the connections
  // are the loop's to touch. It shares the state until then.
  try {
    std::function<void()> shut_down_there = [impl = impl_, shut_down] { shut_down(*impl); };
    if (hand_to_loop_thread(*impl_->anchor, shut_down_there)) return;
  } catch (...) {
    // Out of memory: do it from here.
  }
  shut_down(*impl_);
}

std::uint16_t HttpServer::listen(std::uint16_t port, const std::string& host) { return impl_->tcp->listen(port, host); }

std::uint16_t HttpServer::port() const noexcept { return impl_->tcp->port(); }

void HttpServer::stop(std::chrono::nanoseconds grace) {
  impl_->close_idle();
  impl_->tcp->stop(grace);
}

Future<void> HttpServer::stop_async(std::chrono::nanoseconds grace) {
  impl_->close_idle();
  return impl_->tcp->stop_async(grace);
}

}  // namespace fiberloop
