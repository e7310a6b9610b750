// TcpServer: a level-triggered accept handler that stops listening (removes itself)
// while backing off after EMFILE, refuses connections past the cap, and runs a fiber
// per connection.

#include <fiberloop/net/tcp_server.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <list>
#include <utility>

#include <boost/context/detail/exception.hpp>

#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/detail/loop_hooks.hpp>
#include <fiberloop/wait.hpp>

#include "socket_util.hpp"

namespace fiberloop {

namespace {
constexpr int max_accepts_per_wakeup = 64;  // bounds one iteration; the rest waits for the next

/// Closes a connection refused at the cap, after `refusal` if the socket takes it now.
void refuse(int fd, const std::string& refusal) noexcept {
  if (!refusal.empty()) (void)::send(fd, refusal.data(), refusal.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  // Closing with unread input sends a reset, which can destroy the refusal before the
  // client reads it: drop what has arrived already (later input may still reset).
  ::shutdown(fd, SHUT_WR);
  char sink[1024];
  for (int i = 0; i < 4 && ::recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
  }
  ::close(fd);
}
}  // namespace

std::size_t default_max_connections() noexcept {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  // Unlimited still ends at the kernel's nr_open (2^20 by default).
  const std::size_t soft =
      limit.rlim_cur == RLIM_INFINITY ? std::size_t{1} << 20 : static_cast<std::size_t>(limit.rlim_cur);
  const std::size_t reserve = std::clamp<std::size_t>(soft / 4, 16, 1024);
  return soft > reserve ? soft - reserve : 1;
}

struct TcpServer::State : std::enable_shared_from_this<State> {
  IOLoop* loop;
  std::shared_ptr<detail::LoopAnchor> anchor;  // says whether `loop` is still alive
  Handler handler;
  Options options;
  int listen_fd = -1;
  std::uint16_t port = 0;
  bool watching = false;   // listen_fd has a read handler on the loop
  bool backing_off = false;
  bool stopping = false;
  bool force_closed = false;  // grace over (or server destroyed): close every stream
  TimeoutHandle backoff_timer;
  TimeoutHandle grace_timer;
  std::size_t live = 0;  // connections accepted whose fiber has not ended
  std::size_t accept_attempts = 0;
  std::list<TcpStream*> streams;  // streams of running handlers, for the forced close
  std::optional<Promise<void>> stopped;
  Future<void> stopped_future;

  State(Handler h, Options o, IOLoop& l)
      : loop(&l), anchor(detail::loop_anchor(l)), handler(std::move(h)), options(std::move(o)) {}

  /// The loop, if alive; null once it is gone. Throws std::logic_error on another
  /// thread than the loop's (the server's state lives there).
  IOLoop* loop_here(const char* what) const {
    std::lock_guard lock(anchor->lock);
    if (anchor->loop && !detail::on_loop_thread(*anchor->loop))
      throw std::logic_error(std::string("TcpServer::") + what +
                             "() called from a thread that does not own the server's IOLoop; hand it to the loop "
                             "with IOLoop::add_callback()");
    return anchor->loop;
  }

  bool may_accept() const noexcept { return listen_fd >= 0 && !stopping && !backing_off; }

  bool at_cap() const noexcept { return options.max_connections != 0 && live >= options.max_connections; }

  /// Watches the listening socket exactly when accepting is allowed; otherwise new
  /// connections wait in the kernel backlog instead of waking the loop.
  void update_watch() {
    const bool want = may_accept();
    if (want == watching) return;
    if (want) {
      loop->add_handler(listen_fd, Events::read, [this](int, Events) { accept_ready(); });
    } else {
      loop->remove_handler(listen_fd);
    }
    watching = want;
  }

  void accept_ready() {
    for (int i = 0; i < max_accepts_per_wakeup && may_accept(); ++i) {
      ++accept_attempts;
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        // At the cap: refused at once rather than left in the backlog, where a flood
        // of idle connections would starve every newcomer unseen.
        if (at_cap()) {
          refuse(fd, options.refusal);
        } else {
          start_connection(fd);
        }
        continue;
      }
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // The pending connection stays readable: without a pause the loop would spin.
        backing_off = true;
        std::weak_ptr<State> weak = weak_from_this();
        backoff_timer = loop->call_at(detail::deadline_after(options.accept_backoff), [weak] {
          if (auto self = weak.lock()) {
            self->backing_off = false;
            self->update_watch();
          }
        });
        break;
      }
      // ECONNABORTED, EPROTO, EINTR...: that one connection is gone; go on.
    }
    update_watch();
  }

  void start_connection(int fd) {
    ++live;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // best effort
    auto self = shared_from_this();
    try {
      (void)loop->spawn([self, fd] { self->run_connection(fd); });  // run_connection reports its own errors
    } catch (...) {
      ::close(fd);
      connection_ended();
      report_error(std::current_exception());
    }
  }

  /// The loop on this thread while it exists (being destroyed included), else null:
  /// a connection's fiber orphaned by ~IOLoop (blocked on a Boost.Fiber primitive)
  /// may end long after its loop.
  IOLoop* live_loop() const noexcept { return detail::alive_on_this_thread(*anchor); }

  void report_error(std::exception_ptr error) noexcept {
    if (IOLoop* alive = live_loop()) detail::report_unhandled(*alive, std::move(error), options.name + " server");
  }

  void run_connection(int fd) {
    struct Ended {  // runs however the fiber leaves (LoopClosed unwinding included)
      State& s;
      ~Ended() { s.connection_ended(); }
    } ended{*this};
    TcpStream stream(fd, *loop);
    if (force_closed) return;
    struct Listed {  // however the fiber leaves, close_all() must not see the stream
      std::list<TcpStream*>& streams;
      std::list<TcpStream*>::iterator entry;
      ~Listed() { streams.erase(entry); }
    } listed{streams, streams.insert(streams.end(), &stream)};
    try {
      handler(stream);
    } catch (const boost::context::detail::forced_unwind&) {
      throw;  // Boost.Context unwinding this fiber's stack: must propagate
    } catch (const LoopClosed&) {
      // The loop is going away: nothing to report.
    } catch (const StreamClosed&) {
      // The peer left or stop() closed the stream: the normal end of a connection.
    } catch (...) {
      if (IOLoop* alive = live_loop(); alive && !detail::loop_closing(*alive))
        detail::report_unhandled(*alive, std::current_exception(), options.name + " connection handler");
    }
  }

  void connection_ended() noexcept {
    --live;
    if (!live_loop()) return;  // the loop took the listening handler and timers with it
    if (stopping) {
      if (live == 0) finish_stop();
      return;
    }
    try {
      update_watch();
    } catch (...) {
      report_error(std::current_exception());
    }
  }

  /// On the loop's thread, or once the loop is gone (it took its handlers and
  /// timeouts with it).
  void stop_accepting() noexcept {
    stopping = true;
    IOLoop* alive = detail::alive_on_this_thread(*anchor);
    if (watching && alive) alive->remove_handler(listen_fd);
    watching = false;
    if (backing_off && alive) alive->remove_timeout(backoff_timer);
    backing_off = false;
    if (listen_fd >= 0) ::close(listen_fd);
    listen_fd = -1;
  }

  /// Stops the server for good: no more accepting, every connection's stream closed.
  void shut_down() noexcept {
    if (!stopping) stop_accepting();
    close_all();
  }

  void close_all() noexcept {
    force_closed = true;
    for (TcpStream* s : streams) s->close();
  }

  void finish_stop() noexcept {
    if (grace_timer != TimeoutHandle{}) loop->remove_timeout(std::exchange(grace_timer, TimeoutHandle{}));  // loop thread
    if (stopped) {
      stopped->set_value();
      stopped.reset();
    }
  }
};

TcpServer::TcpServer(Handler handler, Options options, IOLoop& loop)
    : state_(std::make_shared<State>(std::move(handler), std::move(options), loop)) {
  if (!state_->handler) throw std::invalid_argument("TcpServer: the handler must not be empty");
}

TcpServer::~TcpServer() {
  // Off the loop's thread, while the loop lives, the loop does it: the accept handler
  // and the connections' streams are the loop's to touch (a swallowed remove_handler
  // would leave the listening fd's number taken, with a handler pointing at freed
  // state). The loop shares the state until then. Once the loop is gone, its
  // connections went with it: only the listening socket is left to close.
  try {
    std::function<void()> shut_down_there = [state = state_] { state->shut_down(); };
    if (detail::hand_to_loop_thread(*state_->anchor, shut_down_there)) return;
  } catch (...) {
    // Out of memory: close what can be closed from here.
  }
  state_->shut_down();
}

std::uint16_t TcpServer::listen(std::uint16_t port, const std::string& host) {
  State& s = *state_;
  if (!s.loop_here("listen")) throw LoopClosed("TcpServer::listen(): the server's IOLoop was destroyed");
  if (s.listen_fd >= 0) throw std::logic_error("TcpServer::listen(): already listening on port " + std::to_string(s.port));
  if (s.stopping) throw std::logic_error("TcpServer::listen(): the server was stopped; create a new one");
  const std::string where = "TcpServer::listen(" + host + ":" + std::to_string(port) + ")";
  socklen_t length = 0;
  auto addr = detail::numeric_address(host, port, length);
  if (!addr)
    throw Error(where + ": host must be a numeric IPv4 or IPv6 address such as 127.0.0.1, 0.0.0.0, ::1 or ::");
  const int fd = ::socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) detail::throw_errno(where);
  try {
    detail::set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1, where.c_str());
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), length) != 0) detail::throw_errno(where + ": bind");
    if (::listen(fd, s.options.backlog) != 0) detail::throw_errno(where + ": listen");
    sockaddr_storage bound{};
    socklen_t bound_length = sizeof bound;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_length) != 0) detail::throw_errno(where);
    s.port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                               : reinterpret_cast<sockaddr_in&>(bound).sin_port);
    s.listen_fd = fd;
    s.update_watch();
  } catch (...) {
    ::close(fd);
    s.listen_fd = -1;
    throw;
  }
  return s.port;
}

std::uint16_t TcpServer::port() const noexcept { return state_->port; }
std::size_t TcpServer::connections() const noexcept { return state_->live; }
std::size_t TcpServer::accept_attempts() const noexcept { return state_->accept_attempts; }

void TcpServer::stop(std::chrono::nanoseconds grace) { wait_for_future(stop_async(grace)); }

Future<void> TcpServer::stop_async(std::chrono::nanoseconds grace) {
  State& s = *state_;
  if (!s.stopping) {
    if (!s.loop_here("stop_async")) {
      s.stop_accepting();  // the loop is gone, and its connections with it
      return make_ready_future();
    }
    s.stop_accepting();
    if (s.live == 0) return make_ready_future();
    s.stopped.emplace();
    s.stopped_future = s.stopped->get_future();
    std::weak_ptr<State> weak = state_;
    // Saturated: an endless grace (nanoseconds::max()) waits, not overflows into "now".
    s.grace_timer = s.loop->call_at(detail::deadline_after(grace), [weak] {
      if (auto self = weak.lock()) {
        self->grace_timer = TimeoutHandle{};
        self->close_all();
      }
    });
  }
  if (!s.stopped) return make_ready_future();
  return s.stopped_future;
}

}  // namespace fiberloop
