// func4..func6: the customer, the cart and its price; the quote as JSON.
#include <array>
#include <map>

#include <boost/json.hpp>

#include "order.hpp"

namespace legacy::detail {
namespace {

struct Region {
  std::string_view currency;
  int tax_bp;
};

// The "customer database": regions by code, tiers by rank.
const std::map<std::string_view, Region>& regions() {
  static const std::map<std::string_view, Region> table = {
      {"eu-west", {"EUR", 2000}}, {"eu-north", {"SEK", 2500}}, {"us-east", {"USD", 800}},
      {"us-west", {"USD", 925}},  {"ap-south", {"INR", 1800}},
  };
  return table;
}

struct Tier {
  std::string_view name;
  int discount_bp;
};
constexpr std::array<Tier, 4> tiers = {{{"standard", 0}, {"silver", 300}, {"gold", 700}, {"platinum", 1200}}};
constexpr std::array<std::string_view, 5> region_of_shard = {"eu-west", "us-east", "eu-north", "us-west",
                                                             "ap-south"};

Customer lookup_customer(std::uint64_t id) {
  Customer customer;
  customer.id = id;
  customer.name = "customer-" + std::to_string(id);
  const Tier& tier = tiers[(id / 5) % tiers.size()];
  customer.tier = tier.name;
  customer.discount_bp = tier.discount_bp;
  customer.region = region_of_shard[id % region_of_shard.size()];
  const auto region = regions().find(customer.region);
  if (region == regions().end()) throw std::logic_error("customer " + std::to_string(id) + " has no region");
  customer.currency = region->second.currency;
  customer.tax_bp = region->second.tax_bp;
  return customer;
}

std::int64_t basis_points(std::int64_t cents, int bp) { return (cents * bp + 5000) / 10000; }

}  // namespace

// func4: who is ordering, and the quote as the JSON the clients expect.
Reply quote_order(const OrderParams& order) {
  const Customer customer = lookup_customer(order.customer);
  const Quote quote = build_cart(customer, order.items);

  boost::json::object body;
  body["customer"] = {{"id", customer.id},
                      {"name", customer.name},
                      {"tier", customer.tier},
                      {"region", customer.region}};
  boost::json::array lines;
  for (const QuoteLine& line : quote.lines) {
    lines.push_back({{"sku", line.item.sku},
                     {"quantity", line.item.quantity},
                     {"unit_cents", line.unit_cents},
                     {"available", line.available},
                     {"line_cents", line.line_cents}});
  }
  body["lines"] = std::move(lines);
  body["subtotal_cents"] = quote.subtotal_cents;
  body["discount_cents"] = quote.discount_cents;
  body["tax_cents"] = quote.tax_cents;
  body["total_cents"] = quote.total_cents;
  body["currency"] = customer.currency;

  Reply reply;
  reply.body = boost::json::serialize(body);
  reply.body.push_back('\n');
  return reply;
}

// func5: what the customer's cart holds (the "basket service", deterministic here).
Quote build_cart(const Customer& customer, int items) {
  std::vector<CartLine> cart;
  cart.reserve(static_cast<std::size_t>(items));
  for (int i = 0; i < items; ++i) {
    const auto n = static_cast<std::uint64_t>(i);
    CartLine line;
    line.sku = 1 + (customer.id * 2'654'435'761ULL + n * 40'503ULL) % 100'000;
    line.quantity = 1 + static_cast<int>((customer.id + n) % 4);
    cart.push_back(line);
  }
  return price_cart(customer, cart);
}

// func6: prices from the inventory, the tier's discount and the region's tax.
Quote price_cart(const Customer& customer, const std::vector<CartLine>& cart) {
  const std::vector<StockLine> stock = check_stock(cart);
  Quote quote;
  for (std::size_t i = 0; i < cart.size(); ++i) {
    QuoteLine line;
    line.item = cart[i];
    line.unit_cents = stock[i].price_cents;
    line.available = stock[i].stock >= cart[i].quantity;
    line.line_cents = line.available ? line.unit_cents * cart[i].quantity : 0;
    quote.subtotal_cents += line.line_cents;
    quote.lines.push_back(line);
  }
  quote.discount_cents = basis_points(quote.subtotal_cents, customer.discount_bp);
  quote.tax_cents = basis_points(quote.subtotal_cents - quote.discount_cents, customer.tax_bp);
  quote.total_cents = quote.subtotal_cents - quote.discount_cents + quote.tax_cents;
  return quote;
}

}  // namespace legacy::detail
