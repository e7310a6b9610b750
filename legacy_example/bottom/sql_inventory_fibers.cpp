// --inventory for the fiber program: one fiberloop::SqlDatabase on the loop. Its query()
// looks as blocking as the threaded bottom's, but suspends only the calling fiber
// while it waits for a pooled connection or for the database, so the loop serves the
// other requests meanwhile.
#include <memory>
#include <stdexcept>
#include <system_error>
#include <variant>

#include <fiberloop/sql.hpp>

#include "../support/inventory_protocol.hpp"
#include "inventory_db.hpp"

namespace legacy {
namespace {

std::unique_ptr<fiberloop::SqlDatabase> g_db;  // the loop thread's (every call below runs on it)

std::int64_t integer(const fiberloop::SqlValue& value) {
  if (const auto* n = std::get_if<std::int64_t>(&value)) return *n;
  throw BackendError("inventory database: a column that is not an integer");
}

std::vector<inventory::Item> items_of(const fiberloop::SqlResult& result) {
  std::vector<inventory::Item> items;
  items.reserve(result.rows.size());
  for (const std::vector<fiberloop::SqlValue>& row : result.rows) {
    if (row.size() != 3) throw BackendError("inventory database: a row of " + std::to_string(row.size()) + " columns");
    items.push_back({integer(row[0]), integer(row[1]), integer(row[2])});
  }
  return items;
}

}  // namespace

void inventory_db_start(const BackendConfig& config) {
  fiberloop::SqlPoolOptions options;
  options.max_connections = config.sql_connections;
  options.acquire_timeout = config.timeout;
  options.query_timeout = config.timeout;
  try {
    g_db = std::make_unique<fiberloop::SqlDatabase>(config.inventory_url, options);
  } catch (const std::invalid_argument& e) {
    throw BackendError(e.what());
  }
}

void inventory_db_stop() noexcept { g_db.reset(); }

BackendReply ask_inventory_db(const std::string& target) {
  inventory::Request asked = inventory::parse_target(target);
  if (asked.refusal) return {asked.refusal->status, std::move(asked.refusal->body)};
  std::vector<fiberloop::SqlValue> params(asked.skus.begin(), asked.skus.end());
  try {
    const fiberloop::SqlResult result = g_db->query(inventory::select_sql(asked.skus.size()), std::move(params));
    inventory::Answer answer = inventory::found(asked.skus, items_of(result));
    return {answer.status, std::move(answer.body)};
  } catch (const fiberloop::Error& e) {  // SqlError, TimeoutError, LoopClosed
    throw BackendError(std::string("inventory database: ") + e.what());
  } catch (const std::system_error& e) {
    throw BackendError(std::string("inventory database: ") + e.what());
  }
}

}  // namespace legacy
