// TcpStream: try the syscall first; on EAGAIN register interest with the loop and
// suspend the fiber on a promise the fd handler completes.

#include <fiberloop/net/tcp_stream.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <utility>
#include <vector>

#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/detail/loop_hooks.hpp>
#include <fiberloop/detail/wait_label.hpp>
#include <fiberloop/future.hpp>
#include <fiberloop/thread_pool_executor.hpp>
#include <fiberloop/wait.hpp>

#include "resolve.hpp"
#include "socket_util.hpp"

namespace fiberloop {

using detail::throw_errno;
using Clock = std::chrono::steady_clock;

StreamClosed::StreamClosed(const std::string& what, std::string partial)
    : Error(what), partial_(std::make_shared<const std::string>(std::move(partial))) {}

const std::string& StreamClosed::partial() const noexcept { return *partial_; }

namespace {

/// A call's deadline, read from the clock only once the call has to wait.
class Deadline {
 public:
  explicit Deadline(TcpStream::Duration timeout) noexcept : timeout_(timeout) {}
  Clock::time_point at() {
    if (!at_) at_ = detail::deadline_after(timeout_);  // a huge timeout means "never", not overflow
    return *at_;
  }
  TcpStream::Duration timeout() const noexcept { return timeout_; }

 private:
  TcpStream::Duration timeout_;
  std::optional<Clock::time_point> at_;
};

constexpr std::size_t min_read_space = 4096;
constexpr std::size_t initial_buffer = 16 * 1024;

}  // namespace

struct TcpStream::Impl {
  IOLoop* loop;
  std::shared_ptr<detail::LoopAnchor> anchor;  // says whether `loop` is still alive
  int fd;
  Duration timeout = default_timeout;
  // fd has a handler on `loop`. Set and cleared on the loop's thread; another thread
  // closing the stream reads it to know whether the loop must do the closing.
  std::atomic<bool> registered{false};
  // A fiber of `loop` has used the stream: from then on another thread's close goes
  // through the loop even while no handler is registered (the fiber may be in a
  // send() on fd right now).
  std::atomic<bool> used_on_loop{false};
  Events interest = Events::none;  // what the handler currently listens for
  Promise<void>* read_waiter = nullptr;
  Promise<void>* write_waiter = nullptr;
  bool eof = false;  // the peer closed (or reset) its side
  // Read buffer: bytes [begin, end) of data are read from the socket, not yet returned.
  std::unique_ptr<char[]> data;
  std::size_t cap = 0, begin = 0, end = 0;

  Impl(IOLoop& l, int f) noexcept : loop(&l), anchor(detail::loop_anchor(l)), fd(f) {}
  ~Impl() { close(); }

  std::size_t avail() const noexcept { return end - begin; }

  std::string take(std::size_t n) {
    std::string out(data.get() + begin, n);
    consume(n);
    return out;
  }
  void consume(std::size_t n) noexcept {
    begin += n;
    if (begin == end) begin = end = 0;  // empty: start over at the front, no copy
  }
  /// Room for at least `want` more bytes after `end` (compacting before growing).
  void reserve(std::size_t want) {
    if (cap - end >= want) return;
    if (begin > 0) {
      std::memmove(data.get(), data.get() + begin, avail());
      end -= begin;
      begin = 0;
      if (cap - end >= want) return;
    }
    std::size_t new_cap = std::max<std::size_t>(cap ? cap * 2 : initial_buffer, end + want);
    auto bigger = std::make_unique_for_overwrite<char[]>(new_cap);
    if (end) std::memcpy(bigger.get(), data.get(), end);
    data = std::move(bigger);
    cap = new_cap;
  }

  void set_interest(Events wanted) {
    if (!registered.load(std::memory_order_relaxed)) {
      loop->add_handler(fd, wanted, [this](int, Events ev) { on_ready(ev); });
      registered.store(true, std::memory_order_relaxed);
    } else if (wanted != interest) {
      loop->update_handler(fd, wanted);
    }
    interest = wanted;
  }

  /// The loop saw `fd` ready. Wakes the waiting fibers; keeps the interest of a
  /// direction that had a waiter (it will likely wait again: no epoll_ctl then) and
  /// drops the rest, since a level-triggered fd nobody reads would wake the loop forever.
  void on_ready(Events ev) {
    const bool error = any(ev & Events::error);
    const Events keep = wake(read_waiter, Events::read, ev, error) | wake(write_waiter, Events::write, ev, error);
    if (error && keep == Events::none) {
      // ERR/HUP are reported whatever the interest: only removing the handler quiets them.
      loop->remove_handler(fd);
      interest = Events::none;
      // Last: from here another thread may close and free this stream itself.
      registered.store(false, std::memory_order_release);
      return;
    }
    if (keep == interest) return;
    loop->update_handler(fd, keep);
    interest = keep;
  }

  /// on_ready() for one direction: the interest to keep in it.
  Events wake(Promise<void>*& waiter, Events dir, Events ev, bool error) {
    if (!any(ev & dir) && !error) return interest & dir;  // not reported: unchanged
    if (!waiter) return Events::none;                      // reported, nobody waits: drop
    std::exchange(waiter, nullptr)->set_value();
    return dir;
  }

  /// Suspends the calling fiber until `fd` is ready for `dir` or close() runs.
  void wait(Events dir, Deadline& deadline, const char* what) {
    IOLoop* here = detail::current_fiber_loop();
    if (!here) return wait_thread(dir, deadline, what);
    // By anchor, not address: a destroyed loop's successor may live at its address.
    if (detail::loop_anchor(*here) != anchor)
      throw std::logic_error(std::string(what) +
                             ": the stream belongs to another IOLoop; use it only from fibers of its own loop");
    Promise<void>*& slot = dir == Events::read ? read_waiter : write_waiter;
    if (slot)
      throw std::logic_error(std::string(what) + ": another fiber is already " +
                             (dir == Events::read ? "reading from" : "writing to") +
                             " this stream; one reader and one writer at a time");
    Promise<void> promise;
    Future<void> ready = promise.get_future();
    set_interest(interest | dir);
    slot = &promise;
    bool woke = false;
    const detail::WaitLabel label(what, fd);
    try {
      woke = detail::wait_state(*detail::state_of(ready), deadline.at(), what);
    } catch (...) {
      if (slot == &promise) slot = nullptr;
      throw;
    }
    if (slot == &promise) slot = nullptr;
    if (!woke) detail::throw_timeout(what, deadline.timeout());
  }

  /// A thread that runs no loop: block it in poll().
  void wait_thread(Events dir, Deadline& deadline, const char* what) {
    pollfd p{fd, static_cast<short>(dir == Events::read ? POLLIN : POLLOUT), 0};
    for (;;) {
      const Clock::time_point now = Clock::now();
      // Compared first: `at - now` overflows for a deadline far in the past.
      if (deadline.at() <= now) detail::throw_timeout(what, deadline.timeout());
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline.at() - now);
      const int rc = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
      if (rc > 0) return;
      if (rc < 0 && errno != EINTR) throw_errno(what);
    }
  }

  /// Reads what the socket has into the buffer, waiting for it if need be.
  /// False when no more data will come (EOF, reset, or close()).
  bool fill(Deadline& deadline, const char* what) {
    reserve(min_read_space);
    for (;;) {
      if (fd < 0) return false;
      const ssize_t n = ::recv(fd, data.get() + end, cap - end, 0);
      if (n > 0) {
        end += static_cast<std::size_t>(n);
        return true;
      }
      if (n == 0) {
        eof = true;
        return false;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wait(Events::read, deadline, what);
      } else if (errno == ECONNRESET) {
        eof = true;
        return false;
      } else if (errno != EINTR) {
        throw_errno(what);
      }
    }
  }

  [[noreturn]] void throw_closed(const char* what, std::string partial) const {
    throw StreamClosed(std::string(what) + (fd < 0 ? ": the stream was closed" : ": the peer closed the connection"),
                       std::move(partial));
  }

  /// Closes the socket. On the loop's thread, or once the loop is gone, or when fd
  /// has no handler (TcpStream::close() sees to it).
  void close() noexcept {
    if (fd < 0) return;
    const bool had_handler = registered.load(std::memory_order_acquire);
    // A destroyed loop took its handlers with it: only a live one has ours.
    if (had_handler)
      if (IOLoop* alive = detail::alive_on_this_thread(*anchor)) alive->remove_handler(fd);
    interest = Events::none;
    ::close(fd);
    fd = -1;
    // Waiters wake and see fd < 0: their calls throw StreamClosed.
    if (read_waiter) std::exchange(read_waiter, nullptr)->set_value();
    if (write_waiter) std::exchange(write_waiter, nullptr)->set_value();
    // Last: another thread that sees it cleared may close the stream itself (a no-op now).
    if (had_handler) registered.store(false, std::memory_order_release);
  }

  /// Closes `impl`'s stream from a thread that is not its loop's (see the definition);
  /// false when the caller may close it itself.
  static bool hand_close_to_loop(const std::shared_ptr<Impl>& impl) noexcept;
  /// Every waiting call starts here: the loop thread outside a fiber may not wait.
  static Impl& usable(const std::shared_ptr<Impl>& impl, const char* what);
};

/// Off the loop's thread, a stream that a fiber of its live loop uses (or whose fd has
/// a handler there) is closed by the loop: the handler may be running there now, and
/// only the loop's thread may remove it (a socket closed without that would leave the
/// fd's number taken on the loop); and a fiber may be in a send() on the fd, which a
/// close here could hand to the next accepted socket. The callback shares the
/// stream's state until it has closed it. Returns false when the caller may close the
/// stream itself: on the loop's thread, once the loop is gone, or for a stream no
/// fiber of the loop has used.
bool TcpStream::Impl::hand_close_to_loop(const std::shared_ptr<Impl>& impl) noexcept {
  if (!impl->registered.load(std::memory_order_acquire) && !impl->used_on_loop.load(std::memory_order_acquire))
    return false;
  try {
    // Dropped unrun (the loop is being destroyed), the callback's reference may be
    // the last: the state is then freed on the loop's thread, with the loop gone.
    std::function<void()> close_there = [impl] { impl->close(); };
    return detail::hand_to_loop_thread(*impl->anchor, close_there);
  } catch (...) {
    // Out of memory. Freeing the state here would do what this function prevents:
    // leak a reference instead (the socket stays open), and say so.
    alignas(std::shared_ptr<Impl>) unsigned char cell[sizeof(std::shared_ptr<Impl>)];
    ::new (static_cast<void*>(cell)) std::shared_ptr<Impl>(impl);  // never destroyed
    std::fprintf(stderr, "fiberloop: out of memory handing a TcpStream's close to its loop; the socket leaks\n");
    return true;
  }
}

/// Every waiting call starts here: the loop thread outside a fiber may not wait.
TcpStream::Impl& TcpStream::Impl::usable(const std::shared_ptr<Impl>& impl, const char* what) {
  const bool in_fiber = detail::current_fiber_loop() != nullptr;
  if (!in_fiber) detail::forbid_on_loop_thread(what);
  if (!impl || impl->fd < 0) throw StreamClosed(std::string(what) + ": the stream is closed");
  // (A fiber of another loop is refused by wait(), should the call have to wait.)
  if (in_fiber && !impl->used_on_loop.load(std::memory_order_relaxed))
    impl->used_on_loop.store(true, std::memory_order_release);
  return *impl;
}

TcpStream::TcpStream() noexcept = default;

TcpStream::TcpStream(int fd, IOLoop& loop) {
  if (fd < 0) throw std::invalid_argument("TcpStream(fd): fd must be an open socket, got " + std::to_string(fd));
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || (!(flags & O_NONBLOCK) && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0))
    throw_errno("TcpStream(fd): making the socket non-blocking");
  impl_ = std::make_shared<Impl>(loop, fd);
}

TcpStream::TcpStream(TcpStream&&) noexcept = default;

TcpStream& TcpStream::operator=(TcpStream&& other) noexcept {
  if (this != &other) {
    close();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

TcpStream::~TcpStream() { close(); }

TcpStream TcpStream::connect(const std::string& host, std::uint16_t port, Duration timeout) {
  static constexpr const char* what = "TcpStream::connect()";
  IOLoop* here = detail::current_fiber_loop();
  if (!here) detail::forbid_on_loop_thread(what);
  const std::string target = host + ":" + std::to_string(port);
  Deadline deadline(timeout);
  deadline.at();

  std::vector<detail::ResolvedAddress> addresses;
  socklen_t length = 0;
  if (auto numeric = detail::numeric_address(host, port, length)) {
    addresses.push_back({*numeric, length});
  } else {
    auto resolve = [host, port] { return detail::resolve(host, port, "TcpStream::connect()"); };
    if (here) {
      try {
        addresses = wait_for_future(here->blocking_executor().submit(resolve), timeout);
      } catch (const TimeoutError&) {
        detail::throw_timeout("TcpStream::connect(): resolving the host name", timeout);
      }
    } else {
      addresses = resolve();
    }
  }

  int last_error = EHOSTUNREACH;
  for (const detail::ResolvedAddress& a : addresses) {
    const int fd = ::socket(a.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_error = errno;
      continue;
    }
    TcpStream stream(fd, here ? *here : IOLoop::current());
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&a.address), a.length);
    int err = rc == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      try {
        stream.impl_->wait(Events::write, deadline, what);
      } catch (const TimeoutError&) {
        detail::throw_timeout(("TcpStream::connect(" + target + ")").c_str(), timeout);
      }
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
    if (err == 0) {
      stream.set_nodelay(true);
      return stream;
    }
    last_error = err;
  }
  throw std::system_error(last_error, std::generic_category(), "TcpStream::connect(" + target + ")");
}

std::size_t TcpStream::read_some(std::span<char> buffer) { return read_some(buffer, timeout()); }

std::size_t TcpStream::read_some(std::span<char> buffer, Duration timeout) {
  static constexpr const char* what = "TcpStream::read_some()";
  Impl& s = Impl::usable(impl_, what);
  if (buffer.empty()) return 0;
  if (s.avail()) {
    const std::size_t n = std::min(buffer.size(), s.avail());
    std::memcpy(buffer.data(), s.data.get() + s.begin, n);
    s.consume(n);
    return n;
  }
  if (s.eof) s.throw_closed(what, {});
  Deadline deadline(timeout);
  for (;;) {  // straight into the caller's buffer: no copy
    if (s.fd < 0) s.throw_closed(what, {});
    const ssize_t n = ::recv(s.fd, buffer.data(), buffer.size(), 0);
    if (n > 0) return static_cast<std::size_t>(n);
    if (n == 0 || errno == ECONNRESET) {
      s.eof = true;
      s.throw_closed(what, {});
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      s.wait(Events::read, deadline, what);
    } else if (errno != EINTR) {
      throw_errno(what);
    }
  }
}

std::string TcpStream::read_exactly(std::size_t n) { return read_exactly(n, timeout()); }

std::string TcpStream::read_exactly(std::size_t n, Duration timeout) {
  static constexpr const char* what = "TcpStream::read_exactly()";
  Impl& s = Impl::usable(impl_, what);
  Deadline deadline(timeout);
  while (s.avail() < n) {
    s.reserve(n - s.avail());
    if (s.eof || !s.fill(deadline, what)) s.throw_closed(what, s.take(s.avail()));
  }
  return s.take(n);
}

std::string TcpStream::read_until(std::string_view delimiter, std::size_t max_bytes) {
  return read_until(delimiter, max_bytes, timeout());
}

std::string TcpStream::read_until(std::string_view delimiter, std::size_t max_bytes, Duration timeout) {
  static constexpr const char* what = "TcpStream::read_until()";
  Impl& s = Impl::usable(impl_, what);
  if (delimiter.empty()) throw std::invalid_argument("TcpStream::read_until(): the delimiter must not be empty");
  Deadline deadline(timeout);
  std::size_t scanned = 0;  // a match cannot start before this offset: scan only new bytes
  for (;;) {
    const std::size_t window = std::min(s.avail(), max_bytes);
    if (window >= delimiter.size()) {
      const std::string_view text(s.data.get() + s.begin, window);
      const std::size_t at = text.find(delimiter, scanned);
      if (at != std::string_view::npos) return s.take(at + delimiter.size());
      scanned = window - delimiter.size() + 1;
    }
    if (s.avail() >= max_bytes)
      throw Error(std::string(what) + ": delimiter not found within max_bytes (" + std::to_string(max_bytes) +
                  "); the bytes stay buffered: raise max_bytes or treat the input as malformed");
    if (s.eof || !s.fill(deadline, what)) s.throw_closed(what, s.take(s.avail()));
  }
}

void TcpStream::write_all(std::string_view data) { write_all(data, timeout()); }

void TcpStream::write_all(std::string_view data, Duration timeout) {
  static constexpr const char* what = "TcpStream::write_all()";
  Impl& s = Impl::usable(impl_, what);
  Deadline deadline(timeout);
  while (!data.empty()) {
    if (s.fd < 0) s.throw_closed(what, {});
    const ssize_t n = ::send(s.fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      s.wait(Events::write, deadline, what);
    } else if (errno == EPIPE || errno == ECONNRESET) {
      throw StreamClosed(std::string(what) + ": the peer closed the connection");
    } else if (errno != EINTR) {
      throw_errno(what);
    }
  }
}

void TcpStream::close() noexcept {
  if (impl_ && !Impl::hand_close_to_loop(impl_)) impl_->close();
}

bool TcpStream::is_open() const noexcept { return impl_ && impl_->fd >= 0; }
int TcpStream::fd() const noexcept { return impl_ ? impl_->fd : -1; }

void TcpStream::set_timeout(Duration timeout) noexcept {
  if (impl_) impl_->timeout = timeout;
}

TcpStream::Duration TcpStream::timeout() const noexcept { return impl_ ? impl_->timeout : default_timeout; }

void TcpStream::set_nodelay(bool on) {
  if (!is_open()) throw StreamClosed("TcpStream::set_nodelay(): the stream is closed");
  detail::set_int_option(impl_->fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0, "TcpStream::set_nodelay()");
}

void TcpStream::set_keepalive(bool on) {
  if (!is_open()) throw StreamClosed("TcpStream::set_keepalive(): the stream is closed");
  detail::set_int_option(impl_->fd, SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0, "TcpStream::set_keepalive()");
}

std::size_t TcpStream::buffered() const noexcept { return impl_ ? impl_->avail() : 0; }

std::string TcpStream::peer_address() const {
  if (!is_open()) return {};
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(impl_->fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {};  // e.g. already reset
  return detail::format_address(addr);
}

std::string TcpStream::local_address() const {
  if (!is_open()) return {};
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(impl_->fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {};
  return detail::format_address(addr);
}

}  // namespace fiberloop
