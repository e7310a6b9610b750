#include "sql_url.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <stdexcept>

namespace legacy {
namespace {

// Names the URL by its scheme only: the rest may hold a password.
[[noreturn]] void bad_url(std::string_view url, std::string_view why) {
  const std::string_view scheme = url.substr(0, std::min(url.find(':'), std::size_t{16}));
  throw std::invalid_argument("bad database URL (" + std::string(scheme) + ":...): " + std::string(why) +
                              " (want sqlite:PATH or mysql://user:password@host:port/database)");
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decoded(std::string_view url, std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    const int high = i + 2 < text.size() ? hex_digit(text[i + 1]) : -1;
    const int low = high >= 0 ? hex_digit(text[i + 2]) : -1;
    if (low < 0) bad_url(url, "a '%' not followed by two hex digits");
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

SqlUrl parse_mariadb(std::string_view url, std::string_view rest) {
  SqlUrl parsed;
  parsed.driver = SqlUrl::Driver::mariadb;
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    const std::string_view database = rest.substr(slash + 1);
    if (database.find_first_of("/?#") != std::string_view::npos)
      bad_url(url, "the database name holds '/', '?' or '#' (options are not supported)");
    parsed.database = percent_decoded(url, database);
  }
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    const auto colon = userinfo.find(':');
    parsed.user = percent_decoded(url, userinfo.substr(0, colon));
    if (colon != std::string_view::npos) parsed.password = percent_decoded(url, userinfo.substr(colon + 1));
  }
  std::optional<std::string_view> port;  // "host:" has an empty port: refused
  if (authority.substr(0, 1) == "[") {  // [v6 address]
    const auto close = authority.find(']');
    if (close == std::string_view::npos) bad_url(url, "'[' without ']'");
    parsed.host = authority.substr(1, close - 1);
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority[0] != ':') bad_url(url, "text after ']'");
    if (!authority.empty()) port = authority.substr(1);
  } else {
    const auto colon = authority.find(':');
    parsed.host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (parsed.host.empty()) bad_url(url, "no host");
  if (port) {
    unsigned number = 0;
    const auto [end, ec] = std::from_chars(port->data(), port->data() + port->size(), number);
    if (ec != std::errc() || end != port->data() + port->size() || number == 0 || number > 65535)
      bad_url(url, "the port is not a number 1-65535");
    parsed.port = static_cast<std::uint16_t>(number);
  }
  return parsed;
}

}  // namespace

SqlUrl parse_sql_url(std::string_view url) {
  if (url.substr(0, 7) == "sqlite:") {
    SqlUrl parsed;
    parsed.path = url.substr(7);
    if (parsed.path.empty()) bad_url(url, "no file after 'sqlite:'");
    if (parsed.path == ":memory:") bad_url(url, "a private in-memory database holds no inventory; name a file");
    return parsed;
  }
  for (const std::string_view scheme : {"mysql://", "mariadb://"})
    if (url.substr(0, scheme.size()) == scheme) return parse_mariadb(url, url.substr(scheme.size()));
  bad_url(url, "unknown scheme");
}

}  // namespace legacy
