#pragma once
/// @file
/// The inventory service's protocol, for everything that answers do_stuff()'s
/// inventory requests: the HTTP backend (backend/backend_main.cpp) and the SQL
/// bottoms (--inventory), which must send the same bytes; and the stock levels and
/// prices of the synthetic catalogue, which the backend computes and
/// legacy_inventory_load writes into the database. No fiberloop and no driver here.
///
///   GET /inventory?sku=<n>[,<n>...]  (1 to 50 skus, each 1..999999999)
///   -> 200 {"items":[{"sku":n,"stock":s,"price_cents":p},...]}\n, in the order asked
///   (a sku asked twice comes twice; one the catalogue lacks is left out)
///   -> 400 for bad skus, 404 for another path.

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace legacy::inventory {

struct Item {
  std::int64_t sku = 0;
  std::int64_t stock = 0;
  std::int64_t price_cents = 0;
};

/// A reply of the inventory service: the HTTP status and the JSON body.
struct Answer {
  int status = 200;
  std::string body;
};

inline constexpr std::size_t max_skus = 50;
inline constexpr std::int64_t max_sku = 999'999'999;

/// The catalogue's stock and price for `sku` (the backend's formula, and what the loader stores).
inline Item catalogue_item(std::int64_t sku) { return {sku, sku * 37 % 50, 199 + sku * 7919 % 9800}; }

/// The skus of a query string "sku=1,2,3", or nullopt when it is not 1 to 50 numbers
/// 1..999999999.
inline std::optional<std::vector<std::int64_t>> parse_skus(std::string_view query) {
  if (query.substr(0, 4) != "sku=") return std::nullopt;
  query.remove_prefix(4);
  std::vector<std::int64_t> skus;
  while (true) {
    const auto comma = query.find(',');
    const std::string_view item = query.substr(0, comma);
    std::int64_t sku = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), sku);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || sku < 1 || sku > max_sku ||
        skus.size() == max_skus)
      return std::nullopt;
    skus.push_back(sku);
    if (comma == std::string_view::npos) return skus;
    query.remove_prefix(comma + 1);
  }
}

inline Answer not_found() { return {404, "{\"error\":\"not found\"}\n"}; }
inline Answer bad_skus() {
  return {400, "{\"error\":\"sku must be 1 to 50 numbers 1..999999999, comma-separated\"}\n"};
}

/// What a request for `path` and `query` asks: the skus, or the refusal to answer.
struct Request {
  std::vector<std::int64_t> skus;
  std::optional<Answer> refusal;
};
inline Request parse_request(std::string_view path, std::string_view query) {
  if (path != "/inventory") return {{}, not_found()};
  std::optional<std::vector<std::int64_t>> skus = parse_skus(query);
  if (!skus) return {{}, bad_skus()};
  return {std::move(*skus), std::nullopt};
}
/// The same for an origin-form target "/inventory?sku=1,2" (what do_stuff() gets).
inline Request parse_target(std::string_view target) {
  const auto question = target.find('?');
  if (question == std::string_view::npos) return parse_request(target, {});
  return parse_request(target.substr(0, question), target.substr(question + 1));
}

/// The 200 answer for the skus asked, from the items found (in any order, at most one
/// per sku): in the order asked, leaving out those not found.
inline Answer found(const std::vector<std::int64_t>& asked, const std::vector<Item>& items) {
  std::string body = "{\"items\":[";
  bool first = true;
  for (const std::int64_t sku : asked) {
    const Item* match = nullptr;
    for (const Item& item : items)  // at most 50 each way: a scan is cheapest
      if (item.sku == sku) match = &item;
    if (match == nullptr) continue;
    if (!first) body.push_back(',');
    first = false;
    body.append("{\"sku\":").append(std::to_string(match->sku));
    body.append(",\"stock\":").append(std::to_string(match->stock));
    body.append(",\"price_cents\":").append(std::to_string(match->price_cents)).append("}");
  }
  body.append("]}\n");
  return {200, std::move(body)};
}

/// The one statement the SQL bottoms run, for `count` skus bound to its placeholders:
/// SELECT sku, stock, price_cents FROM inventory WHERE sku IN (?,?,...).
inline std::string select_sql(std::size_t count) {
  std::string sql = "SELECT sku, stock, price_cents FROM inventory WHERE sku IN (";
  for (std::size_t i = 0; i < count; ++i) sql.append(i ? ",?" : "?");
  sql.push_back(')');
  return sql;
}

}  // namespace legacy::inventory
