#pragma once
/// @file
/// HTTP/1.1 messages shared by HttpServer and HttpClient: plain values, no I/O.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fiberloop {

/// Header fields in arrival order. Lookup ignores ASCII case; duplicates are kept
/// (Set-Cookie). Thread: a plain value, no synchronisation.
struct HttpHeaders {
  std::vector<std::pair<std::string, std::string>> fields;

  /// The value of the first field named `name` (any case), or nullptr.
  const std::string* find(std::string_view name) const noexcept;
  /// The value of the first field named `name`, or `fallback`.
  std::string get(std::string_view name, std::string fallback = {}) const;
  /// Removes every field named `name` and appends `name: value`.
  void set(std::string name, std::string value);
  /// Appends `name: value`, keeping fields of the same name.
  void add(std::string name, std::string value);
  /// Removes every field named `name`; returns how many there were.
  std::size_t remove(std::string_view name);
};

/// A request as the server hands it to the handler, or as a client would send it.
struct HttpRequest {
  std::string method = "GET";
  std::string target = "/";  ///< as sent: path plus "?query"
  std::string path;          ///< target before '?', not percent-decoded (server fills it)
  std::string query;         ///< target after '?', without it (server fills it)
  int version = 11;          ///< 10 for HTTP/1.0, 11 for HTTP/1.1
  HttpHeaders headers;
  std::string body;            ///< de-chunked
  /// Trailer fields of a chunked body, kept apart from `headers` (RFC 9110 6.5.1): a
  /// front proxy checked the headers, not these (server fills it).
  HttpHeaders trailers;
  std::string remote_address;  ///< the peer, "127.0.0.1:5678" (server fills it)
};

/// A response. An empty `reason` is sent as the standard phrase for `status`.
/// Content-Length is always computed from `body`; a handler need not set it.
struct HttpResponse {
  int status = 200;
  std::string reason;
  HttpHeaders headers;
  std::string body;
  /// Trailer fields of a chunked response body, kept apart from `headers` (HttpClient
  /// fills it). HttpServer does not send them: it never answers chunked.
  HttpHeaders trailers;
  int version = 11;
};

/// The standard reason phrase for an HTTP status ("Not Found"), or "Unknown".
std::string_view http_reason_phrase(int status) noexcept;

/// True when `a` and `b` are equal ignoring ASCII case (header names).
bool http_iequals(std::string_view a, std::string_view b) noexcept;

}  // namespace fiberloop
