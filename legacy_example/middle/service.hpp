#pragma once
/// @file
/// The legacy service's entry point, as every top calls it. Plain synchronous C++:
/// the middle (this library) includes no fiberloop header and is linked, unchanged,
/// into the thread-per-connection, the thread-pool and the fiberloop programs.

#include <string>
#include <string_view>

namespace legacy {

/// One HTTP request as the service sees it; the top fills it from its server.
struct Request {
  std::string method;
  std::string target;  ///< "/order?customer=42&items=3"
};

/// The service's answer. The top writes it as an HTTP/1.1 response with the headers
/// `Server: <server_header>`, `Content-Type` and `Content-Length`, in that order, so
/// every variant sends the same bytes.
struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

/// The value of every variant's `Server:` header.
inline constexpr std::string_view server_header = "legacy-example";

/// GET /order?customer=<id>&items=<n> -> 200 JSON quote; another path or method -> 404;
/// bad parameters -> 400; the backend failing -> 502; a bug -> 500. Throws nothing
/// derived from std::exception.
/// Thread: any, concurrently (no shared mutable state). It calls the ten middle
/// functions, the tenth of which calls do_stuff() (backend.hpp), which may block.
Reply handle_request(const Request& request);

}  // namespace legacy
