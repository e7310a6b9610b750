// (c) The fiberloop top: one loop, a fiber per connection (so per request).
//
//   legacy_fibers --port P (--backend HOST:PORT | --inventory URL) [--host 127.0.0.1]
//                  [--cache HOST:PORT[,HOST:PORT...]] [--deadline-ms N] [--watchdog-ms N]
//
// fiberloop's HttpServer runs each connection on a fiber that reads requests and
// calls the middle's handle_request(); deep inside, do_stuff() suspends only that
// fiber on the backend (bottom/fiberloop_backend.cpp). Stops on SIGINT/SIGTERM.

#include <chrono>
#include <cstdio>

#include <fiberloop/fiberloop.hpp>

#include "../bottom/backend_client.hpp"
#include "../middle/service.hpp"
#include "../support/cli.hpp"

namespace {

fiberloop::HttpResponse serve_request(const fiberloop::HttpRequest& request) {
  legacy::Reply reply = legacy::handle_request({request.method, request.target});
  fiberloop::HttpResponse response;
  response.status = reply.status;
  response.headers.add("Content-Type", std::move(reply.content_type));
  response.body = std::move(reply.body);
  return response;
}

}  // namespace

int main(int argc, char** argv) {
  const legacy::Flags flags =
      legacy::parse_flags(argc, argv, {"host", "port", "backend", "cache", "inventory", "deadline-ms", "watchdog-ms"},
                          "--port P (--backend HOST:PORT | --inventory URL) [--host 127.0.0.1] "
                          "[--cache HOST:PORT[,HOST:PORT...]] [--deadline-ms N] [--watchdog-ms N]");
  const int signal_fd = legacy::stop_signal_fd();
  try {
    fiberloop::IOLoop::Options loop_options;
    loop_options.watchdog_threshold = std::chrono::milliseconds(flags.watchdog_ms);  // 0: off
    fiberloop::IOLoop loop(loop_options);
    legacy::BackendConfig backend;
    backend.host = flags.backend_host;
    backend.port = flags.backend_port;
    backend.cache = flags.cache;
    backend.inventory_url = flags.inventory;
    legacy::backend_start(backend);

    fiberloop::HttpServerOptions options;
    options.server_header = legacy::server_header;
    options.request_deadline = std::chrono::milliseconds(flags.deadline_ms);  // 0: none
    fiberloop::HttpServer server(serve_request, options);
    const auto port = server.listen(flags.port, flags.host);
    legacy::announce_listening(flags.host, port);

    loop.add_handler(signal_fd, fiberloop::Events::read, [&](int, fiberloop::Events) {  // SIGINT/SIGTERM
      loop.remove_handler(signal_fd);
      // Requests in flight get a moment to finish; then the loop ends.
      loop.add_future<void>(server.stop_async(std::chrono::seconds(1)), [&](fiberloop::Future<void>) { loop.stop(); });
    });
    loop.start();

    legacy::backend_stop();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "legacy_fibers: %s\n", e.what());
    return 1;
  }
  return 0;
}
