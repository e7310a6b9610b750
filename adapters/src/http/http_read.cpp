// Validation of parsed HTTP heads beyond Beast's grammar (see http_read.hpp): where a
// request could be read two ways by two servers (request smuggling), it is refused.

#include "http_read.hpp"

namespace fiberloop::detail {

namespace {

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) noexcept { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool all_digits(std::string_view text) noexcept {
  return std::all_of(text.begin(), text.end(), [](char c) { return is_digit(c); });
}

/// RFC 3986 unreserved or sub-delims: what a reg-name holds besides pct-encoding.
bool is_name_char(char c) noexcept {
  return is_alpha(c) || is_digit(c) || std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
}

/// `uri-host [ ":" port ]` as RFC 9110 7.2 has it for Host and an absolute-form
/// authority: no userinfo, no path, no whitespace, no 8-bit bytes. Like nginx, also
/// no empty host and no "..": a host is often used as a directory or file name.
bool valid_authority(std::string_view authority) noexcept {
  std::string_view host = authority;
  std::string_view port;
  if (host.starts_with('[')) {  // IP-literal: an IPv6 address or IPvFuture
    const auto close = host.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (char c : host.substr(1, close - 1))
      if (!is_name_char(c) && c != ':') return false;
    const std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return false;
    port = rest.empty() ? rest : rest.substr(1);
  } else {
    const auto colon = host.find(':');
    if (colon != std::string_view::npos) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
    }
    if (host.empty() || host.find("..") != std::string_view::npos) return false;
    for (std::size_t i = 0; i < host.size(); ++i) {
      if (host[i] == '%') {
        if (i + 2 >= host.size() || !is_hex(host[i + 1]) || !is_hex(host[i + 2])) return false;
        i += 2;
      } else if (!is_name_char(host[i])) {
        return false;
      }
    }
  }
  return all_digits(port);
}

/// For "scheme://authority[/path][?query]", the length of "scheme://"; else 0.
std::size_t absolute_form_prefix(std::string_view target) noexcept {
  const auto colon = target.find("://");
  if (colon == std::string_view::npos || colon == 0 || !is_alpha(target[0])) return 0;
  for (char c : target.substr(0, colon))
    if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.') return 0;
  return colon + 3;
}

void split_path_query(HttpRequest& request, std::string_view path_and_query) {
  const auto mark = path_and_query.find('?');
  request.path.assign(path_and_query.substr(0, mark));
  if (request.path.empty()) request.path.push_back('/');  // "http://host?q" asks for "/?q"
  if (mark != std::string_view::npos) request.query.assign(path_and_query.substr(mark + 1));
}

}  // namespace

int status_for(const error_code& ec, std::string_view line) noexcept {
  if (ec == beast_http::error::header_limit || ec == wire_error::trailers_too_large) return 431;
  if (ec == beast_http::error::body_limit) return 413;
  if (ec == beast_http::error::bad_version) {
    // "METHOD target HTTP/<anything but 1.0 or 1.1>" is a version we do not speak
    // (505); a request line of another shape, or one ended by a bare LF, is
    // malformed (400).
    line = line.substr(0, line.find('\n'));
    if (line.ends_with('\r')) line.remove_suffix(1);
    const auto first = line.find(' ');
    const auto last = line.rfind(' ');
    const std::string_view version = last == std::string_view::npos ? line : line.substr(last + 1);
    if (first != last && line.find(' ', first + 1) == last && version.starts_with("HTTP/") &&
        version != "HTTP/1.0" && version != "HTTP/1.1")
      return 505;
  }
  return 400;  // bad request line, field, value, chunk, obs-fold, content length...
}

void clear_request(HttpRequest& request) noexcept {
  // clear() keeps the strings' memory for the next request on this connection.
  request.method.clear();
  request.target.clear();
  request.path.clear();
  request.query.clear();
  request.version = 11;
  request.headers.fields.clear();
  request.body.clear();
  request.trailers.fields.clear();
}

int validate_request_head(HttpRequest& request) {
  if (request.version != 10 && request.version != 11) return 505;  // Beast refuses these itself

  // The target: origin-form, absolute-form, or "*" for OPTIONS (RFC 9112 3.2). No
  // authority-form: CONNECT is not supported (nginx answers it 400 too).
  const std::string_view target = request.target;
  std::string_view authority;
  std::string_view path_and_query = target;
  if (const std::size_t prefix = absolute_form_prefix(target)) {
    const auto authority_end = target.find_first_of("/?", prefix);
    authority = target.substr(prefix, authority_end - prefix);
    if (!valid_authority(authority)) return 400;  // userinfo ("user@host") included
    path_and_query = authority_end == std::string_view::npos ? std::string_view() : target.substr(authority_end);
  } else if (!target.starts_with('/') && !(target == "*" && request.method == "OPTIONS")) {
    return 400;
  }

  // One Host (RFC 9112 3.2), at most one Content-Length and Transfer-Encoding line
  // (as nginx): a repeated one is read differently by different servers.
  std::string* host = nullptr;
  const std::string* content_length = nullptr;
  const std::string* transfer_encoding = nullptr;
  for (auto& [name, value] : request.headers.fields) {
    if (http_iequals(name, "host")) {
      if (host) return 400;
      host = &value;
    } else if (http_iequals(name, "content-length")) {
      if (content_length) return 400;
      content_length = &value;
    } else if (http_iequals(name, "transfer-encoding")) {
      if (transfer_encoding) return 400;
      transfer_encoding = &value;
    }
  }
  if (request.version == 11 && !host) return 400;
  if (host && !valid_authority(*host)) return 400;

  if (transfer_encoding) {
    // RFC 9112 6.1: HTTP/1.0 has no Transfer-Encoding; with Content-Length too the
    // length is ambiguous (6.3 lets us refuse; nginx does). Any coding but a lone
    // "chunked" we cannot decode: 501, as nginx (a final coding other than chunked
    // leaves the length unknown, which RFC 9112 6.3 would answer 400).
    if (request.version == 10 || content_length) return 400;
    if (!http_iequals(*transfer_encoding, "chunked")) return 501;
  }
  // Beast takes "3, 3" for 3; other servers do not (nginx: 400).
  if (content_length && (content_length->empty() || !all_digits(*content_length))) return 400;

  if (!authority.empty()) {  // the target's authority wins (RFC 9112 3.2.2)
    if (host) {
      host->assign(authority);
    } else {
      request.headers.add("Host", std::string(authority));  // HTTP/1.0 may omit Host
    }
  }
  if (target == "*") {
    request.path.push_back('*');  // (push_back: GCC 12 -Wrestrict misfires on = "*")
  } else {
    split_path_query(request, path_and_query);
  }
  return 0;
}

void throw_bad_response(const error_code& ec, const ResponseExpectation& expectation) {
  const std::string where(expectation.where);
  if (ec == beast_http::error::body_limit)
    throw Error("HttpClient: the response body of " + where + " is larger than " +
                std::to_string(expectation.max_body_bytes) + " bytes (FetchOptions::max_body_bytes)");
  if (ec == beast_http::error::header_limit)
    throw Error("HttpClient: malformed HTTP response from " + where + ": headers larger than " +
                std::to_string(expectation.max_header_bytes) + " bytes");
  if (ec == wire_error::trailers_too_large)
    throw Error("HttpClient: malformed HTTP response from " + where + ": headers and trailer fields larger than " +
                std::to_string(expectation.max_header_bytes) + " bytes");
  throw Error("HttpClient: malformed HTTP response from " + where + ": " + ec.message());
}

void validate_response_head(const HttpResponse& response, const ResponseExpectation& expectation) {
  // RFC 9112 6.3: Transfer-Encoding overrides Content-Length, but a response with both
  // "ought to be handled as an error" (smuggling or response splitting). Beast refuses
  // some orders itself and believes Content-Length in others.
  if (response.headers.find("transfer-encoding") && response.headers.find("content-length"))
    throw Error("HttpClient: malformed HTTP response from " + std::string(expectation.where) +
                ": both Transfer-Encoding and Content-Length");
}

}  // namespace fiberloop::detail
