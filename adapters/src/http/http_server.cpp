// HttpServer: one fiber per connection (TcpServer's), requests served in order.

#include <sys/socket.h>

#include <boost/context/detail/exception.hpp>

#include <list>
#include <system_error>

#include <fiberloop/detail/loop_hooks.hpp>
#include <fiberloop/net/http_server.hpp>
#include <fiberloop/net/tcp_server.hpp>
#include <fiberloop/net/tcp_stream.hpp>
#include <fiberloop/wait.hpp>

#include "http_wire.hpp"

namespace fiberloop {

namespace {

using namespace detail;

/// The status for a request Beast refused; `line` is the unparsed input, starting at
/// the request line (Beast consumes a header only once it is complete and valid).
int status_for(const error_code& ec, std::string_view line) noexcept {
  if (ec == beast_http::error::header_limit) return 431;
  if (ec == beast_http::error::body_limit) return 413;
  if (ec == beast_http::error::bad_version) {
    // "METHOD target HTTP/<anything but 1.0 or 1.1>" is a version we do not speak
    // (505); a request line of another shape is malformed (400).
    line = line.substr(0, line.find_first_of("\r\n"));
    const auto first = line.find(' ');
    const auto last = line.rfind(' ');
    if (first != last && line.find(' ', first + 1) == last && line.substr(last + 1).starts_with("HTTP/")) return 505;
  }
  return 400;  // bad request line, field, value, chunk, content length...
}

void clear_request(HttpRequest& request) noexcept {
  // clear() keeps the strings' memory for the next request on this connection.
  request.method.clear();
  request.target.clear();
  request.path.clear();
  request.query.clear();
  request.version = 11;
  request.headers.fields.clear();
  request.body.clear();
}

void split_target(HttpRequest& request) {
  const auto mark = request.target.find('?');
  request.path.assign(request.target, 0, mark);
  if (mark != std::string::npos) request.query.assign(request.target, mark + 1);
}

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
    if (response.reason.find_first_of("\r\n") != std::string::npos)
      throw Error("HTTP handler returned a reason phrase with CR or LF");
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
      : handler(std::move(h)), options(std::move(o)), loop(l), anchor(loop_anchor(l)) {}

  void serve(TcpStream& stream);
  void close_idle() noexcept {
    stopping = true;
    for (auto& connection : connections)
      if (connection.idle) connection.stream->close();
  }
  /// Runs the handler and serialises the response head into `out`; `close` comes in
  /// as "the request asked to close" and goes out as "close after this response".
  HttpResponse run_handler(const HttpRequest& request, std::string& out, bool& close);
  void reject(TcpStream& stream, std::string& out, int status);
  static void close_gracefully(TcpStream& stream) noexcept;

  Handler handler;
  Options options;
  IOLoop& loop;
  std::shared_ptr<LoopAnchor> anchor;  // says whether `loop` is still alive
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
  const auto header_limit = static_cast<std::uint32_t>(
      std::min<std::size_t>(options.max_header_bytes, std::numeric_limits<std::uint32_t>::max()));
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
    const auto header_deadline = (first ? waiting_since : http_clock::now()) + options.header_timeout;
    first = false;

    clear_request(request);
    MessageParser<true> parser(request);
    parser.header_limit(header_limit);
    parser.body_limit(options.max_body_bytes);
    int error_status = 0;
    bool keep_alive = false;
    try {
      error_code ec = feed(parser, buffer, stream, header_deadline, ParseUntil::header);
      if (ec) {
        error_status = status_for(ec, buffer.pending());
      } else if (request.version != 10 && request.version != 11) {
        error_status = 505;  // Beast refuses these itself; kept in case it stops doing so
      } else if (request.version == 11 && !request.headers.find("host")) {
        error_status = 400;  // RFC 9112 3.2: a 1.1 request without Host
      } else {
        keep_alive = parser.keep_alive();
        if (!parser.is_done()) {
          const std::string* expect = request.headers.find("expect");
          if (expect && request.version == 11 && buffer.empty() && has_token(*expect, "100-continue"))
            stream.write_all("HTTP/1.1 100 Continue\r\n\r\n", options.body_timeout);
          parser.eager(true);
          ec = feed(parser, buffer, stream, http_clock::now() + options.body_timeout, ParseUntil::message);
          if (ec) error_status = status_for(ec, {});
        }
      }
    } catch (const TimeoutError&) {
      error_status = 408;
    } catch (const StreamClosed&) {
      return;
    } catch (const std::system_error&) {
      return;
    }
    if (error_status != 0) {
      reject(stream, out, error_status);
      return;
    }

    split_target(request);
    request.remote_address = remote;
    bool close = !keep_alive;
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
  try {
    HttpResponse response = handler(request);
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
    const std::string where = "the HTTP handler for " + request.method + " " + request.path;
    report_unhandled(loop, std::current_exception(), where);
  }
  // The body names no detail of the failure: that went to the report.
  close = close || stopping;
  HttpResponse failure;
  failure.status = 500;
  failure.headers.add("Content-Type", "text/plain");
  failure.body = "Internal Server Error\n";
  serialize_head(out, failure, close, request.version, options.server_header);
  return failure;
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
  TcpServer::Options tcp_options;
  tcp_options.max_connections = impl_->options.max_connections;
  tcp_options.name = "http";
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
