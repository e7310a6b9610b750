#pragma once
/// @file
/// SqlDatabase: SQL from a fiber in one line — `db.query("SELECT … WHERE id = ?", {id})` —
/// through a pool of connections that suspends only the calling fiber while it waits
/// for a connection or for the database. Seed 003 done right: no thread pool between
/// the fiber and MariaDB (the fiber waits on the driver's socket), no hand-written
/// thread-safe pool.
///
/// Drivers, chosen by the URL's scheme:
///  - "sqlite:PATH" and "sqlite::memory:": SQLite, the embedded default. SQLite blocks
///    on the disk, so each connection runs its calls on a thread of its own while the
///    fiber waits. Files are opened in WAL mode with a busy timeout; transactions
///    begin IMMEDIATE (they take the write lock at once, so two of them never
///    deadlock on upgrading). ":memory:" is one private database: its pool holds one
///    connection.
///  - "mysql://user:password@host:port/database" (also "mariadb://"): MariaDB or MySQL
///    through Connector/C. Port 3306 when omitted; user and password may be
///    percent-encoded.
///
/// Parameters are always bound by the driver ('?' placeholders), never pasted into
/// the SQL text.
///
/// Errors: SqlError (the driver's code and message); TimeoutError past acquire_timeout
/// (only the waiter fails) or query_timeout (the statement is stopped on the server
/// and its connection discarded); std::invalid_argument for a URL that names no
/// known driver. A connection that broke is discarded and replaced on a later query:
/// its error goes only to the query that hit it.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <fiberloop/errors.hpp>
#include <fiberloop/future.hpp>
#include <fiberloop/io_loop.hpp>

namespace fiberloop {

/// A column value or a parameter: NULL, an integer, a floating-point number, or text
/// (BLOBs and other types the driver cannot map exactly — DECIMAL, dates — as their
/// bytes or text).
using SqlValue = std::variant<std::nullptr_t, std::int64_t, double, std::string>;

struct SqlResult {
  std::vector<std::string> columns;
  std::vector<std::vector<SqlValue>> rows;
  std::uint64_t affected_rows = 0;
  std::int64_t last_insert_id = 0;
};

/// A timeout of nanoseconds::max() means no limit.
struct SqlPoolOptions {
  std::size_t max_connections = 8;
  std::chrono::nanoseconds acquire_timeout = std::chrono::seconds(5);  ///< TimeoutError past it
  std::chrono::nanoseconds query_timeout = std::chrono::seconds(30);   ///< TimeoutError past it
  /// A result larger than this (the bytes of its values) fails with SqlError rather
  /// than filling memory (a MariaDB connection is then discarded: the rest of the
  /// result is still on its way).
  std::size_t max_result_bytes = 64 * 1024 * 1024;
};

struct SqlPoolStats {
  std::size_t open;     ///< connections open (idle + in use)
  std::size_t idle;     ///< open and free
  std::size_t in_use;   ///< leased to a query or a transaction
  std::size_t waiting;  ///< queries waiting for a connection
};

/// The database refused or failed a statement, or the connection failed: code() is
/// the driver's (SQLite's extended result code, MariaDB's error number), what() says
/// which database and its message.
class SqlError : public Error {
 public:
  SqlError(int code, const std::string& what) : Error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

namespace detail {
class SqlPool;
struct SqlLease;
}  // namespace detail

/// One connection held for a transaction: begun by SqlDatabase::transaction(), rolled
/// back by the destructor unless commit() or rollback() was called — exceptions
/// included. Fiber: the database's loop.
class SqlTransaction {
 public:
  SqlTransaction(SqlTransaction&&) noexcept;
  SqlTransaction& operator=(SqlTransaction&&) noexcept;
  ~SqlTransaction();

  /// As SqlDatabase::query(), on this transaction's connection. std::logic_error after
  /// commit() or rollback().
  SqlResult query(std::string_view sql, std::vector<SqlValue> params = {});
  /// Commits and gives the connection back. A failed commit throws (the transaction
  /// is rolled back by the database).
  void commit();
  void rollback();

 private:
  friend class SqlDatabase;
  explicit SqlTransaction(std::unique_ptr<detail::SqlLease> lease);
  void finish(std::string_view statement);
  std::unique_ptr<detail::SqlLease> lease_;
};

class SqlDatabase {
 public:
  /// Opens nothing yet: connections are made on first use. std::invalid_argument for
  /// a URL that names no known driver or is malformed. Thread: any; the pool lives on
  /// `loop`.
  explicit SqlDatabase(std::string url, SqlPoolOptions options = {}, IOLoop& loop = IOLoop::current());
  /// Closes the idle connections; connections still leased close when given back.
  /// Thread: the loop's, or any once the loop is gone.
  ~SqlDatabase();
  SqlDatabase(const SqlDatabase&) = delete;
  SqlDatabase& operator=(const SqlDatabase&) = delete;

  /// Runs one statement with `params` bound to its '?' placeholders. Inside a fiber
  /// of the loop it suspends only that fiber; on a thread with no running loop it
  /// blocks that thread; on a loop's thread outside a fiber it throws
  /// BlockingCallError.
  SqlResult query(std::string_view sql, std::vector<SqlValue> params = {});
  /// The same on a fiber of its own; the future completes on the loop. Thread: any.
  [[nodiscard]] Future<SqlResult> query_async(std::string sql, std::vector<SqlValue> params = {});
  /// Takes a connection and begins a transaction on it. Fiber: the database's loop.
  SqlTransaction transaction();
  /// Thread: the loop's.
  SqlPoolStats stats() const;

 private:
  std::shared_ptr<detail::SqlPool> pool_;  // shared with leases and query fibers, which may end later
};

}  // namespace fiberloop
