#include "net/resolve.hpp"

#include <netdb.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <fiberloop/errors.hpp>

namespace fiberloop::detail {

std::vector<ResolvedAddress> resolve(const std::string& host, std::uint16_t port, const std::string& what) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* found = nullptr;
  errno = 0;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  const int resolver_errno = errno;
  // Out of descriptors the resolver cannot even read /etc/hosts and answers "not
  // known": say what really failed, as a socket() would.
  if (rc != 0 && (resolver_errno == EMFILE || resolver_errno == ENFILE || (rc == EAI_SYSTEM && resolver_errno != 0)))
    throw std::system_error(resolver_errno, std::generic_category(), what + ": resolving host '" + host + "'");
  if (rc != 0)
    throw Error(what + ": cannot resolve host '" + host + "': " + ::gai_strerror(rc) +
                " (check the name, or pass a numeric address)");
  std::vector<ResolvedAddress> out;
  for (addrinfo* ai = found; ai; ai = ai->ai_next) {
    ResolvedAddress a{};
    std::memcpy(&a.address, ai->ai_addr, std::min<std::size_t>(ai->ai_addrlen, sizeof a.address));
    a.length = ai->ai_addrlen;
    out.push_back(a);
  }
  ::freeaddrinfo(found);
  return out;
}

}  // namespace fiberloop::detail
