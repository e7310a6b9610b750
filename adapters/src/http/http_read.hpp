#pragma once
// Private to the HTTP adapters: reading one request (HttpServer) or one response
// (HttpClient) off a stream and deciding whether it is acceptable. These are the
// whole parsing and validation paths of both ends, templated on the stream so a
// fuzz target can drive them with bytes from memory; serve() and exchange() only
// add the connection handling around them.
//
// A Stream has
//   std::size_t read_some(std::span<char>, std::chrono::nanoseconds timeout);
//   void write_all(std::string_view, std::chrono::nanoseconds timeout);  // read_request only
// and throws TimeoutError, StreamClosed (the peer closed) or std::system_error.

#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/net/http_server.hpp>
#include <fiberloop/net/tcp_stream.hpp>

#include "http_wire.hpp"

namespace fiberloop::detail {

/// The status for a request Beast or MessageParser refused; `line` is the unparsed
/// input, starting at the request line when the header was refused (Beast consumes
/// a header only once it is complete and valid), else empty.
int status_for(const error_code& ec, std::string_view line) noexcept;

/// Checks a parsed request head beyond Beast's grammar: the target's form, Host,
/// Content-Length and Transfer-Encoding (request smuggling). Fills path and query;
/// for an absolute-form target the Host field takes the target's authority (RFC 9112
/// 3.2.2). Returns the status to refuse it with (the connection then closes), or 0.
int validate_request_head(HttpRequest& request);

/// Empties `request` for the next one on the connection, keeping its memory.
void clear_request(HttpRequest& request) noexcept;

/// What read_request found.
struct RequestRead {
  int error_status = 0;     ///< 0: a request is in `request`; else answer this and close
  bool keep_alive = false;  ///< the request lets the connection carry another one
};

/// Reads one request (head and body) from `buffer`, then `stream`, into `request`.
/// The head must be complete by `header_deadline`, the body within
/// options.body_timeout after it (either late: 408). Answers `Expect: 100-continue`
/// on `stream` once the head is acceptable. Bad input gives its status (400, 413,
/// 431, 501, 505); the stream's StreamClosed and std::system_error propagate.
template <class Stream>
RequestRead read_request(WireBuffer& buffer, Stream& stream, const HttpServerOptions& options,
                         http_clock::time_point header_deadline, HttpRequest& request) {
  clear_request(request);
  MessageParser<true> parser(request);
  parser.header_limit(static_cast<std::uint32_t>(
      std::min<std::size_t>(options.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
  parser.body_limit(options.max_body_bytes);
  RequestRead result;
  try {
    if (const error_code ec = feed(parser, buffer, stream, header_deadline, ParseUntil::header)) {
      result.error_status = status_for(ec, buffer.pending());
      return result;
    }
    if ((result.error_status = validate_request_head(request)) != 0) return result;
    result.keep_alive = parser.keep_alive();
    if (!parser.is_done()) {
      const auto body_deadline = deadline_after(options.body_timeout);
      const std::string* expect = request.headers.find("expect");
      if (expect && request.version == 11 && buffer.empty() && has_token(*expect, "100-continue"))
        stream.write_all("HTTP/1.1 100 Continue\r\n\r\n", options.body_timeout);
      parser.eager(true);
      if (const error_code ec = feed(parser, buffer, stream, body_deadline, ParseUntil::message))
        result.error_status = status_for(ec, {});
    }
  } catch (const TimeoutError&) {
    result.error_status = 408;
  }
  return result;
}

/// How a response left its connection.
enum class ResponseEnd {
  reusable,     ///< complete, and the connection may carry another request
  close,        ///< complete, but the connection must not be reused
  no_response,  ///< the peer closed (or reset) the connection before sending a byte
};

/// What read_response needs to know about the request it answers.
struct ResponseExpectation {
  std::string_view method;      ///< HEAD: no body; CONNECT: the connection is never reused
  std::string_view where;       ///< names the server in error messages ("http://host:port/path")
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_body_bytes = 64 * 1024 * 1024;
};

/// Error for a response refused by Beast or MessageParser.
[[noreturn]] void throw_bad_response(const error_code& ec, const ResponseExpectation& expectation);
/// Error for a response whose head Beast accepted but we do not (CL with TE).
void validate_response_head(const HttpResponse& response, const ResponseExpectation& expectation);

/// Reads the response to one request from `buffer`, then `stream`, into `response`:
/// interim 1xx responses are skipped (a 101 is final), a body without a length ends
/// with the connection. Everything must arrive by `deadline` (TimeoutError). A
/// malformed or oversized response is an Error naming the server and the limit; a
/// close in the middle of it a StreamClosed saying so.
template <class Stream>
ResponseEnd read_response(WireBuffer& buffer, Stream& stream, http_clock::time_point deadline,
                          const ResponseExpectation& expectation, HttpResponse& response) {
  bool got_some = !buffer.empty();
  for (;;) {
    response = HttpResponse();
    MessageParser<false> parser(response);
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(expectation.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser.body_limit(expectation.max_body_bytes);
    parser.skip(expectation.method == "HEAD");
    error_code ec;
    bool ended_by_eof = false;
    try {
      ec = feed(parser, buffer, stream, deadline, ParseUntil::header);
      if (!ec) {
        validate_response_head(response, expectation);
        ec = feed(parser, buffer, stream, deadline, ParseUntil::message);
      }
    } catch (const StreamClosed&) {
      got_some = got_some || parser.got_some();
      if (!got_some) return ResponseEnd::no_response;
      if (!parser.is_header_done() || !parser.need_eof())
        throw StreamClosed("HttpClient: " + std::string(expectation.where) +
                           " closed the connection before the response was complete");
      parser.put_eof(ec);  // an HTTP/1.0-style body that ends with the connection
      ended_by_eof = true;
    } catch (const std::system_error&) {
      if (!got_some && !parser.got_some()) return ResponseEnd::no_response;  // reset before answering
      throw;
    }
    got_some = true;
    if (ec) throw_bad_response(ec, expectation);
    if (response.status >= 100 && response.status < 200 && response.status != 101) continue;  // 100 Continue...
    // After a 101 or a CONNECT the connection speaks another protocol: never reuse it.
    if (ended_by_eof || !parser.keep_alive() || response.status == 101 || expectation.method == "CONNECT" ||
        !buffer.empty())
      return ResponseEnd::close;
    return ResponseEnd::reusable;
  }
}

}  // namespace fiberloop::detail
