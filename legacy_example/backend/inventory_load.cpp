// Fills the database that --inventory reads: table `inventory` with skus 1..N at the
// stock levels and prices legacy_backend answers (support/inventory_protocol.hpp), so
// the programs answer the same with the HTTP backend and with the database.
//
//   legacy_inventory_load URL [--skus 100000]
//
// URL as --inventory takes it (sqlite:PATH creates the file; mysql://…/DB creates the
// database). The table is created when missing and its rows replaced, in one
// transaction, through the blocking drivers with bound parameters.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../bottom/blocking_sql.hpp"
#include "../support/inventory_protocol.hpp"
#include "../support/sql_url.hpp"

namespace {

constexpr const char* usage = "usage: legacy_inventory_load URL [--skus 100000]\n"
                              "  URL: sqlite:PATH or mysql://user:password@host:port/database (also mariadb://)\n";
constexpr std::int64_t default_skus = 100'000;  // the middle's carts use skus 1..100000
constexpr std::int64_t rows_per_insert = 500;

std::string insert_sql(std::int64_t rows) {
  std::string sql = "INSERT INTO inventory (sku, stock, price_cents) VALUES ";
  for (std::int64_t i = 0; i < rows; ++i) sql.append(i ? ",(?,?,?)" : "(?,?,?)");
  return sql;
}

/// `name` as a MariaDB identifier: in backquotes, a backquote doubled.
std::string quoted_identifier(const std::string& name) {
  std::string out = "`";
  for (const char c : name) out.append(c == '`' ? "``" : std::string(1, c));
  return out + "`";
}

void load(const legacy::SqlUrl& url, std::int64_t skus) {
  constexpr std::chrono::milliseconds timeout = std::chrono::seconds(30);
  std::unique_ptr<legacy::BlockingSqlConnection> db;
  if (url.driver == legacy::SqlUrl::Driver::mariadb) {
    if (url.database.empty()) throw std::invalid_argument("the URL names no database: mysql://…/DATABASE");
    legacy::SqlUrl server = url;
    server.database.clear();  // it may not exist yet
    db = legacy::connect_blocking(server, timeout);
    db->execute("CREATE DATABASE IF NOT EXISTS " + quoted_identifier(url.database));
    db->execute("USE " + quoted_identifier(url.database));
  } else {
    db = legacy::connect_blocking(url, timeout, /*create=*/true);
  }
  db->execute(
      "CREATE TABLE IF NOT EXISTS inventory (sku BIGINT PRIMARY KEY, stock BIGINT NOT NULL, "
      "price_cents BIGINT NOT NULL)");
  db->execute("BEGIN");
  db->execute("DELETE FROM inventory");
  std::vector<std::int64_t> params;
  for (std::int64_t first = 1; first <= skus; first += rows_per_insert) {
    const std::int64_t rows = std::min(rows_per_insert, skus - first + 1);
    params.clear();
    for (std::int64_t sku = first; sku < first + rows; ++sku) {
      const legacy::inventory::Item item = legacy::inventory::catalogue_item(sku);
      params.insert(params.end(), {item.sku, item.stock, item.price_cents});
    }
    db->query(insert_sql(rows), params);
  }
  db->execute("COMMIT");
}

}  // namespace

int main(int argc, char** argv) {
  std::int64_t skus = default_skus;
  std::string_view url_text;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (arg == "--skus" && i + 1 < argc) {
      const std::string_view value = argv[++i];
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), skus);
      if (ec != std::errc() || end != value.data() + value.size() || skus < 1 ||
          skus > legacy::inventory::max_sku) {
        std::fprintf(stderr, "legacy_inventory_load: bad --skus '%s' (1-%lld)\n%s", argv[i],
                     static_cast<long long>(legacy::inventory::max_sku), usage);
        return 1;
      }
    } else if (url_text.empty() && arg.substr(0, 1) != "-") {
      url_text = arg;
    } else {
      std::fprintf(stderr, "legacy_inventory_load: unexpected argument '%s'\n%s", argv[i], usage);
      return 1;
    }
  }
  if (url_text.empty()) {
    std::fprintf(stderr, "legacy_inventory_load: no URL\n%s", usage);
    return 1;
  }
  try {
    const legacy::SqlUrl url = legacy::parse_sql_url(url_text);
    const auto start = std::chrono::steady_clock::now();
    load(url, skus);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    std::printf("loaded skus 1..%lld into %s in %.1f s\n", static_cast<long long>(skus), legacy::describe(url).c_str(),
                took.count());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "legacy_inventory_load: %s\n", e.what());
    return 1;
  }
  return 0;
}
