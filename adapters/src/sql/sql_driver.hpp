#pragma once
// The small interface between the pool (sql_database.cpp) and a database driver
// (sqlite_driver.cpp, mariadb_driver.cpp). A driver opens connections; a connection
// runs one statement at a time. Every call is made from a fiber of the pool's loop
// and suspends only that fiber.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <fiberloop/io_loop.hpp>
#include <fiberloop/sql.hpp>

namespace fiberloop::detail {

using SqlDeadline = std::chrono::steady_clock::time_point;

/// What every driver is told by the pool.
struct SqlDriverLimits {
  std::size_t max_result_bytes = 64 * 1024 * 1024;
};

/// One open connection. Fiber: the pool's loop, one call at a time.
class SqlConnection {
 public:
  virtual ~SqlConnection() = default;  // closes without blocking the loop

  /// Runs `sql` with `params` bound to its '?' placeholders. Throws SqlError (the
  /// driver's code and message), TimeoutError when `deadline` passes first (the
  /// statement is stopped on the server), std::system_error for the socket.
  virtual SqlResult execute(std::string_view sql, std::span<const SqlValue> params, SqlDeadline deadline) = 0;
  /// After execute() threw: false when this connection can serve no more statements
  /// (lost, timed out, out of sync, a result too large); the pool then discards it.
  virtual bool usable() const noexcept = 0;
  /// Before a connection that sat idle is handed out: false when the server closed
  /// it meanwhile (say, a KILL). Cheap: no round trip.
  virtual bool still_open() noexcept = 0;
  /// The statement that begins a transaction ("BEGIN IMMEDIATE", "START TRANSACTION").
  virtual std::string_view begin_statement() const noexcept = 0;
};

class SqlDriver {
 public:
  virtual ~SqlDriver() = default;
  /// Opens a connection: SqlError, TimeoutError past `deadline`, std::system_error.
  virtual std::unique_ptr<SqlConnection> connect(SqlDeadline deadline) = 0;
  /// The most connections the database can use at once (1 for sqlite::memory:).
  virtual std::size_t connection_limit() const noexcept { return SIZE_MAX; }
  /// "sqlite:/path" or "mysql://user@host:port/db" (never the password): for messages.
  virtual const std::string& name() const noexcept = 0;
};

/// "sqlite:PATH" and "sqlite::memory:" without the "sqlite:" prefix.
std::unique_ptr<SqlDriver> make_sqlite_driver(std::string path, SqlDriverLimits limits, IOLoop& loop);

/// A mysql:// or mariadb:// URL, decoded.
struct MariadbTarget {
  std::string user;
  std::string password;
  std::string host;
  std::uint16_t port = 3306;
  std::string database;
};
/// The part of a mysql:// or mariadb:// URL after the scheme; std::invalid_argument
/// (never quoting the URL: it may hold a password) when malformed.
MariadbTarget parse_mariadb_url(std::string_view rest);
std::unique_ptr<SqlDriver> make_mariadb_driver(MariadbTarget target, SqlDriverLimits limits, IOLoop& loop);

}  // namespace fiberloop::detail
