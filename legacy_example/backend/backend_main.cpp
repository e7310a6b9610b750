// The slow backend: an inventory service standing for a database or a remote API.
// Built on fiberloop's HttpServer; each reply waits --delay-ms (sleep_for suspends
// only the request's fiber), so thousands of requests can wait at once.
//
//   legacy_backend --port P [--host 127.0.0.1] [--delay-ms 10]
//
// GET /inventory?sku=<n>[,<n>...] -> 200 {"items":[{"sku":n,"stock":s,"price_cents":p},...]}
// (at most 50 skus, each 1..999999999); another path -> 404; bad skus -> 400: the
// protocol of support/inventory_protocol.hpp, every sku in its catalogue.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <fiberloop/fiberloop.hpp>

#include "../support/cli.hpp"
#include "../support/inventory_protocol.hpp"

namespace {

fiberloop::HttpResponse reply(legacy::inventory::Answer answer) {
  fiberloop::HttpResponse response;
  response.status = answer.status;
  response.headers.add("Content-Type", "application/json");
  response.body = std::move(answer.body);
  return response;
}

}  // namespace

int main(int argc, char** argv) {
  const legacy::Flags flags =
      legacy::parse_flags(argc, argv, {"host", "port", "delay-ms"}, "--port P [--host 127.0.0.1] [--delay-ms 10]");
  const int signal_fd = legacy::stop_signal_fd();
  const auto delay = std::chrono::milliseconds(flags.delay_ms);
  try {
    fiberloop::IOLoop loop;
    fiberloop::HttpServerOptions options;
    options.server_header = "legacy-backend";
    fiberloop::HttpServer server(
        [delay](const fiberloop::HttpRequest& request) {
          namespace inventory = legacy::inventory;
          if (request.method != "GET") return reply(inventory::not_found());
          inventory::Request asked = inventory::parse_request(request.path, request.query);
          if (asked.refusal) return reply(std::move(*asked.refusal));
          fiberloop::sleep_for(delay);  // the "database"
          std::vector<inventory::Item> items;
          for (const std::int64_t sku : asked.skus) items.push_back(inventory::catalogue_item(sku));
          return reply(inventory::found(asked.skus, items));
        },
        options);
    const auto port = server.listen(flags.port, flags.host);
    legacy::announce_listening(flags.host, port);

    loop.add_handler(signal_fd, fiberloop::Events::read, [&](int, fiberloop::Events) {  // SIGINT/SIGTERM
      loop.remove_handler(signal_fd);
      loop.add_future<void>(server.stop_async(std::chrono::seconds(1)), [&](fiberloop::Future<void>) { loop.stop(); });
    });
    loop.start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "legacy_backend: %s\n", e.what());
    return 1;
  }
  return 0;
}
