// func7..func10: the inventory lookup, down to do_stuff() and the network.
#include <boost/json.hpp>

#include "order.hpp"

namespace legacy::detail {
namespace {

// The backend's answer is checked like any outside input: a bad one is a BackendError (502).
std::uint64_t json_uint(const boost::json::object& item, std::string_view key) {
  const boost::json::value* v = item.if_contains(key);
  if (v == nullptr || !v->is_number()) throw BackendError("inventory reply: item without a numeric " + std::string(key));
  boost::system::error_code ec;
  const auto n = v->to_number<std::uint64_t>(ec);
  if (ec) throw BackendError("inventory reply: " + std::string(key) + " out of range");
  return n;
}

}  // namespace

// func7: one inventory request for the whole cart; every sku must come back.
std::vector<StockLine> check_stock(const std::vector<CartLine>& cart) {
  std::string target = "/inventory?sku=";
  for (std::size_t i = 0; i < cart.size(); ++i) {
    if (i) target.push_back(',');
    target.append(std::to_string(cart[i].sku));
  }
  const std::vector<StockLine> found = fetch_inventory(target);
  std::vector<StockLine> stock;
  stock.reserve(cart.size());
  for (const CartLine& line : cart) {
    const StockLine* match = nullptr;
    for (const StockLine& s : found) {
      if (s.sku == line.sku) match = &s;
    }
    if (match == nullptr) throw BackendError("inventory reply lacks sku " + std::to_string(line.sku));
    stock.push_back(*match);
  }
  return stock;
}

// func8: the backend's JSON into stock lines.
std::vector<StockLine> fetch_inventory(const std::string& target) {
  const std::string body = checked_get(target);
  boost::system::error_code ec;
  const boost::json::value doc = boost::json::parse(body, ec);
  if (ec) throw BackendError("inventory reply is not JSON: " + ec.message());
  const boost::json::object* root = doc.if_object();
  const boost::json::value* items = root ? root->if_contains("items") : nullptr;
  if (items == nullptr || !items->is_array()) throw BackendError("inventory reply has no items array");
  std::vector<StockLine> lines;
  for (const boost::json::value& v : items->get_array()) {
    if (!v.is_object()) throw BackendError("inventory reply: an item is not an object");
    const auto& item = v.get_object();
    StockLine line;
    line.sku = json_uint(item, "sku");
    line.stock = static_cast<std::int64_t>(json_uint(item, "stock"));
    line.price_cents = static_cast<std::int64_t>(json_uint(item, "price_cents"));
    lines.push_back(line);
  }
  return lines;
}

// func9: only a 200 with a body is an answer.
std::string checked_get(const std::string& target) {
  BackendReply reply = call_backend(target);
  if (reply.status != 200)
    throw BackendError("inventory service answered " + std::to_string(reply.status) + " for " + target);
  if (reply.body.empty()) throw BackendError("inventory service sent an empty body for " + target);
  return std::move(reply.body);
}

// func10: the last function before the network; guards what goes out.
BackendReply call_backend(const std::string& target) {
  if (target.size() > 2048 || target.find_first_of("\r\n ") != std::string::npos)
    throw std::logic_error("backend target is not a valid request target: " + target.substr(0, 64));
  return do_stuff(target);
}

}  // namespace legacy::detail
