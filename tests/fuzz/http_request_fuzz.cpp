// libFuzzer target: the server's request reading and validation, on one connection
// that sends the fuzz input (pipelined requests are read one after another while the
// connection stays open). See fuzz_support.hpp for the input layout; bit 7 of the
// control byte selects tight limits (small header and body) so the limits are hit.

#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <fiberloop/net/http_server.hpp>

#include "fuzz_support.hpp"

namespace fiberloop::fuzz {
namespace {

using namespace detail;

/// What the server made of one request: `status` 0 when it went to the handler.
struct Outcome {
  int status = 0;
  bool keep_alive = false;
  std::size_t start = 0;  // offset of the request's first byte in the input
  HttpRequest request;
};

// What a parser may hold besides a header section while asking for more: one chunk-size
// line with its extensions (trailers count against max_header_bytes).
constexpr std::size_t chunk_line_slack = 4096;

HttpServerOptions options_for(Control control) {
  HttpServerOptions options;
  if (control.flag()) {
    options.max_header_bytes = 512;
    options.max_body_bytes = 256;
  }
  return options;
}

// The reading half of HttpServer::Impl::serve (adapters/src/http/http_server.cpp), as
// it stands: the header, the version and Host checks, 100 Continue, the body.
int status_for(const error_code& ec) noexcept {
  if (ec == beast_http::error::header_limit) return 431;
  if (ec == beast_http::error::body_limit) return 413;
  return 400;
}

template <class Stream>
std::vector<Outcome> read_connection(Stream& stream, const HttpServerOptions& options) {
  const auto never = http_clock::time_point::max();
  const auto header_limit = static_cast<std::uint32_t>(
      std::min<std::size_t>(options.max_header_bytes, std::numeric_limits<std::uint32_t>::max()));
  WireBuffer buffer;
  stream.watch(buffer, options.max_header_bytes + chunk_line_slack);
  std::vector<Outcome> outcomes;
  for (;;) {
    try {
      if (buffer.empty()) buffer.fill(stream, options.header_timeout);
    } catch (const StreamClosed&) {
      return outcomes;  // the client closed between requests
    }
    Outcome& outcome = outcomes.emplace_back();
    outcome.start = stream.position() - buffer.pending().size();
    HttpRequest& request = outcome.request;
    MessageParser<true> parser(request);
    parser.header_limit(header_limit);
    parser.body_limit(options.max_body_bytes);
    try {
      error_code ec = feed(parser, buffer, stream, never, ParseUntil::header);
      if (ec) {
        outcome.status = status_for(ec);
      } else if (request.version != 10 && request.version != 11) {
        outcome.status = 505;
      } else if (request.version == 11 && !request.headers.find("host")) {
        outcome.status = 400;
      } else {
        outcome.keep_alive = parser.keep_alive();
        if (!parser.is_done()) {
          const std::string* expect = request.headers.find("expect");
          if (expect && request.version == 11 && buffer.empty() && has_token(*expect, "100-continue"))
            stream.write_all("HTTP/1.1 100 Continue\r\n\r\n", options.body_timeout);
          parser.eager(true);
          ec = feed(parser, buffer, stream, never, ParseUntil::message);
          if (ec) outcome.status = status_for(ec);
        }
      }
    } catch (const StreamClosed&) {
      outcomes.pop_back();  // the client left mid-request: nothing is answered
      return outcomes;
    }
    if (outcome.status != 0 || !outcome.keep_alive) return outcomes;
  }
}

std::uint64_t decimal(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  check(ec == std::errc() && end != text.data(), "an accepted Content-Length that is not a number", text);
  return value;
}

/// The last item of a comma-separated list, trimmed.
std::string_view last_item(std::string_view list) {
  list = list.substr(list.rfind(',') + 1);
  while (!list.empty() && (list.front() == ' ' || list.front() == '\t')) list.remove_prefix(1);
  while (!list.empty() && (list.back() == ' ' || list.back() == '\t')) list.remove_suffix(1);
  return list;
}

void check_accepted(const Outcome& outcome, const HttpServerOptions& options, std::string_view raw) {
  const HttpRequest& request = outcome.request;
  check(is_token(request.method), "a method that is not a token", request.method);
  check(!request.target.empty(), "an empty target");
  for (char c : request.target)
    check(static_cast<unsigned char>(c) > ' ' && c != 0x7f, "a control character or space in the target",
          request.target);
  check(request.version == 10 || request.version == 11, "a version other than 1.0 and 1.1");
  check_fields(request.headers);
  check(request.body.size() <= options.max_body_bytes, "a body over max_body_bytes");
  const std::string* host = single(request.headers, "host");  // RFC 9112 3.2: exactly one
  check(request.version == 10 || host != nullptr, "an HTTP/1.1 request without Host");

  // Framing (RFC 9112 6.1-6.3): a Transfer-Encoding must end in chunked and rules out
  // Content-Length; a Content-Length is the body's size; neither means no body.
  const std::string* length = single(request.headers, "content-length");
  std::string codings;
  for (const auto& [name, value] : request.headers.fields)
    if (http_iequals(name, "transfer-encoding")) codings.append(codings.empty() ? "" : ",").append(value);
  if (!codings.empty()) {
    check(http_iequals(last_item(codings), "chunked"), "a request whose final transfer coding is not chunked",
          codings);
    check(length == nullptr, "a request with both Transfer-Encoding and Content-Length");
  } else if (length) {
    check(decimal(*length) == request.body.size(), "a body whose size is not its Content-Length", *length);
  } else {
    check(request.body.empty(), "a body without Content-Length or Transfer-Encoding");
  }
  check_one_header_per_field(request.headers, raw, outcome.start, Fold::refused);
}

/// The requests the handler would see, in order. How the connection ends is left out:
/// Beast rejects a bad header as soon as it sees the error when it has it whole, but
/// once it has asked for more it waits for the header's end first, so the same bytes
/// end in a 400, a 431 or the client's close depending on how they arrived.
std::string describe(const std::vector<Outcome>& outcomes) {
  std::string out;
  for (const Outcome& outcome : outcomes) {
    if (outcome.status != 0) break;
    const HttpRequest& request = outcome.request;
    out.append(request.method).append(" ").append(request.target).append(" ").append(std::to_string(request.version));
    out.append(outcome.keep_alive ? " keep-alive\n" : " close\n");
    describe_fields(out, request.headers, request.body);
  }
  return out;
}

}  // namespace
}  // namespace fiberloop::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fiberloop::fuzz;
  if (size < 1) return 0;
  const Control control{data[0]};
  const std::string_view raw(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto options = options_for(control);

  MemoryStream pieces(raw, control);
  const auto outcomes = read_connection(pieces, options);
  for (const Outcome& outcome : outcomes)
    if (outcome.status == 0) check_accepted(outcome, options, raw);

  MemoryStream whole(raw, Control{control.byte, true});
  const auto whole_outcomes = read_connection(whole, options);
  const std::string a = describe(outcomes), b = describe(whole_outcomes);
  if (a != b) {
    std::fprintf(stderr, "in pieces:\n%s\nin one read:\n%s\n", a.c_str(), b.c_str());
    violated("the same bytes read in pieces and in one read give different requests");
  }
  return 0;
}
