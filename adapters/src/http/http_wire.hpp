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
#include <initializer_list>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include <fiberloop/errors.hpp>
#include <fiberloop/net/http.hpp>

namespace fiberloop::detail {

namespace beast_http = boost::beast::http;
using boost::beast::error_code;
using http_clock = std::chrono::steady_clock;

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

/// Parses one message into `message`, which the caller clears beforehand.
template <bool IsRequest>
class MessageParser final : public beast_http::basic_parser<IsRequest> {
 public:
  using Message = std::conditional_t<IsRequest, HttpRequest, HttpResponse>;
  explicit MessageParser(Message& message) noexcept : message_(message) {}

 private:
  using string_view = boost::beast::string_view;

  void on_request_impl(beast_http::verb, string_view method, string_view target, int version,
                       error_code&) override {
    if constexpr (IsRequest) {
      message_.method.assign(method.data(), method.size());
      message_.target.assign(target.data(), target.size());
      message_.version = version;
    }
  }
  void on_response_impl(int status, string_view reason, int version, error_code&) override {
    if constexpr (!IsRequest) {
      message_.status = status;
      message_.reason.assign(reason.data(), reason.size());
      message_.version = version;
    }
  }
  void on_field_impl(beast_http::field, string_view name, string_view value, error_code&) override {
    message_.headers.fields.emplace_back(std::piecewise_construct, std::forward_as_tuple(name.data(), name.size()),
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
  void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code&) override {
    message_.body.append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  Message& message_;
};

/// Appends "Name: value\r\n" for every field whose name is not in `skip`. Throws
/// Error for a CR, LF or NUL in a name or value (it would split the header).
void append_fields(std::string& out, const HttpHeaders& headers, std::initializer_list<std::string_view> skip);
void append_decimal(std::string& out, std::uint64_t value);
/// True when the comma-separated `list` (a Connection or Expect value) holds `token`,
/// ignoring case and spaces.
bool has_token(std::string_view list, std::string_view token) noexcept;

enum class ParseUntil { header, message };

/// Feeds `parser` from `buffer`, reading more from `stream` while it needs more, until
/// the header (or the whole message) is parsed. Returns Beast's error for bad input.
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
    }
    const auto left = deadline - http_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) throw TimeoutError("HTTP read timed out");
    buffer.fill(stream, left);
  }
}

}  // namespace fiberloop::detail
