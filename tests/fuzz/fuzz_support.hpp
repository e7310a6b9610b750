#pragma once
// Shared by the HTTP fuzz targets: the input's control byte, an in-memory stream that
// hands the input out in fuzzer-chosen pieces, and checks that abort on a violated
// invariant (libFuzzer then saves the input as a crash).
//
// Input layout: byte 0 is the control byte, the rest is what the peer sends.
//   bits 0-1  largest read: 1, 7, 64 or 4096 bytes (read sizes vary below it)
//   bits 2-5  seed of the read sizes
//   bits 6-7  the target's own switches (server: bit 7 tight limits; client: bit 7 a
//             HEAD, bit 6 tight limits)
// Every target parses the bytes twice, in pieces as the control byte says and in one
// read, and requires the same outcome.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fiberloop/net/http.hpp>
#include <fiberloop/net/tcp_stream.hpp>

#include "http/http_wire.hpp"

namespace fiberloop::fuzz {

struct Control {
  std::uint8_t byte = 0;
  bool whole = false;  // one read with everything, whatever the bits say
  bool flag() const noexcept { return (byte & 0x80) != 0; }
  bool flag2() const noexcept { return (byte & 0x40) != 0; }
};

[[noreturn]] inline void violated(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "\nINVARIANT VIOLATED: %s", what);
  if (!detail.empty())
    std::fprintf(stderr, " [%.*s]", static_cast<int>(std::min<std::size_t>(detail.size(), 200)), detail.data());
  std::fprintf(stderr, "\n");
  std::abort();
}

inline void check(bool ok, const char* what, std::string_view detail = {}) {
  if (!ok) violated(what, detail);
}

/// Stands in for TcpStream where the HTTP code reads: read_some() yields the input in
/// pieces, then throws StreamClosed; write_all() only records (100 Continue).
class MemoryStream {
 public:
  MemoryStream(std::string_view input, Control control) noexcept
      : input_(input), whole_(control.whole), max_read_(max_read_for(control.byte)),
        state_(0x9e3779b9u ^ static_cast<std::uint32_t>((control.byte >> 2) & 0x0f)) {}

  /// From now on every read first checks that `buffer` holds at most `bound` bytes the
  /// parser has not taken: bytes a parser leaves there while asking for more are bytes
  /// it keeps in memory (an endless header, chunk extension or trailer section).
  void watch(const detail::WireBuffer& buffer, std::size_t bound) noexcept {
    watched_ = &buffer;
    bound_ = bound;
  }

  std::size_t read_some(std::span<char> out, std::chrono::nanoseconds) {
    if (watched_ && watched_->pending().size() > bound_)
      violated("unparsed bytes pile up in the read buffer beyond the limits",
               std::to_string(watched_->pending().size()) + " > " + std::to_string(bound_));
    if (position_ == input_.size()) throw StreamClosed("fuzz input ended");
    std::size_t n = std::min(out.size(), input_.size() - position_);
    if (!whole_) n = std::min<std::size_t>(n, 1 + next() % max_read_);
    std::copy_n(input_.data() + position_, n, out.data());
    position_ += n;
    return n;
  }
  void write_all(std::string_view data, std::chrono::nanoseconds) { written_.append(data); }

  /// Bytes handed out so far.
  std::size_t position() const noexcept { return position_; }
  std::string_view input() const noexcept { return input_; }
  const std::string& written() const noexcept { return written_; }

 private:
  static std::uint32_t max_read_for(std::uint8_t byte) noexcept {
    constexpr std::uint32_t sizes[] = {1, 7, 64, 4096};
    return sizes[byte & 3];
  }
  std::uint32_t next() noexcept {  // xorshift32: cheap, deterministic per input
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    return state_;
  }

  std::string_view input_;
  bool whole_;
  std::uint32_t max_read_;
  std::uint32_t state_;
  std::size_t position_ = 0;
  std::string written_;
  const detail::WireBuffer* watched_ = nullptr;
  std::size_t bound_ = 0;
};

/// RFC 9110 5.6.2 token characters.
inline bool is_tchar(char c) noexcept {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

inline bool is_token(std::string_view text) noexcept {
  if (text.empty()) return false;
  for (char c : text)
    if (!is_tchar(c)) return false;
  return true;
}

inline bool has_cr_lf_nul(std::string_view text) noexcept {
  return text.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

/// Names are tokens; values hold no CR, LF or NUL and no surrounding whitespace.
inline void check_fields(const HttpHeaders& headers) {
  for (const auto& [name, value] : headers.fields) {
    check(is_token(name), "a header name that is not a token", name);
    check(!has_cr_lf_nul(value), "CR, LF or NUL in a header value", value);
    if (!value.empty()) {
      check(value.front() != ' ' && value.front() != '\t', "a header value with leading whitespace", value);
      check(value.back() != ' ' && value.back() != '\t', "a header value with trailing whitespace", value);
    }
  }
}

/// How a message may treat obs-fold (a field line starting with SP or HT, RFC 9112 5.2).
enum class Fold {
  refused,  // a server must reject it: every line is a field
  joined    // a user agent may join it to the field above (as a space)
};

/// The names of the field lines of the header section starting at `start` in the raw
/// input (the start line excluded), in order, or nullopt when the section does not end
/// in the input. With Fold::joined a continuation line is not a field of its own.
inline std::optional<std::vector<std::string_view>> field_names(std::string_view raw, std::size_t start, Fold fold) {
  const auto end = raw.find("\r\n\r\n", start);
  if (end == std::string_view::npos) return std::nullopt;
  std::vector<std::string_view> names;
  for (auto at = raw.find("\r\n", start); at < end; at = raw.find("\r\n", at + 2)) {
    const std::string_view line = raw.substr(at + 2, raw.find("\r\n", at + 2) - (at + 2));
    const bool continues = line.starts_with(' ') || line.starts_with('\t');
    if (!(continues && fold == Fold::joined)) names.push_back(line.substr(0, line.find(':')));
  }
  return names;
}

/// The headers are the header section's field lines, in order: no trailer of a chunked
/// body among them, and with Fold::refused no obs-fold passed. `added` names a field
/// the reader may append of its own (HttpServer: Host, from an absolute-form target).
inline void check_headers_are_field_lines(const HttpHeaders& headers, std::string_view raw, std::size_t start,
                                          Fold fold, std::string_view added = {}) {
  const auto names = field_names(raw, start, fold);
  check(names.has_value(), "a message accepted before its header section ended");
  std::size_t count = headers.fields.size();
  if (!added.empty() && count == names->size() + 1 && http_iequals(headers.fields.back().first, added)) --count;
  bool same = count == names->size();
  for (std::size_t i = 0; same && i < count; ++i) same = headers.fields[i].first == (*names)[i];
  check(same, "headers that are not the field lines (obs-fold accepted, or trailers among the headers)",
        raw.substr(start, 200));
}

/// The size of the header section starting at `start` in the raw input (start line to
/// blank line), or the rest of the input when it does not end there.
inline std::size_t header_section_size(std::string_view raw, std::size_t start) noexcept {
  const auto end = raw.find("\r\n\r\n", start);
  return end == std::string_view::npos ? raw.size() - start : end + 4 - start;
}

/// The bytes fields take on the wire, as "name: value\r\n".
inline std::size_t wire_size(const HttpHeaders& headers) noexcept {
  std::size_t size = 0;
  for (const auto& [name, value] : headers.fields) size += name.size() + value.size() + 4;
  return size;
}

/// The value of the only field `name`, nullptr if none; aborts on two.
inline const std::string* single(const HttpHeaders& headers, std::string_view name) {
  const std::string* found = nullptr;
  for (const auto& [field, value] : headers.fields) {
    if (!http_iequals(field, name)) continue;
    check(found == nullptr, "a repeated header that must be single", field);
    found = &value;
  }
  return found;
}

/// One line of a canonical text of a message, for the whole-vs-pieces comparison.
inline void describe_fields(std::string& out, const HttpHeaders& headers, const std::string& body) {
  for (const auto& [name, value] : headers.fields) out.append(name).append(": ").append(value).append("\n");
  out.append("body ").append(std::to_string(body.size())).append(" ").append(body).append("\n");
}

}  // namespace fiberloop::fuzz
