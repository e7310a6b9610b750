// fiberloop's side of the HTTP hello-world benchmark: HttpServer with a handler that
// returns the same body as bench/http/epoll_hello.cpp.
//
//   fiberloop_http_hello [--port N]     N = 0 (default) picks a free port
// Prints "listening on 127.0.0.1:<port>" and serves until SIGTERM/SIGINT.

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <fiberloop/fiberloop.hpp>

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--port" && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--port N]\n", argv[0]);
      return 2;
    }
  }

  // Blocked before any thread starts, so every thread (the blocking pool too) inherits
  // the mask and the signal is only seen through the signalfd on the loop.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) {
    std::perror("signalfd");
    return 1;
  }

  fiberloop::IOLoop loop;
  fiberloop::HttpServer server([](const fiberloop::HttpRequest&) {
    fiberloop::HttpResponse response;
    response.headers.add("Content-Type", "text/plain");
    response.body = "Hello, world!";
    return response;
  });
  const auto bound = server.listen(static_cast<std::uint16_t>(port));
  std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(bound));
  std::fflush(stdout);

  loop.add_handler(signal_fd, fiberloop::Events::read, [&](int, fiberloop::Events) {
    loop.remove_handler(signal_fd);
    loop.add_future<void>(server.stop_async(std::chrono::milliseconds(200)),
                    [&](fiberloop::Future<void>) { loop.stop(); });
  });
  loop.start();
  close(signal_fd);
  return 0;
}
