// libFuzzer target: the server's request reading and validation, on one connection
// that sends the fuzz input (pipelined requests are read one after another while the
// connection stays open). See fuzz_support.hpp for the input layout; bit 7 of the
// control byte selects tight limits (small header and body) so the limits are hit.

#include <charconv>
#include <cstdint>
#include <string>
#include <vector>

#include <fiberloop/net/http_server.hpp>

#include "fuzz_support.hpp"
#include "http/http_read.hpp"

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

HttpServerOptions options_for(Control control) {
  HttpServerOptions options;
  if (control.flag()) {
    options.max_header_bytes = 512;
    options.max_body_bytes = 256;
  }
  return options;
}

// How HttpServer::Impl::serve (adapters/src/http/http_server.cpp) reads a connection:
// read_request() for each request while the connection stays open. Time never runs
// out here (the stream answers at once).
template <class Stream>
std::vector<Outcome> read_connection(Stream& stream, const HttpServerOptions& options) {
  const auto never = http_clock::time_point::max();
  WireBuffer buffer;
  stream.watch(buffer, options.max_header_bytes + max_chunk_line_bytes);
  std::vector<Outcome> outcomes;
  for (;;) {
    try {
      if (buffer.empty()) buffer.fill(stream, options.header_timeout);
    } catch (const StreamClosed&) {
      return outcomes;  // the client closed between requests
    }
    Outcome& outcome = outcomes.emplace_back();
    outcome.start = stream.position() - buffer.pending().size();
    try {
      const RequestRead read = read_request(buffer, stream, options, never, outcome.request);
      outcome.status = read.error_status;
      outcome.keep_alive = read.keep_alive;
    } catch (const StreamClosed&) {
      outcomes.pop_back();  // the client left mid-request: nothing is answered
      return outcomes;
    }
    if (outcome.status != 0 || !outcome.keep_alive) return outcomes;
  }
}

bool all_digits(std::string_view text) noexcept {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
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
  for (char c : request.target)
    check(static_cast<unsigned char>(c) > ' ' && c != 0x7f, "a control character or space in the target",
          request.target);
  check(request.version == 10 || request.version == 11, "a version other than 1.0 and 1.1");
  // RFC 9112 3.2: origin-form, absolute-form (its path and query), or OPTIONS *.
  if (request.path == "*")
    check(request.target == "*" && request.method == "OPTIONS", "a path * but not OPTIONS *", request.target);
  else
    check(request.path.starts_with('/'), "a path that does not start with /", request.path);
  check_fields(request.headers);
  check_fields(request.trailers);
  check(request.body.size() <= options.max_body_bytes, "a body over max_body_bytes");
  check(header_section_size(raw, outcome.start) <= options.max_header_bytes, "a header section over max_header_bytes",
        std::to_string(header_section_size(raw, outcome.start)));
  check(wire_size(request.headers) + wire_size(request.trailers) <= options.max_header_bytes,
        "headers and trailers together over max_header_bytes",
        std::to_string(wire_size(request.headers)) + " + " + std::to_string(wire_size(request.trailers)));
  const std::string* host = single(request.headers, "host");  // RFC 9112 3.2: exactly one
  check(request.version == 10 || host != nullptr, "an HTTP/1.1 request without Host");

  // Framing (RFC 9112 6.1-6.3): Transfer-Encoding only in HTTP/1.1, ending in chunked,
  // never with Content-Length; a Content-Length is digits, and the body's size; neither
  // means no body. A smuggled request hides in any other reading.
  const std::string* length = single(request.headers, "content-length");
  const std::string* coding = single(request.headers, "transfer-encoding");
  if (coding) {
    check(request.version == 11, "Transfer-Encoding in an HTTP/1.0 request");
    check(http_iequals(last_item(*coding), "chunked"), "a request whose final transfer coding is not chunked",
          *coding);
    check(length == nullptr, "a request with both Transfer-Encoding and Content-Length");
  } else {
    check(request.trailers.fields.empty(), "trailers without a chunked body");
    if (length) {
      check(all_digits(*length), "a Content-Length that is not digits", *length);
      std::uint64_t size = 0;
      const auto parsed = std::from_chars(length->data(), length->data() + length->size(), size);
      check(parsed.ec == std::errc() && size == request.body.size(), "a body whose size is not its Content-Length",
            *length);
    } else {
      check(request.body.empty(), "a body without Content-Length or Transfer-Encoding");
    }
  }
  check_headers_are_field_lines(request.headers, raw, outcome.start, Fold::refused, "host");
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
    out.append("trailers\n");
    describe_fields(out, request.trailers, {});
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
