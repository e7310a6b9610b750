#pragma once
// Test support for the TCP tests: plain blocking sockets the test drives by hand, to
// play the peer of a TcpStream, TcpServer or HttpClient.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fiberloop::testing {

/// A blocking listening socket on `host` (127.0.0.1 or ::1), port chosen by the kernel.
/// A connect() to it completes in the kernel, so accept() right after never blocks long.
struct RawListener {
  int fd = -1;
  std::uint16_t port = 0;

  /// backlog < 0: bound but not listening (connects to the port are refused).
  explicit RawListener(const std::string& host = "127.0.0.1", int backlog = 16) {
    const bool v6 = host.find(':') != std::string::npos;
    fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_storage addr{};
    socklen_t len;
    if (v6) {
      auto& a = reinterpret_cast<sockaddr_in6&>(addr);
      a.sin6_family = AF_INET6;
      ::inet_pton(AF_INET6, host.c_str(), &a.sin6_addr);
      len = sizeof a;
    } else {
      auto& a = reinterpret_cast<sockaddr_in&>(addr);
      a.sin_family = AF_INET;
      ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
      len = sizeof a;
    }
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        (backlog >= 0 && ::listen(fd, backlog) != 0))
      throw std::runtime_error("RawListener: cannot listen on " + host);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(v6 ? reinterpret_cast<sockaddr_in6&>(addr).sin6_port : reinterpret_cast<sockaddr_in&>(addr).sin_port);
  }
  ~RawListener() { close(); }
  RawListener(const RawListener&) = delete;
  RawListener& operator=(const RawListener&) = delete;

  int accept() const { return ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

/// A blocking socket connected to 127.0.0.1:`port` (the kernel completes the
/// handshake for a listening socket even while nobody accepts).
inline int connect_raw(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("connect_raw: cannot connect to port " + std::to_string(port));
  }
  return fd;
}

/// Sends all of `data` on the blocking socket `fd`.
inline void send_raw(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("send_raw: the peer is gone");
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

/// Reads from `fd` until `end` has arrived (returns all read), the peer closes, or
/// `timeout` passes (returns what came; with 0, what had come).
inline std::string receive_raw_until(int fd, std::string_view end, std::chrono::milliseconds timeout) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  std::string got;
  char chunk[4096];
  while (got.find(end) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - std::chrono::steady_clock::now());
    pollfd ready{fd, POLLIN, 0};
    if (::poll(&ready, 1, static_cast<int>(std::max<long long>(left.count(), 0))) == 0) break;
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n == 0) break;
    if (n > 0) got.append(chunk, static_cast<std::size_t>(n));
    else if (errno != EAGAIN && errno != EINTR) break;
  }
  return got;
}

/// True when the other end of `fd` closes within `timeout` (a FIN or a reset); what
/// it sends meanwhile is read and dropped.
inline bool closed_by_peer_within(int fd, std::chrono::milliseconds timeout) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  char sink[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - std::chrono::steady_clock::now());
    pollfd ready{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&ready, 1, static_cast<int>(left.count())) == 0) return false;
    const ssize_t n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
  }
}

}  // namespace fiberloop::testing
