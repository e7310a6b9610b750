#pragma once
// Private to the HTTP adapters: a Beast basic_parser that fills our HttpRequest /
// HttpResponse directly (no Beast message in between), the per-connection read
// buffer, and the loop that feeds one from a stream until a message is complete.

// GCC (12, -O2 with sanitizers) warns inside Beast that boost::optional's storage
// "may be used uninitialized" (content_length_unchecked); a false positive in Boost.
#pragma GCC diagnostic push
#if !defined(__clang__)  // clang has no such warning, and warns about the unknown name
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#pragma GCC diagnostic pop

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/errors.hpp>
#include <fiberloop/net/http.hpp>

namespace fiberloop::detail {

namespace beast_http = boost::beast::http;
using boost::beast::error_code;
using http_clock = std::chrono::steady_clock;

/// Longest chunk-size line (size, extensions, CRLF) accepted; like nginx's 4 KiB
/// buffer. Beast buffers the whole line before it calls on_chunk_header, so feed()
/// refuses one growing past this instead of buffering it without end.
constexpr std::size_t max_chunk_line_bytes = 4096;

/// Our own refusals of a message, beside Beast's http::error codes.
enum class wire_error {
  chunk_line_too_long = 1,  ///< a chunk-size line longer than max_chunk_line_bytes
  trailers_too_large,       ///< a trailer section larger than the parser's trailer_limit
  obs_fold,                 ///< obsolete line folding in a request (RFC 9112 5.2)
};
const boost::system::error_category& wire_category() noexcept;
inline error_code make_error_code(wire_error e) noexcept { return {static_cast<int>(e), wire_category()}; }

}  // namespace fiberloop::detail

template <>
struct boost::system::is_error_code_enum<fiberloop::detail::wire_error> : std::true_type {};

namespace fiberloop::detail {

/// Bytes read from a stream and not yet consumed by a parser. Kept per connection so
/// pipelined bytes survive from one message to the next and the memory is reused.
class WireBuffer {
 public:
  std::string_view pending() const noexcept { return {data_.get() + begin_, end_ - begin_}; }
  bool empty() const noexcept { return begin_ == end_; }
  void consume(std::size_t n) noexcept {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  /// Reads at least one more byte from `stream` (anything with
  /// read_some(std::span<char>, std::chrono::nanoseconds)).
  template <class Stream>
  void fill(Stream& stream, std::chrono::nanoseconds timeout) {
    if (end_ == capacity_) make_room();
    end_ += stream.read_some(std::span<char>(data_.get() + end_, capacity_ - end_), timeout);
  }

 private:
  void make_room() {
    if (begin_ > 0) {  // slide the unconsumed tail to the front
      std::memmove(data_.get(), data_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
      if (end_ < capacity_) return;
    }
    const std::size_t bigger = capacity_ == 0 ? 16 * 1024 : capacity_ * 2;
    auto grown = std::make_unique_for_overwrite<char[]>(bigger);
    if (end_ > 0) std::memcpy(grown.get(), data_.get(), end_);
    data_ = std::move(grown);
    capacity_ = bigger;
  }

  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

/// Parses one message into `message`, which the caller clears beforehand. Beyond
/// Beast's checks it keeps trailer fields apart (message.trailers), counts them and
/// chunk-size lines against limits (see check_waiting), and refuses obsolete line
/// folding in requests.
template <bool IsRequest>
class MessageParser final : public beast_http::basic_parser<IsRequest> {
  using Base = beast_http::basic_parser<IsRequest>;

 public:
  using Message = std::conditional_t<IsRequest, HttpRequest, HttpResponse>;
  explicit MessageParser(Message& message) noexcept : message_(message) {}

  /// Largest header section; the trailer section gets what the header left of it.
  void header_limit(std::uint32_t bytes) noexcept {
    header_limit_ = bytes;
    Base::header_limit(bytes);
  }

  /// basic_parser::put, remembering where the input ends (on_field_impl needs it) and
  /// how much of it was the header section.
  std::size_t put(boost::asio::const_buffer input, error_code& ec) {
    const bool in_header = !this->is_header_done();
    // Beast's header_limit bounds what it looks at per step, not the header section:
    // given a whole header at once, it checks the start line and then the fields each
    // against the limit, so a section of nearly twice the limit passed in one read (in
    // pieces it was refused). Shown only what the section may still take, a header that
    // does not end within it is refused.
    const std::size_t budget = header_limit_ - std::min(header_bytes_, header_limit_);
    const bool clipped = in_header && input.size() > budget;
    if (clipped) input = boost::asio::const_buffer(input.data(), budget);
    input_end_ = static_cast<const char*>(input.data()) + input.size();
    const std::size_t used = budget == 0 && in_header ? 0 : Base::put(input, ec);
    if (in_header) {
      // Not eager while in the header: a put that ends the header takes nothing after it.
      header_bytes_ += used;
      if (clipped && (budget == 0 || ec == beast_http::error::need_more)) ec = beast_http::error::header_limit;
    }
    return used;
  }

  /// For feed(), after put() asked for more input: Beast buffers a chunk-size line, and
  /// the trailer section after the last chunk, until they are complete, however long
  /// they grow. This is the error once the bytes waiting in `pending` are one of those
  /// and already past its limit.
  error_code check_waiting(std::string_view pending) const noexcept {
    if (!this->is_header_done() || !this->chunked() || this->is_done()) return {};
    if (pending.starts_with("\r\n")) pending.remove_prefix(2);  // ends the previous chunk's data
    // Only CRLF ends a line for Beast: a bare LF is a byte of the line.
    const auto end_of_line = pending.find("\r\n");
    const std::size_t line = end_of_line == std::string_view::npos ? pending.size() : end_of_line + 2;
    if (line > max_chunk_line_bytes) return wire_error::chunk_line_too_long;
    if (end_of_line == std::string_view::npos) return {};
    // A complete chunk-size line still waiting is the last chunk's: the trailers follow.
    return pending.size() - line > trailer_limit() ? wire_error::trailers_too_large : error_code{};
  }

 private:
  using string_view = boost::beast::string_view;

  // What the header section left of max_header_bytes, plus the CRLF that ends the
  // trailer section: that empty line is framing, owed even when there are no trailers.
  std::size_t trailer_limit() const noexcept {
    return (header_limit_ > header_bytes_ ? header_limit_ - header_bytes_ : 0) + 2;
  }

  void on_request_impl(beast_http::verb, string_view method, string_view target, int version,
                       error_code&) override {
    if constexpr (IsRequest) {
      message_.method.assign(method.data(), method.size());
      message_.target.assign(target.data(), target.size());
      message_.version = version;
    }
  }
  void on_response_impl(int status, string_view reason, int version, error_code& ec) override {
    if constexpr (!IsRequest) {
      if (status < 100) {  // Beast takes any three digits; valid codes start at 100 (RFC 9110 15)
        ec = beast_http::error::bad_status;
        return;
      }
      message_.status = status;
      message_.reason.assign(reason.data(), reason.size());
      message_.version = version;
    }
  }
  void on_field_impl(beast_http::field, string_view name, string_view value, error_code& ec) override {
    if constexpr (IsRequest) {
      // RFC 9112 5.2 lets a server reject obs-fold, as nginx does (a client must
      // unfold it, as Beast does). Beast hands a plain value as a view of the input
      // right after "name:" and optional whitespace; an unfolded one comes from a
      // buffer of its own, or (when the first line was empty) from the continuation
      // line, after a CRLF.
      const char* const colon = name.data() + name.size();
      const std::less<const char*> before;
      bool folded = before(value.data(), colon) || before(input_end_, value.data());
      for (const char* c = colon + 1; !folded && c < value.data(); ++c) folded = *c != ' ' && *c != '\t';
      if (folded) {
        ec = wire_error::obs_fold;
        return;
      }
    }
    HttpHeaders* fields = &message_.headers;
    if (this->is_header_done()) {  // a trailer field (RFC 9110 6.5): never a header
      trailer_bytes_ += name.size() + value.size() + 4;  // ": " and CRLF
      if (trailer_bytes_ > trailer_limit()) {
        ec = wire_error::trailers_too_large;
        return;
      }
      fields = &message_.trailers;
    }
    fields->fields.emplace_back(std::piecewise_construct, std::forward_as_tuple(name.data(), name.size()),
                                std::forward_as_tuple(value.data(), value.size()));
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code&) override {
    // The parser already refused a length over body_limit; cap the guess anyway.
    if (length) message_.body.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(*length, 1 << 20)));
  }
  std::size_t on_body_impl(string_view body, error_code&) override {
    message_.body.append(body.data(), body.size());
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t size, string_view extensions, error_code& ec) override {
    // A line that arrived whole in one read; check_waiting bounds one still arriving.
    if (extensions.size() > max_chunk_line_bytes) {
      ec = wire_error::chunk_line_too_long;
      return;
    }
    if (size != 0) return;
    // The last chunk: Beast calls this once the whole trailer section is in the input,
    // right after the line. Measured on the wire, as check_waiting measures it while
    // it arrives (the fields alone lose the whitespace Beast trims and unfolds).
    const std::string_view rest(extensions.data() + extensions.size(),
                                static_cast<std::size_t>(input_end_ - (extensions.data() + extensions.size())));
    const std::size_t line_end = rest.find("\r\n");
    const std::size_t blank_line = rest.find("\r\n\r\n", line_end);
    if (blank_line == std::string_view::npos) return;  // (Beast found both before calling)
    if (blank_line + 4 - (line_end + 2) > trailer_limit()) ec = wire_error::trailers_too_large;
  }
  std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code&) override {
    message_.body.append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  Message& message_;
  const char* input_end_ = nullptr;
  std::size_t header_limit_ = 8 * 1024;  // Beast's default
  std::size_t header_bytes_ = 0;
  std::size_t trailer_bytes_ = 0;
};

/// RFC 9110 5.6.2: a method or field name is a token (no separators, spaces, 8-bit).
bool is_token(std::string_view text) noexcept;
/// True for a control character other than HTAB, which no field value may hold (RFC
/// 9110 5.5): CR, LF and NUL would split a header; the others no peer should guess about.
bool has_control(std::string_view text) noexcept;

/// Appends "Name: value\r\n" for every field whose name is not in `skip`. Throws
/// Error for a name that is not a token or a value with a control character.
void append_fields(std::string& out, const HttpHeaders& headers, std::initializer_list<std::string_view> skip);
void append_decimal(std::string& out, std::uint64_t value);
/// True when the comma-separated `list` (a Connection or Expect value) holds `token`,
/// ignoring case and spaces.
bool has_token(std::string_view list, std::string_view token) noexcept;

enum class ParseUntil { header, message };

/// Feeds `parser` (a MessageParser) from `buffer`, reading more from `stream` while it
/// needs more, until the header (or the whole message) is parsed. Returns Beast's
/// error or a wire_error for bad input.
/// Each read gets what is left until `deadline` (TimeoutError past it). The stream's
/// exceptions propagate (a caller expecting a body delimited by end of stream
/// catches StreamClosed and calls put_eof()).
template <class Parser, class Stream>
error_code feed(Parser& parser, WireBuffer& buffer, Stream& stream, http_clock::time_point deadline,
                ParseUntil until) {
  for (;;) {
    if (until == ParseUntil::header ? parser.is_header_done() : parser.is_done()) return {};
    if (!buffer.empty()) {
      const std::string_view bytes = buffer.pending();
      error_code ec;
      const std::size_t used = parser.put(boost::asio::const_buffer(bytes.data(), bytes.size()), ec);
      buffer.consume(used);
      if (!ec && used > 0) continue;
      if (ec && ec != beast_http::error::need_more) return ec;
      if (const error_code too_long = parser.check_waiting(buffer.pending())) return too_long;
    }
    const auto left = time_left(deadline);
    if (left == std::chrono::nanoseconds::zero()) throw TimeoutError("HTTP read timed out");
    buffer.fill(stream, left);
  }
}

}  // namespace fiberloop::detail
