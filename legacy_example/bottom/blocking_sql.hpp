#pragma once
/// @file
/// One blocking database connection, as a legacy server holds it: SQLite's C API or
/// Connector/C's blocking API (libmariadb), each statement prepared once per
/// connection and reused, parameters always bound. For the threaded programs'
/// --inventory (sql_inventory_blocking.cpp) and legacy_inventory_load. No fiberloop.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../middle/backend.hpp"
#include "../support/sql_url.hpp"

namespace legacy {

/// The database failed a statement, or the connection failed. Either way the
/// connection should be dropped; `connection_lost()` says the connection itself broke
/// (the server closed it or went away): a statement on a fresh one may succeed.
class BlockingSqlError : public BackendError {
 public:
  BlockingSqlError(const std::string& what, bool connection_lost)
      : BackendError(what), connection_lost_(connection_lost) {}
  bool connection_lost() const noexcept { return connection_lost_; }

 private:
  bool connection_lost_;
};

/// Thread: one at a time (a pool lends it to one thread per call).
class BlockingSqlConnection {
 public:
  using Row = std::vector<std::int64_t>;

  virtual ~BlockingSqlConnection() = default;
  /// Runs `sql` with `params` bound to its '?' placeholders; returns its rows, whose
  /// every column must be an integer (a NULL or text is a BlockingSqlError). The
  /// statement is prepared on first use and kept. Throws BlockingSqlError.
  virtual std::vector<Row> query(const std::string& sql, const std::vector<std::int64_t>& params) = 0;
  /// Runs statements without parameters or rows (DDL, BEGIN/COMMIT). Throws BlockingSqlError.
  virtual void execute(const std::string& sql) = 0;
};

/// Connects. SQLite: opens the file read-write (`create`: creating it), WAL journal,
/// waits up to `timeout` for a lock. MariaDB: `timeout` for the connect and for each
/// read and write (whole seconds, at least 1); a URL without a database selects none.
/// Throws BlockingSqlError.
std::unique_ptr<BlockingSqlConnection> connect_blocking(const SqlUrl& url, std::chrono::milliseconds timeout,
                                                        bool create = false);

/// "sqlite FILE" or "mariadb USER@HOST:PORT/DATABASE": how messages name a database.
std::string describe(const SqlUrl& url);

}  // namespace legacy
