#pragma once
/// @file
/// --inventory: do_stuff() answers the inventory service's requests
/// (support/inventory_protocol.hpp) from a database table instead of the HTTP
/// backend, with the same bytes:
///
///   inventory(sku BIGINT PRIMARY KEY, stock BIGINT, price_cents BIGINT)
///   SELECT sku, stock, price_cents FROM inventory WHERE sku IN (?,?,...)
///
/// Each bottom links its own definition: sql_inventory_blocking.cpp (the blocking
/// drivers and a hand-written pool, as legacy servers have it) or
/// sql_inventory_fibers.cpp (fiberloop::SqlDatabase). The bottom's backend_start()
/// and backend_stop() call these when BackendConfig::inventory_url is set.

#include <string>

#include "../middle/backend.hpp"
#include "backend_client.hpp"

namespace legacy {

/// Connects to nothing yet (connections are made on first use). Threads and fibers as
/// backend_start(). Throws BackendError for a URL that names no database.
void inventory_db_start(const BackendConfig& config);

/// Closes the connections; a no-op when inventory_db_start() was not called.
void inventory_db_stop() noexcept;

/// do_stuff() for `target` from the database: 200 with the skus found, 400/404 as the
/// backend answers a bad target. Throws BackendError when the database fails or
/// does not answer within BackendConfig::timeout.
BackendReply ask_inventory_db(const std::string& target);

}  // namespace legacy
