#include "blocking_server.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "../middle/service.hpp"
#include "../support/fd_stream.hpp"

namespace legacy {
namespace http = boost::beast::http;
namespace {

[[noreturn]] void throw_errno(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

// As HttpServer's defaults, so every variant treats idle and slow clients alike.
constexpr std::chrono::milliseconds keep_alive_timeout{60'000};
constexpr std::chrono::milliseconds send_timeout{30'000};

void send_reply(FdStream& stream, int status, std::string content_type, std::string body, bool keep_alive,
                unsigned version, boost::beast::error_code& ec) {
  http::response<http::string_body> response{static_cast<http::status>(status), 11};
  response.set(http::field::server, server_header);
  response.set(http::field::content_type, std::move(content_type));
  response.body() = std::move(body);
  response.prepare_payload();
  // HTTP/1.0 clients need "Connection: keep-alive" to keep it; 1.1 ones need "close" to end it.
  response.keep_alive(keep_alive);
  if (keep_alive && version == 10) response.set(http::field::connection, "keep-alive");
  http::write(stream, response, ec);
}

}  // namespace

int listen_tcp(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found); rc != 0)
    throw std::runtime_error("cannot listen on " + host + ": " + ::gai_strerror(rc));
  const int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(found);
    throw_errno("socket");
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const int rc = ::bind(fd, found->ai_addr, found->ai_addrlen);
  ::freeaddrinfo(found);
  if (rc != 0 || ::listen(fd, SOMAXCONN) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "listen on " + host + ":" + std::to_string(port));
  }
  return fd;
}

std::uint16_t bound_port(int fd) {
  sockaddr_storage address{};
  socklen_t len = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &len) != 0) throw_errno("getsockname");
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
}

int accept_or_stop(int listen_fd, int signal_fd) {
  for (;;) {
    pollfd fds[2] = {{listen_fd, POLLIN, 0}, {signal_fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll");
    }
    if (fds[1].revents != 0) return -1;
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      set_socket_timeouts(fd, keep_alive_timeout, send_timeout);
      return fd;
    }
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      // The pending connection stays readable: pause (still watching the signal).
      pollfd sig{signal_fd, POLLIN, 0};
      if (::poll(&sig, 1, 100) > 0) return -1;
    }
    // ECONNABORTED, EINTR...: that connection is gone; go on.
  }
}

void serve_connection(int fd) {
  FdStream stream(fd);
  boost::beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(1024 * 1024);
    boost::beast::error_code ec;
    http::read(stream, buffer, parser, ec);
    if (ec == http::error::end_of_stream || ec == boost::asio::error::timed_out ||
        ec == boost::asio::error::connection_reset)
      return;
    if (ec) {
      // Garbage or too large: say so once and close.
      send_reply(stream, 400, "text/plain", "Bad Request\n", false, 11, ec);
      return;
    }
    const http::request<http::string_body>& request = parser.get();
    const Reply reply = handle_request({std::string(request.method_string()), std::string(request.target())});
    const bool keep_alive = request.keep_alive();
    send_reply(stream, reply.status, reply.content_type, reply.body, keep_alive, request.version(), ec);
    if (ec || !keep_alive) return;
  }
}

bool Connections::add(int fd) {
  std::lock_guard lock(mutex_);
  if (stopping_) {
    ::close(fd);
    return false;
  }
  live_.insert(fd);
  return true;
}

void Connections::serve(int fd) noexcept {
  try {
    serve_connection(fd);
  } catch (const std::exception&) {
    // Out of memory in this connection: drop it, keep serving the others.
  }
  drop(fd);
}

void Connections::refuse(int fd) noexcept {
  try {
    FdStream stream(fd);
    boost::beast::error_code ec;
    send_reply(stream, 503, "text/plain", "Service Unavailable\n", false, 11, ec);
  } catch (const std::exception&) {  // out of memory: just close
  }
  drop(fd);
}

void Connections::drop(int fd) noexcept {
  std::lock_guard lock(mutex_);
  live_.erase(fd);
  // Closed under the lock: shut_down_all() never touches a reused descriptor number.
  ::close(fd);
  if (live_.empty()) idle_.notify_all();
}

void Connections::shut_down_all() {
  std::lock_guard lock(mutex_);
  stopping_ = true;
  for (const int fd : live_) ::shutdown(fd, SHUT_RDWR);
}

bool Connections::wait_idle(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex_);
  return idle_.wait_for(lock, limit, [&] { return live_.empty(); });
}

}  // namespace legacy
