#pragma once
// Small socket helpers shared by TcpStream and TcpServer. Internal.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>

namespace fiberloop::detail {

/// Throws std::system_error for the current errno, naming the call that failed.
[[noreturn]] inline void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

inline void set_int_option(int fd, int level, int name, int value, const char* what) {
  if (::setsockopt(fd, level, name, &value, sizeof value) != 0) throw_errno(what);
}

/// "127.0.0.1:80" / "[::1]:80"; empty for an address family we do not format.
inline std::string format_address(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(addr);
    ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(in.sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(addr);
    ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    std::string out = "[";  // built by append: GCC 12 -Wrestrict misfires on "[" + std::string
    out.append(text).append("]:").append(std::to_string(ntohs(in6.sin6_port)));
    return out;
  }
  return {};
}

/// A numeric IPv4/IPv6 address (brackets allowed around IPv6) with `port`, or nothing
/// when `host` is a name that needs resolving.
inline std::optional<sockaddr_storage> numeric_address(std::string host, std::uint16_t port, socklen_t& length) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  sockaddr_storage addr{};
  auto& in = reinterpret_cast<sockaddr_in&>(addr);
  if (::inet_pton(AF_INET, host.c_str(), &in.sin_addr) == 1) {
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    length = sizeof(sockaddr_in);
    return addr;
  }
  auto& in6 = reinterpret_cast<sockaddr_in6&>(addr);
  if (::inet_pton(AF_INET6, host.c_str(), &in6.sin6_addr) == 1) {
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    length = sizeof(sockaddr_in6);
    return addr;
  }
  return std::nullopt;
}

}  // namespace fiberloop::detail
