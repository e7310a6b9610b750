#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "thread_wakeup.hpp"

namespace fiberloop::detail {

ThreadWakeup::ThreadWakeup() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "fiberloop: eventfd() for the loop wakeup");
}

ThreadWakeup::~ThreadWakeup() { ::close(fd_); }

const std::shared_ptr<ThreadWakeup>& ThreadWakeup::for_this_thread() {
  // Shared, because the fiber scheduler and loops may outlive this thread_local
  // during thread exit.
  thread_local const std::shared_ptr<ThreadWakeup> wakeup = std::make_shared<ThreadWakeup>();
  return wakeup;
}

void ThreadWakeup::signal() noexcept {
  const std::uint64_t one = 1;
  // EAGAIN means the counter is saturated: the thread will wake anyway.
  [[maybe_unused]] ssize_t n = ::write(fd_, &one, sizeof one);
}

void ThreadWakeup::drain() noexcept {
  std::uint64_t count;
  while (::read(fd_, &count, sizeof count) > 0) {
  }
}

void ThreadWakeup::sleep_until(std::chrono::steady_clock::time_point deadline) noexcept {
  using namespace std::chrono;
  int timeout_ms = -1;
  if (deadline != steady_clock::time_point::max()) {
    auto left = ceil<milliseconds>(deadline - steady_clock::now()).count();
    timeout_ms = left <= 0 ? 0 : left > 1'000'000 ? 1'000'000 : static_cast<int>(left);
  }
  pollfd p{fd_, POLLIN, 0};
  ::poll(&p, 1, timeout_ms);
  drain();
}

}  // namespace fiberloop::detail
