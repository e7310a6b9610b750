#pragma once
// Host name resolution, shared by TcpStream::connect and the MariaDB driver. It blocks
// (getaddrinfo): callers run it on a blocking pool. Internal.

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fiberloop::detail {

struct ResolvedAddress {
  sockaddr_storage address;
  socklen_t length;
};

/// The TCP addresses of `host` (a name or a numeric address) with `port`, in
/// getaddrinfo's order. Throws Error("WHAT: cannot resolve host ...") for a name that
/// does not resolve, std::system_error when the resolver itself failed (out of
/// descriptors, say). Thread: any; blocks.
std::vector<ResolvedAddress> resolve(const std::string& host, std::uint16_t port, const std::string& what);

}  // namespace fiberloop::detail
