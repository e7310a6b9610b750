// The floor for one core: a minimal single-threaded epoll HTTP responder, no fiberloop.
// Level-triggered, non-blocking accept4, keep-alive, pipelining-safe (every complete
// "\r\n\r\n"-terminated request in the buffer gets one response, in order). No request
// bodies. Sends exactly the bytes fiberloop's HttpServer sends for the same handler, so
// wrk moves the same traffic through both.
//
//   epoll_http_hello [--port N]     N = 0 (default) picks a free port
// Prints "listening on 127.0.0.1:<port>" and serves until SIGTERM/SIGINT.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

// Same bytes as fiberloop's HttpServer for {200, Content-Type: text/plain, "Hello, world!"}.
constexpr std::string_view response =
    "HTTP/1.1 200 OK\r\nServer: fiberloop\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!";
constexpr std::size_t max_request_bytes = 16 * 1024;

struct Connection {
  std::string in;
  std::string out;  // response bytes the socket did not take yet
  bool want_write = false;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "epoll_http_hello: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

int parse_port(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--port" && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
      std::exit(2);
    }
  }
  return port;
}

}  // namespace

int main(int argc, char** argv) {
  const int port = parse_port(argc, argv);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) die("sigprocmask");
  const int signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) die("signalfd");
  signal(SIGPIPE, SIG_IGN);

  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listener < 0) die("socket");
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) die("bind");
  if (listen(listener, 1024) != 0) die("listen");
  socklen_t length = sizeof address;
  if (getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0) die("getsockname");
  std::printf("listening on 127.0.0.1:%u\n", ntohs(address.sin_port));
  std::fflush(stdout);

  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) die("epoll_create1");
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = listener;
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &event);
  event.data.fd = signal_fd;
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, signal_fd, &event);

  std::unordered_map<int, Connection> connections;
  auto close_connection = [&](int fd) {
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    connections.erase(fd);
  };
  // Sends what is queued; false when the connection had to be closed.
  auto flush = [&](int fd, Connection& c) {
    std::size_t sent = 0;
    while (sent < c.out.size()) {
      const ssize_t n = send(fd, c.out.data() + sent, c.out.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else {
        close_connection(fd);
        return false;
      }
    }
    c.out.erase(0, sent);
    const bool want_write = !c.out.empty();
    if (want_write != c.want_write) {
      epoll_event e{};
      e.events = EPOLLIN | (want_write ? EPOLLOUT : 0u);
      e.data.fd = fd;
      epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &e);
      c.want_write = want_write;
    }
    return true;
  };

  epoll_event events[256];
  char chunk[16 * 1024];
  for (;;) {
    const int ready = epoll_wait(epoll_fd, events, 256, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < ready; ++i) {
      const int fd = events[i].data.fd;
      if (fd == signal_fd) {
        for (auto& [cfd, c] : connections) close(cfd);
        close(listener);
        return 0;
      }
      if (fd == listener) {
        for (;;) {
          const int cfd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;  // EAGAIN, or EMFILE & co: retried on the next readiness
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event e{};
          e.events = EPOLLIN;
          e.data.fd = cfd;
          epoll_ctl(epoll_fd, EPOLL_CTL_ADD, cfd, &e);
          connections.try_emplace(cfd);
        }
        continue;
      }
      auto it = connections.find(fd);
      if (it == connections.end()) continue;
      Connection& c = it->second;
      if ((events[i].events & EPOLLOUT) && !flush(fd, c)) continue;
      if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        close_connection(fd);  // EOF or reset
        continue;
      }
      c.in.append(chunk, static_cast<std::size_t>(n));
      // One response per complete request head in the buffer, in order.
      std::size_t start = 0;
      for (std::size_t end; (end = c.in.find("\r\n\r\n", start)) != std::string::npos; start = end + 4)
        c.out.append(response);
      c.in.erase(0, start);
      if (c.in.size() > max_request_bytes) {
        close_connection(fd);
        continue;
      }
      if (!c.out.empty()) flush(fd, c);
    }
  }
}
