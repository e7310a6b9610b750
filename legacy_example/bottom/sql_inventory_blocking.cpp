// --inventory for the threaded programs, as a legacy server has it: the blocking
// drivers (sqlite3, Connector/C) behind a hand-written pool of at most
// sql_connections connections, handed out first come, first served; a thread blocks
// on its connection for the whole query.
#include <chrono>
#include <memory>
#include <stdexcept>

#include "../support/inventory_protocol.hpp"
#include "../support/sql_url.hpp"
#include "blocking_pool.hpp"
#include "blocking_sql.hpp"
#include "inventory_db.hpp"

namespace legacy {
namespace {

struct DbConnection {
  std::unique_ptr<BlockingSqlConnection> db;  // null: not connected (yet, or after a failure)
  bool is_open() const noexcept { return db != nullptr; }
};

SqlUrl g_url;
std::chrono::milliseconds g_timeout{0};
BlockingPool<DbConnection> g_pool("inventory database");

std::vector<inventory::Item> items_of(const std::vector<BlockingSqlConnection::Row>& rows) {
  std::vector<inventory::Item> items;
  items.reserve(rows.size());
  for (const BlockingSqlConnection::Row& row : rows) {
    if (row.size() != 3) throw BackendError("inventory database: a row of " + std::to_string(row.size()) + " columns");
    items.push_back({row[0], row[1], row[2]});
  }
  return items;
}

}  // namespace

void inventory_db_start(const BackendConfig& config) {
  try {
    g_url = parse_sql_url(config.inventory_url);
  } catch (const std::invalid_argument& e) {
    throw BackendError(e.what());
  }
  g_timeout = config.timeout;
  g_pool.configure(config.sql_connections, config.timeout);
}

void inventory_db_stop() noexcept { g_pool.clear(); }

BackendReply ask_inventory_db(const std::string& target) {
  inventory::Request asked = inventory::parse_target(target);
  if (asked.refusal) return {asked.refusal->status, std::move(asked.refusal->body)};
  const auto deadline = std::chrono::steady_clock::now() + g_timeout;
  const PoolLease<DbConnection> lease(g_pool, deadline);
  DbConnection& c = *lease;
  const std::string sql = inventory::select_sql(asked.skus.size());
  for (int attempt = 0;; ++attempt) {
    const bool reused = c.is_open();
    try {
      if (!reused) c.db = connect_blocking(g_url, g_timeout);
      inventory::Answer answer = inventory::found(asked.skus, items_of(c.db->query(sql, asked.skus)));
      return {answer.status, std::move(answer.body)};
    } catch (const BlockingSqlError& e) {
      c.db.reset();  // whatever failed, the next call starts on a fresh connection
      // The server closed our idle connection (wait_timeout, a restart): one fresh try.
      if (reused && attempt == 0 && e.connection_lost() && std::chrono::steady_clock::now() < deadline) continue;
      throw;
    }
  }
}

}  // namespace legacy
