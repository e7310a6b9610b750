// libFuzzer target: the client's response reading, on a connection whose server
// answers one request with the fuzz input (interim 1xx responses first, as it likes).
// See fuzz_support.hpp for the input layout; bit 7 of the control byte says the
// request was a HEAD.

#include <charconv>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"

namespace fiberloop::fuzz {
namespace {

using namespace detail;

constexpr std::size_t max_body_bytes = 4096;  // small, so the fuzzer reaches the limit
constexpr std::size_t max_header_bytes = 64 * 1024;  // what HttpClient allows a response
// What a parser may hold besides a header section while asking for more: one chunk-size
// line with its extensions (trailers count against the header limit).
constexpr std::size_t chunk_line_slack = 4096;

/// What the client made of the answer: a response, or why there is none.
struct Reply {
  std::string error;  // empty when `response` is the final response
  HttpResponse response;
  std::size_t start = 0;  // offset of the final response's first byte in the input
  bool ended_by_eof = false;
  bool reusable = false;  // the connection would go back to the pool
};

// The reading half of HttpClient::Impl::exchange (adapters/src/http/http_client.cpp),
// as it stands.
template <class Stream>
Reply read_reply(Stream& stream, bool head) {
  const auto never = http_clock::time_point::max();
  WireBuffer buffer;
  stream.watch(buffer, max_header_bytes + chunk_line_slack);
  Reply reply;
  try {
    for (;;) {
      HttpResponse& response = reply.response;
      response = HttpResponse();
      reply.start = stream.position() - buffer.pending().size();
      MessageParser<false> parser(response);
      parser.header_limit(max_header_bytes);
      parser.body_limit(max_body_bytes);
      parser.skip(head);
      error_code ec;
      bool ended_by_eof = false;
      try {
        ec = feed(parser, buffer, stream, never, ParseUntil::message);
      } catch (const StreamClosed&) {
        if (!parser.is_header_done() || !parser.need_eof()) throw;
        parser.put_eof(ec);
        ended_by_eof = true;
      }
      if (ec == beast_http::error::body_limit) {
        reply.error = "body over the limit";
        return reply;
      }
      if (ec) {
        reply.error = "malformed response";
        return reply;
      }
      if (response.status >= 100 && response.status < 200 && response.status != 101) continue;
      reply.ended_by_eof = ended_by_eof;
      reply.reusable = !ended_by_eof && parser.keep_alive() && buffer.empty();
      return reply;
    }
  } catch (const StreamClosed&) {
    reply.error = "closed before a complete response";
    return reply;
  }
}

std::uint64_t decimal(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  check(ec == std::errc() && end != text.data(), "an accepted Content-Length that is not a number", text);
  return value;
}

void check_accepted(const Reply& reply, bool head, std::string_view raw) {
  const HttpResponse& response = reply.response;
  check(response.status >= 100 && response.status <= 999, "a status outside 100-999");
  check(response.status < 100 || response.status >= 200 || response.status == 101, "an interim response as final");
  check(!(response.status == 101 && reply.reusable), "a 101 response's connection kept for reuse");
  check(!has_cr_lf_nul(response.reason), "CR, LF or NUL in the reason phrase", response.reason);
  check_fields(response.headers);
  check(response.body.size() <= max_body_bytes, "a body over the limit");
  const bool bodiless = head || response.status < 200 || response.status == 204 || response.status == 304;
  if (bodiless) check(response.body.empty(), "a body in a response that has none (HEAD, 1xx, 204, 304)");

  const std::string* length = single(response.headers, "content-length");
  const bool chunked_or_coded = response.headers.find("transfer-encoding") != nullptr;
  if (chunked_or_coded) {
    check(length == nullptr, "a response with both Transfer-Encoding and Content-Length");
  } else if (length && !bodiless) {
    check(decimal(*length) == response.body.size(), "a body whose size is not its Content-Length", *length);
  }
  if (!bodiless && !length && !chunked_or_coded)
    check(reply.ended_by_eof && !reply.reusable, "a body without framing not read to the end of the connection");
  check_one_header_per_field(response.headers, raw, reply.start, Fold::joined);
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
  return out;
}

}  // namespace
}  // namespace fiberloop::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fiberloop::fuzz;
  if (size < 1) return 0;
  const Control control{data[0]};
  const std::string_view raw(reinterpret_cast<const char*>(data) + 1, size - 1);
  const bool head = control.flag();

  MemoryStream pieces(raw, control);
  const Reply reply = read_reply(pieces, head);
  if (reply.error.empty()) check_accepted(reply, head, raw);

  MemoryStream whole(raw, Control{control.byte, true});
  const std::string a = describe(reply), b = describe(read_reply(whole, head));
  if (a != b) {
    std::fprintf(stderr, "in pieces:\n%s\nin one read:\n%s\n", a.c_str(), b.c_str());
    violated("the same bytes read in pieces and in one read give different responses");
  }
  return 0;
}
