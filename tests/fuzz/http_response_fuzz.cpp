// libFuzzer target: the client's response reading, on a connection whose server
// answers one request with the fuzz input (interim 1xx responses first, as it likes).
// See fuzz_support.hpp for the input layout; bit 7 of the control byte says the
// request was a HEAD, bit 6 selects tight limits.

#include <charconv>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "http/http_read.hpp"

namespace fiberloop::fuzz {
namespace {

using namespace detail;

/// What the client made of the answer: a response, or why there is none.
struct Reply {
  std::string error;  // empty when `response` is the final response
  HttpResponse response;
  ResponseEnd end = ResponseEnd::close;
};

ResponseExpectation expectation_for(Control control) {
  ResponseExpectation expectation;
  expectation.method = control.flag() ? "HEAD" : "GET";
  expectation.where = "the fuzz input";
  // Small limits (tight: very small), so that the fuzzer reaches them.
  expectation.max_header_bytes = control.flag2() ? 512 : 8 * 1024;
  expectation.max_body_bytes = control.flag2() ? 256 : 4096;
  return expectation;
}

// How HttpClient::Impl::exchange (adapters/src/http/http_client.cpp) reads the answer
// to a request: read_response(). Time never runs out here.
template <class Stream>
Reply read_reply(Stream& stream, const ResponseExpectation& expectation) {
  WireBuffer buffer;
  stream.watch(buffer, expectation.max_header_bytes + max_chunk_line_bytes);
  Reply reply;
  try {
    reply.end = read_response(buffer, stream, http_clock::time_point::max(), expectation, reply.response);
    if (reply.end == ResponseEnd::no_response) reply.error = "no response";
  } catch (const Error& e) {  // malformed, too large, or closed in the middle (StreamClosed)
    reply.error = e.what();
  }
  return reply;
}

/// Where the final response starts in the input: after the interim ones (1xx but 101,
/// each a status line and fields only, which Beast required to be "HTTP/d.d ddd").
std::size_t final_response_start(std::string_view raw) {
  std::size_t start = 0;
  while (raw.size() > start + 12 && raw[start + 9] == '1' && raw.substr(start + 9, 3) != "101")
    start = raw.find("\r\n\r\n", start) + 4;
  return start;
}

/// A Content-Length a client may accept: a decimal, or the same decimal repeated as a
/// list (RFC 9110 8.6 lets a recipient take "3, 3" as 3).
std::uint64_t content_length(std::string_view value) {
  std::optional<std::uint64_t> length;
  for (;;) {
    const auto comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    std::uint64_t number = 0;
    const auto parsed = std::from_chars(item.data(), item.data() + item.size(), number);
    check(!item.empty() && parsed.ec == std::errc() && parsed.ptr == item.data() + item.size() &&
              (!length || *length == number),
          "an accepted Content-Length that is not one decimal", value);
    length = number;
    if (comma == std::string_view::npos) return *length;
    value.remove_prefix(comma + 1);
  }
}

void check_accepted(const Reply& reply, const ResponseExpectation& expectation, std::string_view raw) {
  const HttpResponse& response = reply.response;
  const bool head = expectation.method == "HEAD";
  check(response.status >= 100 && response.status <= 999, "a status outside 100-999");
  check(response.status >= 200 || response.status == 101, "an interim response as final");
  check(!has_cr_lf_nul(response.reason), "CR, LF or NUL in the reason phrase", response.reason);
  check_fields(response.headers);
  check_fields(response.trailers);
  check(response.body.size() <= expectation.max_body_bytes, "a body over the limit");
  const std::size_t start = final_response_start(raw);
  check(header_section_size(raw, start) <= expectation.max_header_bytes, "a header section over the limit",
        std::to_string(header_section_size(raw, start)));
  check(wire_size(response.headers) + wire_size(response.trailers) <= expectation.max_header_bytes,
        "headers and trailers together over the limit",
        std::to_string(wire_size(response.headers)) + " + " + std::to_string(wire_size(response.trailers)));
  const bool bodiless = head || response.status < 200 || response.status == 204 || response.status == 304;
  if (bodiless) check(response.body.empty(), "a body in a response that has none (HEAD, 1xx, 204, 304)");
  // After a 101 the connection speaks another protocol.
  check(!(response.status == 101 && reply.end == ResponseEnd::reusable), "a 101 response's connection kept for reuse");

  // Framing (RFC 9112 6.3): never both Transfer-Encoding and Content-Length; a length
  // is the body's size; without either the body runs to the close, which ends the
  // connection's use.
  // RFC 9110 8.6 lets a recipient take repeated identical Content-Length fields as one.
  std::optional<std::uint64_t> declared;
  for (const auto& [name, value] : response.headers.fields) {
    if (!http_iequals(name, "content-length")) continue;
    const std::uint64_t length = content_length(value);
    check(!declared || *declared == length, "Content-Length fields that differ", value);
    declared = length;
  }
  const std::string* length = response.headers.find("content-length");
  const bool coded = response.headers.find("transfer-encoding") != nullptr;
  if (coded) {
    check(length == nullptr, "a response with both Transfer-Encoding and Content-Length");
  } else if (length && !bodiless) {
    check(*declared == response.body.size(), "a body whose size is not its Content-Length", *length);
  }
  if (!bodiless && !length && !coded)
    check(reply.end == ResponseEnd::close, "a body without framing, and its connection kept for reuse");
  check(response.trailers.fields.empty() || coded, "trailers without a chunked body");
  check_headers_are_field_lines(response.headers, raw, start, Fold::joined);
}

/// The response the caller would get. Why there is none is left out: Beast rejects a
/// bad header as soon as it sees the error when it has it whole, but once it has asked
/// for more it waits for the header's end, so the same bytes can end as malformed or
/// as closed depending on how they arrived.
std::string describe(const Reply& reply) {
  if (!reply.error.empty()) return "no response";
  const HttpResponse& response = reply.response;
  // Whether the connection may be reused is left out too: it depends on whether more
  // bytes had arrived when the response ended.
  std::string out = std::to_string(response.status) + " " + response.reason + " " + std::to_string(response.version);
  out.append("\n");
  describe_fields(out, response.headers, response.body);
  out.append("trailers\n");
  describe_fields(out, response.trailers, {});
  return out;
}

}  // namespace
}  // namespace fiberloop::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fiberloop::fuzz;
  if (size < 1) return 0;
  const Control control{data[0]};
  const std::string_view raw(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto expectation = expectation_for(control);

  MemoryStream pieces(raw, control);
  const Reply reply = read_reply(pieces, expectation);
  if (reply.error.empty()) check_accepted(reply, expectation, raw);

  MemoryStream whole(raw, Control{control.byte, true});
  const std::string a = describe(reply), b = describe(read_reply(whole, expectation));
  if (a != b) {
    std::fprintf(stderr, "in pieces:\n%s\nin one read:\n%s\n", a.c_str(), b.c_str());
    violated("the same bytes read in pieces and in one read give different responses");
  }
  return 0;
}
