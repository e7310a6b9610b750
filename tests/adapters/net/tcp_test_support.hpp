#pragma once
// Test support for the TCP tests: a plain listening socket the test accepts from by hand.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>

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

}  // namespace fiberloop::testing
