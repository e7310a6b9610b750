// func1..func3: from the raw request target to validated order parameters.
#include <charconv>
#include <optional>

#include "order.hpp"

namespace legacy::detail {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// application/x-www-form-urlencoded decoding; a broken escape is the client's fault.
std::string url_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      const int hi = i + 2 < text.size() ? hex_value(text[i + 1]) : -1;
      const int lo = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
      if (hi < 0 || lo < 0) throw Refused(400, "malformed percent-escape in the query");
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<std::uint64_t> parse_number(std::string_view text, std::uint64_t min, std::uint64_t max) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  if (value < min || value > max) return std::nullopt;
  return value;
}

}  // namespace

// func1: the method and the shape of the target.
Reply parse_target(const Request& request) {
  if (request.method != "GET") throw Refused(404, "no such resource");
  const std::string_view target = request.target;
  if (target.empty() || target.front() != '/') throw Refused(400, "the request target must start with '/'");
  const auto question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::string_view query = question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  return route(path, query);
}

// func2: which resource, and the query split into decoded name=value pairs.
Reply route(std::string_view path, std::string_view query) {
  if (path != "/order") throw Refused(404, "no such resource");
  QueryParams params;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    std::string name = url_decode(pair.substr(0, eq));
    std::string value = eq == std::string_view::npos ? std::string() : url_decode(pair.substr(eq + 1));
    params.emplace_back(std::move(name), std::move(value));
  }
  return validate_params(params);
}

// func3: the parameters an order needs, with their limits.
Reply validate_params(const QueryParams& params) {
  OrderParams order;
  bool have_customer = false;
  bool have_items = false;
  for (const auto& [name, value] : params) {
    if (name == "customer") {
      if (have_customer) throw Refused(400, "customer given twice");
      const auto id = parse_number(value, 1, 999'999'999);
      if (!id) throw Refused(400, "customer must be a number from 1 to 999999999");
      order.customer = *id;
      have_customer = true;
    } else if (name == "items") {
      if (have_items) throw Refused(400, "items given twice");
      const auto n = parse_number(value, 1, 20);
      if (!n) throw Refused(400, "items must be a number from 1 to 20");
      order.items = static_cast<int>(*n);
      have_items = true;
    }
    // Unknown parameters are ignored, as the old clients send tracking ones.
  }
  if (!have_customer) throw Refused(400, "customer is required");
  return quote_order(order);
}

}  // namespace legacy::detail
