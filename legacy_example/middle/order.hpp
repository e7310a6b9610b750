#pragma once
// The middle's own declarations (not used by any top): the ten functions between
// handle_request() and do_stuff(), in call order, and the values they pass.
//
//   handle_request -> parse_target (1) -> route (2) -> validate_params (3)
//     -> quote_order (4) -> build_cart (5) -> price_cart (6) -> check_stock (7)
//     -> fetch_inventory (8) -> checked_get (9) -> call_backend (10) -> do_stuff

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backend.hpp"
#include "service.hpp"

namespace legacy::detail {

/// A request the service refuses with `status` (400, 404); the message is the body's "error".
class Refused : public std::runtime_error {
 public:
  Refused(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

using QueryParams = std::vector<std::pair<std::string, std::string>>;

struct OrderParams {
  std::uint64_t customer = 0;
  int items = 3;
};

struct Customer {
  std::uint64_t id = 0;
  std::string name;
  std::string_view tier;
  std::string_view region;
  std::string_view currency;
  int discount_bp = 0;  // basis points
  int tax_bp = 0;
};

struct CartLine {
  std::uint64_t sku = 0;
  int quantity = 0;
};

struct StockLine {
  std::uint64_t sku = 0;
  std::int64_t stock = 0;
  std::int64_t price_cents = 0;
};

struct QuoteLine {
  CartLine item;
  std::int64_t unit_cents = 0;
  bool available = false;
  std::int64_t line_cents = 0;
};

struct Quote {
  std::vector<QuoteLine> lines;
  std::int64_t subtotal_cents = 0;
  std::int64_t discount_cents = 0;
  std::int64_t tax_cents = 0;
  std::int64_t total_cents = 0;
};

Reply parse_target(const Request& request);                                    // func1
Reply route(std::string_view path, std::string_view query);                    // func2
Reply validate_params(const QueryParams& params);                              // func3
Reply quote_order(const OrderParams& order);                                   // func4
Quote build_cart(const Customer& customer, int items);                         // func5
Quote price_cart(const Customer& customer, const std::vector<CartLine>& cart);  // func6
std::vector<StockLine> check_stock(const std::vector<CartLine>& cart);         // func7
std::vector<StockLine> fetch_inventory(const std::string& target);             // func8
std::string checked_get(const std::string& target);                            // func9
BackendReply call_backend(const std::string& target);                          // func10

}  // namespace legacy::detail
