// The slow backend: an inventory service standing for a database or a remote API.
// Built on fiberloop's HttpServer; each reply waits --delay-ms (sleep_for suspends
// only the request's fiber), so thousands of requests can wait at once.
//
//   legacy_backend --port P [--host 127.0.0.1] [--delay-ms 10]
//
// GET /inventory?sku=<n>[,<n>...] -> 200 {"items":[{"sku":n,"stock":s,"price_cents":p},...]}
// (at most 50 skus, each 1..999999999); another path -> 404; bad skus -> 400.
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string_view>
#include <vector>

#include <fiberloop/fiberloop.hpp>

#include "../support/cli.hpp"

namespace {

std::optional<std::vector<std::uint64_t>> parse_skus(std::string_view query) {
  if (query.substr(0, 4) != "sku=") return std::nullopt;
  query.remove_prefix(4);
  std::vector<std::uint64_t> skus;
  while (true) {
    const auto comma = query.find(',');
    const std::string_view item = query.substr(0, comma);
    std::uint64_t sku = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), sku);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || sku == 0 || sku > 999'999'999 ||
        skus.size() == 50)
      return std::nullopt;
    skus.push_back(sku);
    if (comma == std::string_view::npos) return skus;
    query.remove_prefix(comma + 1);
  }
}

fiberloop::HttpResponse reply(int status, std::string body) {
  fiberloop::HttpResponse response;
  response.status = status;
  response.headers.add("Content-Type", "application/json");
  response.body = std::move(body);
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
          if (request.method != "GET" || request.path != "/inventory") return reply(404, "{\"error\":\"not found\"}\n");
          const auto skus = parse_skus(request.query);
          if (!skus) return reply(400, "{\"error\":\"sku must be 1 to 50 numbers 1..999999999, comma-separated\"}\n");
          fiberloop::sleep_for(delay);  // the "database"
          std::string body = "{\"items\":[";
          for (std::size_t i = 0; i < skus->size(); ++i) {
            const std::uint64_t sku = (*skus)[i];
            if (i) body.push_back(',');
            body.append("{\"sku\":").append(std::to_string(sku));
            body.append(",\"stock\":").append(std::to_string(sku * 37 % 50));
            body.append(",\"price_cents\":").append(std::to_string(199 + sku * 7919 % 9800)).append("}");
          }
          body.append("]}\n");
          return reply(200, std::move(body));
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
