// HttpClient: each fetch runs on a fiber of the client's loop; kept-alive
// connections wait in a per-host:port idle pool owned by that loop's thread.

#include <sys/socket.h>

#include <cerrno>
#include <mutex>
#include <system_error>
#include <unordered_map>
#include <vector>

#include <fiberloop/detail/loop_hooks.hpp>
#include <fiberloop/net/http_client.hpp>
#include <fiberloop/net/tcp_stream.hpp>

#include "http_read.hpp"

namespace fiberloop {

namespace {

using namespace detail;

struct Url {
  std::string host;         // without brackets for IPv6
  std::uint16_t port = 80;
  std::string target = "/";
  std::string authority;    // the Host header: host[:port]
  std::string key() const { return authority; }
  std::string text() const { return "http://" + authority + target; }
};

[[noreturn]] void bad_url(std::string_view url, const std::string& why) {
  throw Error("HttpClient: bad URL \"" + std::string(url.substr(0, 200)) + "\": " + why);
}

/// The target goes on the request line as it is: no byte may end or split that line.
void check_target(std::string_view url, std::string_view target) {
  for (const char c : target) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= ' ' || byte >= 0x7f)
      bad_url(url, "spaces, control characters or 8-bit bytes in the path; percent-encode them");
  }
}

Url parse_url(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) bad_url(url, "no scheme; write it as http://host[:port]/path");
  const std::string_view scheme = url.substr(0, scheme_end);
  if (http_iequals(scheme, "https"))
    bad_url(url, "https is not supported: HttpClient speaks plain http:// only (use a TLS-terminating proxy)");
  if (!http_iequals(scheme, "http")) bad_url(url, "only the http:// scheme is supported");
  std::string_view rest = url.substr(scheme_end + 3);
  if (const auto hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  const auto path_start = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, path_start);
  Url out;
  if (path_start != std::string_view::npos) {
    out.target.assign(rest.substr(path_start));
    if (out.target.front() == '?') out.target.insert(0, "/");
  }
  if (authority.find('@') != std::string_view::npos) bad_url(url, "user:password@ in URLs is not supported");
  std::string_view host = authority;
  std::string_view port;
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos) bad_url(url, "unclosed [ in an IPv6 address");
    if (close + 1 < host.size()) {
      if (host[close + 1] != ':') bad_url(url, "junk after the IPv6 address");
      port = host.substr(close + 2);
    }
    host = host.substr(1, close - 1);
  } else if (const auto colon = host.find(':'); colon != std::string_view::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  if (host.empty()) bad_url(url, "no host");
  check_target(url, out.target);
  if (!port.empty()) {
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || value > 65535) bad_url(url, "the port is not a number from 1 to 65535");
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) bad_url(url, "the port is not a number from 1 to 65535");
    out.port = static_cast<std::uint16_t>(value);
  }
  out.host.assign(host);
  out.authority.assign(authority);
  return out;
}

/// The URL a Location header points to, relative to `base`.
Url resolve(const Url& base, const std::string& location) {
  if (location.find("://") != std::string::npos) return parse_url(location);
  if (location.starts_with("//")) return parse_url("http:" + location);
  const std::string_view reference = std::string_view(location).substr(0, location.find('#'));  // never sent
  check_target(location, reference);
  Url out = base;
  if (reference.starts_with('/')) {
    out.target = reference;
  } else {
    const std::string path = base.target.substr(0, base.target.find('?'));
    out.target = path.substr(0, path.rfind('/') + 1).append(reference);
  }
  return out;
}

bool is_redirect(int status) noexcept {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/// Same scheme (always http here), host (any case) and port.
bool same_origin(const Url& a, const Url& b) noexcept { return a.port == b.port && http_iequals(a.host, b.host); }

/// Makes `headers` fit for the next hop of a redirect: credentials and an explicit
/// Host stay with their origin (as curl and browsers do), and headers describing a
/// body go when the body does.
void headers_for_redirect(HttpHeaders& headers, bool cross_origin, bool body_dropped) {
  if (cross_origin)
    for (const char* name : {"authorization", "proxy-authorization", "cookie", "host"}) headers.remove(name);
  if (body_dropped)
    for (const char* name : {"content-type", "content-encoding", "content-language", "content-location"})
      headers.remove(name);
}

std::chrono::nanoseconds left_until(http_clock::time_point deadline) {
  const auto left = time_left(deadline);
  if (left == std::chrono::nanoseconds::zero()) throw TimeoutError("HttpClient: request_timeout passed");
  return left;
}

/// True when the peer has not closed `fd` and sent nothing unasked.
bool looks_alive(int fd) noexcept {
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

struct HttpClient::Impl : std::enable_shared_from_this<HttpClient::Impl> {
  struct Connection {
    TcpStream stream;
    WireBuffer buffer;
    http_clock::time_point idle_since;
  };

  Impl(Options o, IOLoop& l) : options(o), loop(l), anchor(detail::loop_anchor(l)) {}

  HttpResponse fetch(const Url& first, const FetchOptions& fetch_options);
  HttpResponse exchange(const Url& url, const std::string& method, const HttpHeaders& headers, const std::string& body,
                        const FetchOptions& fetch_options, http_clock::time_point deadline);
  /// A pooled connection to `key` that is still open and silent, or nullptr.
  std::unique_ptr<Connection> take_idle(const std::string& key);
  void give_back(const std::string& key, std::unique_ptr<Connection> connection);
  /// Closes pooled connections idle longer than idle_timeout; runs on a timer while
  /// the pool is not empty, so idle sockets do not linger until the next fetch.
  void sweep();

  Options options;
  IOLoop& loop;
  std::shared_ptr<detail::LoopAnchor> anchor;  // says whether `loop` is still alive
  bool closed = false;
  bool sweep_scheduled = false;
  TimeoutHandle sweep_timer;
  std::unordered_map<std::string, std::vector<std::unique_ptr<Connection>>> idle;
};

HttpResponse HttpClient::Impl::fetch(const Url& first, const FetchOptions& fetch_options) {
  if (!is_token(fetch_options.method)) throw Error("HttpClient: bad HTTP method \"" + fetch_options.method + "\"");
  const auto deadline = deadline_after(fetch_options.request_timeout);
  Url url = first;
  std::string method = fetch_options.method;
  HttpHeaders headers = fetch_options.headers;
  std::string body = fetch_options.body;
  for (int hops = 0;; ++hops) {
    HttpResponse response;
    try {
      response = exchange(url, method, headers, body, fetch_options, deadline);
    } catch (const TimeoutError& e) {
      throw TimeoutError(std::string(e.what()) + " (" + method + " " + url.text() +
                         "; see FetchOptions::connect_timeout and request_timeout)");
    }
    if (!fetch_options.follow_redirects || !is_redirect(response.status)) return response;
    const std::string* location = response.headers.find("location");
    if (!location) return response;
    if (hops >= fetch_options.max_redirects)
      throw Error("HttpClient: more than " + std::to_string(fetch_options.max_redirects) + " redirects from " +
                  first.text() + "; raise FetchOptions::max_redirects if that is expected");
    Url next = resolve(url, *location);
    // As browsers (the Fetch standard): 303 makes anything but HEAD a GET; 301 and 302
    // make a POST a GET; 307 and 308 keep the method and the body.
    const bool to_get = (response.status == 303 && method != "HEAD" && method != "GET") ||
                        ((response.status == 301 || response.status == 302) && method == "POST");
    if (to_get) {
      method = "GET";
      body.clear();
    }
    headers_for_redirect(headers, !same_origin(url, next), to_get);
    url = std::move(next);
  }
}

HttpResponse HttpClient::Impl::exchange(const Url& url, const std::string& method, const HttpHeaders& headers,
                                        const std::string& body, const FetchOptions& fetch_options,
                                        http_clock::time_point deadline) {
  std::string request;
  request.reserve(256 + body.size());
  request.append(method).push_back(' ');
  request.append(url.target).append(" HTTP/1.1\r\n");
  if (!headers.find("host")) request.append("Host: ").append(url.authority).append("\r\n");
  if (!headers.find("user-agent")) request.append("User-Agent: fiberloop\r\n");
  append_fields(request, headers, {"content-length", "transfer-encoding"});
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    request.append("Content-Length: ");
    append_decimal(request, body.size());
    request.append("\r\n");
  }
  request.append("\r\n").append(body);

  const std::string where = url.text();
  ResponseExpectation expectation;
  expectation.method = method;
  expectation.where = where;
  expectation.max_body_bytes = fetch_options.max_body_bytes;
  // A request that may run twice: only these are retried after a stale pooled connection.
  const bool idempotent = method == "GET" || method == "HEAD";
  const std::string key = url.key();
  for (int attempt = 0;; ++attempt) {
    // The retry connects anew: another pooled connection may be just as stale.
    std::unique_ptr<Connection> connection = attempt == 0 ? take_idle(key) : nullptr;
    const bool may_retry = connection && idempotent;
    if (!connection) {
      connection = std::make_unique<Connection>();
      connection->stream =
          TcpStream::connect(url.host, url.port, std::min(fetch_options.connect_timeout, left_until(deadline)));
    }
    try {
      connection->stream.write_all(request, left_until(deadline));
    } catch (const StreamClosed&) {
      if (!may_retry) throw;
      continue;  // the server closed the pooled connection as we reused it
    } catch (const std::system_error&) {
      if (!may_retry) throw;
      continue;
    }
    HttpResponse response;
    const ResponseEnd end = read_response(connection->buffer, connection->stream, deadline, expectation, response);
    if (end == ResponseEnd::no_response) {
      if (may_retry) continue;
      throw StreamClosed("HttpClient: " + url.authority + " closed the connection without answering " + method + " " +
                         where);
    }
    // A server that timed out the idle connection as we reused it may say so first.
    if (may_retry && response.status == 408 && end != ResponseEnd::reusable) continue;
    if (end == ResponseEnd::reusable && connection->stream.buffered() == 0) give_back(key, std::move(connection));
    return response;
  }
}

std::unique_ptr<HttpClient::Impl::Connection> HttpClient::Impl::take_idle(const std::string& key) {
  const auto found = idle.find(key);
  if (found == idle.end()) return nullptr;
  auto& pool = found->second;
  const auto now = http_clock::now();
  while (!pool.empty()) {
    std::unique_ptr<Connection> connection = std::move(pool.back());
    pool.pop_back();
    if (now - connection->idle_since > options.idle_timeout) continue;  // dropped: closes it
    // Bytes nobody asked for (a 408 the server sent before closing) or an EOF: the
    // server is done with it, whatever the method.
    if (!connection->buffer.empty() || !looks_alive(connection->stream.fd())) continue;
    return connection;
  }
  return nullptr;
}

void HttpClient::Impl::give_back(const std::string& key, std::unique_ptr<Connection> connection) {
  if (closed || options.max_idle_per_host == 0) return;
  auto& pool = idle[key];
  if (pool.size() >= options.max_idle_per_host) pool.erase(pool.begin());  // the oldest
  connection->idle_since = http_clock::now();
  pool.push_back(std::move(connection));
  if (!sweep_scheduled) {
    sweep_scheduled = true;
    sweep_timer = loop.call_at(deadline_after(options.idle_timeout), [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->sweep();
    });
  }
}

void HttpClient::Impl::sweep() {
  sweep_scheduled = false;
  const auto now = http_clock::now();
  auto oldest = now;
  for (auto it = idle.begin(); it != idle.end();) {
    auto& pool = it->second;
    std::erase_if(pool, [&](const auto& c) { return now - c->idle_since >= options.idle_timeout; });
    for (const auto& c : pool) oldest = std::min(oldest, c->idle_since);
    it = pool.empty() ? idle.erase(it) : std::next(it);
  }
  if (idle.empty() || closed) return;
  sweep_scheduled = true;
  sweep_timer = loop.call_at(saturating_add(oldest, options.idle_timeout), [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->sweep();
  });
}

HttpClient::HttpClient(Options options, IOLoop& loop) : impl_(std::make_shared<Impl>(options, loop)) {}

HttpClient::~HttpClient() {
  impl_->closed = true;
  impl_->idle.clear();
  // Only the loop's thread may remove the sweep timer, and only while the loop lives;
  // elsewhere it stays, and finds the client gone when it runs.
  if (impl_->sweep_scheduled)
    if (IOLoop* loop = detail::alive_on_this_thread(*impl_->anchor)) loop->remove_timeout(impl_->sweep_timer);
}

Future<HttpResponse> HttpClient::fetch(const std::string& url, FetchOptions options) {
  Url parsed;
  try {
    parsed = parse_url(url);
  } catch (...) {
    return make_exceptional_future<HttpResponse>(std::current_exception());
  }
  auto run = [impl = impl_, parsed = std::move(parsed), options = std::move(options)] {
    return impl->fetch(parsed, options);
  };
  // The loop may be gone (a client outliving its loop), or die on its thread while
  // another thread hands it the fetch: reach it through its anchor.
  return detail::spawn_on_loop(*impl_->anchor, std::move(run), "HttpClient::fetch()");
}

}  // namespace fiberloop
