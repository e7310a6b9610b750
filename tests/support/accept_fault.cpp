#include "support/accept_fault.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace {

std::atomic<int> g_fault_fd{-1};
std::atomic<int> g_fault_error{0};
std::atomic<int> g_failed_calls{0};

using Accept4 = int (*)(int, sockaddr*, socklen_t*, int);

Accept4 real_accept4() {
  // The next definition after this executable's: libc's, or a sanitizer's interceptor.
  static const auto real = reinterpret_cast<Accept4>(::dlsym(RTLD_NEXT, "accept4"));
  if (!real) {
    std::fprintf(stderr, "accept_fault: dlsym(RTLD_NEXT, \"accept4\") found nothing\n");
    std::abort();
  }
  return real;
}

}  // namespace

// Defined in the test executable, this accept4() is the one every caller in it gets,
// fiberloop's TcpServer included.
extern "C" int accept4(int fd, sockaddr* address, socklen_t* length, int flags) {
  if (fd >= 0 && fd == g_fault_fd.load(std::memory_order_acquire)) {
    g_failed_calls.fetch_add(1, std::memory_order_relaxed);
    errno = g_fault_error.load(std::memory_order_relaxed);
    return -1;
  }
  return real_accept4()(fd, address, length, flags);
}

namespace fiberloop::testing {

AcceptFault::AcceptFault(int listen_fd, int error) noexcept {
  real_accept4();  // resolved now, not inside a failing test's first accept
  g_failed_calls.store(0, std::memory_order_relaxed);
  g_fault_error.store(error, std::memory_order_relaxed);
  g_fault_fd.store(listen_fd, std::memory_order_release);
}

AcceptFault::~AcceptFault() { g_fault_fd.store(-1, std::memory_order_release); }

int AcceptFault::failed_calls() const noexcept { return g_failed_calls.load(std::memory_order_relaxed); }

int listening_fd_of_port(int port) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (const dirent* entry = ::readdir(dir)) {
    const int fd = std::atoi(entry->d_name);
    int listening = 0;
    socklen_t size = sizeof listening;
    if (entry->d_name[0] == '.' || ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening)
      continue;
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) continue;
    const int bound = address.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6&>(address).sin6_port)
                                                    : ntohs(reinterpret_cast<sockaddr_in&>(address).sin_port);
    if (bound == port) found = fd;
  }
  ::closedir(dir);
  return found;
}

}  // namespace fiberloop::testing
