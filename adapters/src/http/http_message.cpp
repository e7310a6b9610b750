// HttpHeaders, reason phrases and the serialising helpers both HTTP ends share.

#include <charconv>

#include "http_wire.hpp"

namespace fiberloop {

namespace {
constexpr char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
}  // namespace

bool http_iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

const std::string* HttpHeaders::find(std::string_view name) const noexcept {
  for (const auto& field : fields)
    if (http_iequals(field.first, name)) return &field.second;
  return nullptr;
}

std::string HttpHeaders::get(std::string_view name, std::string fallback) const {
  const std::string* value = find(name);
  return value ? *value : std::move(fallback);
}

std::size_t HttpHeaders::remove(std::string_view name) {
  const auto before = fields.size();
  std::erase_if(fields, [&](const auto& field) { return http_iequals(field.first, name); });
  return before - fields.size();
}

void HttpHeaders::set(std::string name, std::string value) {
  remove(name);
  fields.emplace_back(std::move(name), std::move(value));
}

void HttpHeaders::add(std::string name, std::string value) { fields.emplace_back(std::move(name), std::move(value)); }

std::string_view http_reason_phrase(int status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

namespace detail {

// boost::system::error_category's destructor is non-virtual by design (categories are
// never deleted through a base pointer): -Wnon-virtual-dtor does not apply.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
const boost::system::error_category& wire_category() noexcept {
  struct Category final : boost::system::error_category {
    const char* name() const noexcept override { return "fiberloop.http"; }
    std::string message(int value) const override {
      switch (static_cast<wire_error>(value)) {
        case wire_error::chunk_line_too_long:
          return "a chunk-size line with its extensions is longer than " + std::to_string(max_chunk_line_bytes) +
                 " bytes";
        case wire_error::trailers_too_large: return "the trailer section is larger than the header limit";
        case wire_error::obs_fold: return "obsolete line folding in a header field";
      }
      return "unknown HTTP wire error";
    }
  };
  static const Category category;
  return category;
}
#pragma GCC diagnostic pop

bool is_token(std::string_view text) noexcept {
  if (text.empty()) return false;
  for (char c : text)  // 8-bit bytes are negative chars: refused by the first test
    if (c <= ' ' || c >= 0x7f || std::string_view("\"(),/:;<=>?@[\\]{}").find(c) != std::string_view::npos) return false;
  return true;
}

bool has_control(std::string_view text) noexcept {
  for (char c : text)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return true;
  return false;
}

void append_fields(std::string& out, const HttpHeaders& headers, std::initializer_list<std::string_view> skip) {
  for (const auto& field : headers.fields) {
    // Named references, not a structured binding: clang 14 cannot capture those.
    const std::string& name = field.first;
    const std::string& value = field.second;
    // Checked before the skip list: "Transfer-Encoding " would pass it and reach a
    // lenient server as Transfer-Encoding.
    if (!is_token(name) || has_control(value))
      throw Error("HTTP header \"" + name.substr(0, 64) +
                  "\" has a name that is not a token (empty, or with spaces, colons or other separators) or a "
                  "control character (CR, LF, NUL...) in its value; fix or remove it");
    if (std::any_of(skip.begin(), skip.end(), [&](std::string_view s) { return http_iequals(name, s); })) continue;
    out.append(name).append(": ").append(value).append("\r\n");
  }
}

void append_decimal(std::string& out, std::uint64_t value) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, end);
}

bool has_token(std::string_view list, std::string_view token) noexcept {
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (http_iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace detail
}  // namespace fiberloop
