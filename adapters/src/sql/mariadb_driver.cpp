// The MariaDB / MySQL driver: Connector/C's plain blocking API, every wait of which
// suspends the calling fiber on the connection's socket (sql/mariadb_io_wait.hpp; no
// thread hand-off). Statements are always prepared (a cache per connection makes a
// repeated one cost one round trip) with their parameters bound; a statement the
// prepared protocol refuses runs as text when it has no parameters. Rows are read one
// at a time and counted against max_result_bytes. A statement past its deadline fails
// with TimeoutError, discards its connection and is stopped on the server by KILL QUERY
// from a short-lived second connection.

#include <arpa/inet.h>
#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <poll.h>

#include <boost/context/detail/exception.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/stack_context.hpp>
#include <fiberloop/thread_pool_executor.hpp>
#include <fiberloop/wait.hpp>

#include "net/resolve.hpp"
#include "net/socket_util.hpp"
#include "sql/mariadb_io_wait.hpp"
#include "sql/sql_driver.hpp"

namespace fiberloop::detail {

namespace {

using Clock = std::chrono::steady_clock;

/// Prepared statements kept per connection (the server allows 16 382 in all by default).
constexpr std::size_t kStatementCacheSize = 64;
/// How long the KILL QUERY after a timed-out statement may take, connecting included.
constexpr auto kKillTimeout = std::chrono::seconds(5);
/// A string column's first buffer; a longer value is fetched again at its length.
constexpr unsigned long kColumnBuffer = 256;
/// What mysql_get_socket() answers once Connector/C closed the connection.
constexpr my_socket kNoSocket = -1;

/// What a driver, its connections and their KILL fibers share.
struct Server {
  MariadbTarget target;
  std::string name;  // "mysql://user@host:port/db", for messages
  SqlDriverLimits limits;
  IOLoop* loop;
};

std::string describe(const MariadbTarget& t) {
  std::string host = t.host.find(':') != std::string::npos ? "[" + t.host + "]" : t.host;
  return "mysql://" + t.user + "@" + host + ":" + std::to_string(t.port) + "/" + t.database;
}

[[noreturn]] void throw_sql(const Server& server, unsigned code, const std::string& message) {
  throw SqlError(static_cast<int>(code), server.name + ": " + message);
}

/// Errors after which the connection cannot serve another statement: it is lost, or
/// client and server disagree on where the protocol stands.
bool breaks_connection(unsigned code) {
  switch (code) {
    case ER_CONNECTION_KILLED:
    case ER_SERVER_SHUTDOWN:
    case ER_NET_PACKET_TOO_LARGE:
    case ER_NET_READ_ERROR_FROM_PIPE:
    case ER_NET_FCNTL_ERROR:
    case ER_NET_PACKETS_OUT_OF_ORDER:
    case ER_NET_UNCOMPRESS_ERROR:
    case ER_NET_READ_ERROR:
    case ER_NET_READ_INTERRUPTED:
    case ER_NET_ERROR_ON_WRITE:
    case ER_NET_WRITE_INTERRUPTED:
      return true;
    default:
      // Connector/C's own errors (lost, out of sync, malformed packet...): all of them
      // but those about a statement's use, which the driver never makes anyway.
      return (code >= CR_MIN_ERROR && code <= CR_MAX_ERROR && code != CR_NEW_STMT_METADATA) ||
             (code >= CR_EVENT_CREATE_FAILED && code <= CR_MARIADB_LAST_ERROR);
  }
}

bool is_integer(enum_field_types type) {
  switch (type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_YEAR:
      return true;
    default:
      return false;
  }
}

bool is_floating(enum_field_types type) { return type == MYSQL_TYPE_FLOAT || type == MYSQL_TYPE_DOUBLE; }

/// An unsigned value above INT64_MAX has no int64: its decimal text instead.
SqlValue unsigned_value(std::uint64_t value) {
  if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::to_string(value);
  return static_cast<std::int64_t>(value);
}

/// A text-protocol value, mapped by its column's type as the binary protocol's is.
SqlValue text_value(const MYSQL_FIELD& field, const char* text, unsigned long length) {
  if (!text) return nullptr;
  const char* end = text + length;
  if (is_integer(field.type)) {
    if (field.flags & UNSIGNED_FLAG) {
      std::uint64_t value = 0;
      if (std::from_chars(text, end, value).ptr == end) return unsigned_value(value);
    } else {
      std::int64_t value = 0;
      if (std::from_chars(text, end, value).ptr == end) return value;
    }
  } else if (is_floating(field.type)) {
    const std::string copy(text, length);  // strtod wants a terminated string
    char* parsed = nullptr;
    const double value = std::strtod(copy.c_str(), &parsed);
    if (parsed == copy.c_str() + copy.size()) return value;
  }
  return std::string(text, length);
}

std::size_t value_bytes(const SqlValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) return text->size();
  return std::holds_alternative<std::nullptr_t>(value) ? 0 : 8;
}

/// True when `sql` begins (after blanks, comments and parentheses) with a keyword of a
/// statement that only reads: running it twice changes nothing.
bool only_reads(std::string_view sql) {
  for (std::size_t i = 0; i < sql.size();) {
    const char c = sql[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(') {
      ++i;
    } else if (sql.substr(i, 2) == "/*") {
      const std::size_t end = sql.find("*/", i + 2);
      i = end == std::string_view::npos ? sql.size() : end + 2;
    } else if (c == '#' || sql.substr(i, 3) == "-- ") {
      const std::size_t end = sql.find('\n', i);
      i = end == std::string_view::npos ? sql.size() : end + 1;
    } else {
      std::string word;
      while (i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i])))
        word += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i++])));
      return word == "SELECT" || word == "SHOW" || word == "WITH" || word == "VALUES" || word == "TABLE" ||
             word == "DESCRIBE" || word == "DESC" || word == "EXPLAIN";
    }
  }
  return false;
}

/// One prepared statement of the cache, with its bindings' storage.
struct Statement {
  std::string sql;
  MYSQL_STMT* stmt = nullptr;
  // Result bindings, remade at every execution (a statement's columns can change).
  std::vector<MYSQL_BIND> results;
  struct Column {
    std::int64_t integer = 0;
    double floating = 0;
    std::string text;  // a string column's buffer (capacity kColumnBuffer at least)
    unsigned long length = 0;
    my_bool is_null = 0;
    my_bool truncated = 0;
  };
  std::vector<Column> columns;
};

class MariadbConnection final : public SqlConnection {
 public:
  MariadbConnection(std::shared_ptr<const Server> server, MYSQL* mysql, std::unique_ptr<MariadbSocket> socket)
      : server_(std::move(server)), mysql_(mysql), socket_(std::move(socket)), thread_id_(mysql_thread_id(mysql)) {}
  ~MariadbConnection() override;

  SqlResult execute(std::string_view sql, std::span<const SqlValue> params, SqlDeadline deadline) override;
  bool usable() const noexcept override { return !broken_; }
  bool still_open() noexcept override;
  std::string_view begin_statement() const noexcept override { return "START TRANSACTION"; }

  /// Runs `sql` through the text protocol (for KILL QUERY and statements the prepared
  /// protocol refuses).
  SqlResult execute_text(std::string_view sql, SqlDeadline deadline);

 private:
  /// Runs `call` (a Connector/C call) as a MariadbCall: waits suspend this fiber until
  /// `deadline`; a wait that timed out or threw is turned into its exception here.
  template <class F>
  auto run(SqlDeadline deadline, F&& call) -> decltype(call());
  /// The cached statement for `sql`, prepared now if need be; its `stmt` is null when
  /// the prepared protocol refuses it (error 1295: it runs as text).
  Statement& prepared(std::string_view sql, SqlDeadline deadline);
  /// Drops a statement from the cache and closes it on the server.
  void evict(std::list<Statement>::iterator statement, SqlDeadline deadline);
  /// Closes `stmt` without any wait: one the server never prepared, or of a connection
  /// discarded anyway.
  void close_at_once(MYSQL_STMT* stmt) noexcept;
  /// Nothing when the statement's columns changed since it was prepared (it is then
  /// closed and out of the cache).
  std::optional<SqlResult> execute_prepared(Statement& statement, std::span<const SqlValue> params,
                                            SqlDeadline deadline);
  void read_rows(Statement& statement, SqlResult& result, SqlDeadline deadline);
  void read_text_rows(MYSQL_RES* rows, SqlResult* result, SqlDeadline deadline);
  void skip_further_results(MYSQL_STMT* stmt, SqlDeadline deadline);
  void count(std::size_t bytes);
  /// Throws the SqlError of `stmt`'s last call (or, when Connector/C set none there, the
  /// connection's: a lost connection or a packet too large is recorded on it).
  [[noreturn]] void fail(MYSQL_STMT* stmt);
  /// Throws the SqlError of the connection's last call.
  [[noreturn]] void fail();
  [[noreturn]] void fail(unsigned code, const char* message);
  [[noreturn]] void timed_out();

  std::shared_ptr<const Server> server_;
  MYSQL* mysql_;
  std::unique_ptr<MariadbSocket> socket_;
  unsigned long thread_id_;  // the server's id of this connection: what KILL QUERY names
  bool broken_ = false;
  std::size_t result_bytes_ = 0;  // of the statement being read
  // The cache: most recently used first; `by_sql` finds an entry by its text.
  std::list<Statement> statements_;
  std::map<std::string, std::list<Statement>::iterator, std::less<>> by_sql_;
};

/// Opens one connection to `address` (numeric), all waits bounded by `deadline`.
std::unique_ptr<MariadbConnection> open_connection(const std::shared_ptr<const Server>& server,
                                                   const std::string& address, SqlDeadline deadline);

/// Stops statement `thread_id` on the server from a connection of its own, on a fiber of
/// its own (the caller does not wait for it), bounded by kKillTimeout. Best effort:
/// errors are swallowed — the connection that ran the statement is discarded anyway.
void kill_query(std::shared_ptr<const Server> server, unsigned long thread_id);

// ---- MariadbConnection ----------------------------------------------------------------

template <class F>
auto MariadbConnection::run(SqlDeadline deadline, F&& call) -> decltype(call()) {
  bool late = false;
  std::exception_ptr wait_error;
  auto result = [&] {
    MariadbCall scope(*socket_, mysql_, deadline);
    auto r = call();
    late = scope.timed_out();
    wait_error = scope.wait_error();
    return r;
  }();
  if (wait_error) {
    broken_ = true;  // the call failed half-way: where the protocol stands is unknown
    try {
      std::rethrow_exception(wait_error);
    } catch (const TimeoutError&) {
      timed_out();  // the request's Deadline (stack_context.hpp) cut the wait: stop the statement too
    }
  }
  if (late) timed_out();
  return result;
}

MariadbConnection::~MariadbConnection() {
  socket_->release();  // before Connector/C closes the socket
  {
    // No wait at all from here (a deadline already past): Connector/C gives up on a
    // full socket at once rather than block; the COM_QUIT it sends fits any buffer.
    MariadbCall no_waits(*socket_, nullptr, SqlDeadline::min());
    mysql_close(mysql_);  // detaches the statements: closing them below sends nothing
  }
  for (Statement& statement : statements_)
    if (statement.stmt) mysql_stmt_close(statement.stmt);
}

bool MariadbConnection::still_open() noexcept {
  if (broken_) return false;
  const my_socket fd = mysql_get_socket(mysql_);
  if (fd == kNoSocket) return false;
  // An idle connection has nothing to read: readable means the server closed it or
  // sent an error (KILL, shutdown, wait_timeout).
  pollfd ready{fd, POLLIN, 0};
  return ::poll(&ready, 1, 0) == 0;
}

void MariadbConnection::fail(MYSQL_STMT* stmt) {
  if (mysql_stmt_errno(stmt) == 0) fail();
  fail(mysql_stmt_errno(stmt), mysql_stmt_error(stmt));
}

void MariadbConnection::fail() {
  if (mysql_errno(mysql_) == 0) fail(CR_UNKNOWN_ERROR, "Connector/C failed without saying why");
  fail(mysql_errno(mysql_), mysql_error(mysql_));
}

void MariadbConnection::fail(unsigned code, const char* message) {
  if (breaks_connection(code) || mysql_get_socket(mysql_) == kNoSocket) broken_ = true;
  throw_sql(*server_, code, message);
}

void MariadbConnection::timed_out() {
  broken_ = true;
  kill_query(server_, thread_id_);
  throw TimeoutError(server_->name + ": the statement did not finish before its deadline (query_timeout, or the "
                     "request's Deadline); it is stopped on the server and its connection discarded");
}

void MariadbConnection::count(std::size_t bytes) {
  result_bytes_ += bytes;
  if (result_bytes_ <= server_->limits.max_result_bytes) return;
  broken_ = true;  // the rest of the result is still coming: the connection is out of step
  throw SqlError(0, server_->name + ": the result is larger than max_result_bytes (" +
                        std::to_string(server_->limits.max_result_bytes) +
                        " bytes of values): select fewer rows or columns, or raise SqlPoolOptions::max_result_bytes");
}

SqlResult MariadbConnection::execute(std::string_view sql, std::span<const SqlValue> params, SqlDeadline deadline) {
  if (broken_) throw SqlError(CR_SERVER_GONE_ERROR, server_->name + ": the connection is unusable");
  // Past the deadline already: nothing is sent, so the connection stays as it is.
  if (deadline <= Clock::now())
    throw TimeoutError(server_->name + ": the deadline passed before the statement was sent (query_timeout)");
  for (bool again = false;; again = true) {
    result_bytes_ = 0;
    Statement& statement = prepared(sql, deadline);
    if (!statement.stmt) {
      if (!params.empty())
        throw_sql(*server_, ER_UNSUPPORTED_PS,
                  "this statement cannot be prepared, so its parameters cannot be bound; run it without parameters");
      return execute_text(sql, deadline);
    }
    if (auto result = execute_prepared(statement, params, deadline)) return std::move(*result);
    // Its columns changed since it was prepared (an ALTER TABLE): it ran, but Connector/C
    // refuses the new columns. A statement that only reads runs again, prepared afresh.
    if (again || !only_reads(sql))
      throw_sql(*server_, CR_NEW_STMT_METADATA,
                "the statement's columns changed since it was prepared (ALTER TABLE); it ran, but its result is "
                "lost: check its effect, then run it again");
  }
}

Statement& MariadbConnection::prepared(std::string_view sql, SqlDeadline deadline) {
  if (const auto found = by_sql_.find(sql); found != by_sql_.end()) {
    statements_.splice(statements_.begin(), statements_, found->second);  // most recently used
    return statements_.front();
  }
  MYSQL_STMT* stmt = mysql_stmt_init(mysql_);
  if (!stmt) fail();
  try {
    if (run(deadline, [&] { return mysql_stmt_prepare(stmt, sql.data(), sql.size()); }) != 0) {
      const unsigned code = mysql_stmt_errno(stmt);
      if (code != ER_UNSUPPORTED_PS) fail(stmt);
      close_at_once(std::exchange(stmt, nullptr));  // remembered as one to run as text
    }
  } catch (...) {
    close_at_once(stmt);
    throw;
  }
  if (statements_.size() >= kStatementCacheSize) evict(std::prev(statements_.end()), deadline);
  statements_.push_front(Statement{std::string(sql), stmt, {}, {}});
  by_sql_.emplace(statements_.front().sql, statements_.begin());
  return statements_.front();
}

void MariadbConnection::evict(std::list<Statement>::iterator statement, SqlDeadline deadline) {
  MYSQL_STMT* stmt = statement->stmt;
  by_sql_.erase(statement->sql);
  statements_.erase(statement);
  // COM_STMT_CLOSE has no answer: this waits only while the socket's buffer is full (or
  // to read the rest of a result still coming).
  if (stmt) run(deadline, [&] { return mysql_stmt_close(stmt); });
}

void MariadbConnection::close_at_once(MYSQL_STMT* stmt) noexcept {
  if (!stmt) return;
  MariadbCall no_waits(*socket_, mysql_, SqlDeadline::min());
  mysql_stmt_close(stmt);
}

std::optional<SqlResult> MariadbConnection::execute_prepared(Statement& statement, std::span<const SqlValue> params,
                                                             SqlDeadline deadline) {
  MYSQL_STMT* stmt = statement.stmt;
  const unsigned long expected = mysql_stmt_param_count(stmt);
  if (params.size() != expected)
    throw_sql(*server_, CR_PARAMS_NOT_BOUND,
              "the statement has " + std::to_string(expected) + " '?' placeholders but " +
                  std::to_string(params.size()) + " parameters were given");
  std::vector<MYSQL_BIND> binds(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    MYSQL_BIND& bind = binds[i];
    std::visit(
        [&bind](const auto& value) {
          using T = std::decay_t<decltype(value)>;
          if constexpr (std::is_same_v<T, std::nullptr_t>) {
            bind.buffer_type = MYSQL_TYPE_NULL;
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            bind.buffer_type = MYSQL_TYPE_LONGLONG;
            bind.buffer = const_cast<std::int64_t*>(&value);
          } else if constexpr (std::is_same_v<T, double>) {
            bind.buffer_type = MYSQL_TYPE_DOUBLE;
            bind.buffer = const_cast<double*>(&value);
          } else {
            // Text in the connection's character set: compared as text (a BLOB type
            // would make `name = ?` a binary comparison); bytes go to BLOBs unchanged.
            bind.buffer_type = MYSQL_TYPE_STRING;
            bind.buffer = const_cast<char*>(value.data());
            bind.buffer_length = value.size();
          }
        },
        params[i]);
  }
  if (!binds.empty() && mysql_stmt_bind_param(stmt, binds.data())) fail(stmt);
  if (run(deadline, [&] { return mysql_stmt_execute(stmt); }) != 0) {
    const unsigned code = mysql_stmt_errno(stmt);
    if (code == CR_NEW_STMT_METADATA) {
      // Closing it reads the result that came: the connection stays in step.
      evict(by_sql_.find(statement.sql)->second, deadline);
      if (mysql_get_socket(mysql_) == kNoSocket) fail(code, "the connection was lost closing a changed statement");
      return std::nullopt;
    }
    fail(stmt);
  }
  SqlResult result;
  try {
    if (mysql_stmt_field_count(stmt) > 0) {
      read_rows(statement, result, deadline);
    } else {
      result.affected_rows = mysql_stmt_affected_rows(stmt);
      result.last_insert_id = static_cast<std::int64_t>(mysql_stmt_insert_id(stmt));
    }
    skip_further_results(stmt, deadline);
  } catch (const SqlError&) {
    throw;  // fail() judged it: an error the server sent ends the result in step
  } catch (...) {
    broken_ = true;  // out of memory, say, with the rest of the result still coming
    throw;
  }
  return result;
}

void MariadbConnection::read_rows(Statement& statement, SqlResult& result, SqlDeadline deadline) {
  MYSQL_STMT* stmt = statement.stmt;
  const unsigned width = mysql_stmt_field_count(stmt);
  const MYSQL_FIELD* fields = stmt->fields;
  result.columns.reserve(width);
  for (unsigned i = 0; i < width; ++i) result.columns.emplace_back(fields[i].name, fields[i].name_length);

  statement.columns.resize(width);
  statement.results.assign(width, MYSQL_BIND{});
  for (unsigned i = 0; i < width; ++i) {
    MYSQL_BIND& bind = statement.results[i];
    Statement::Column& column = statement.columns[i];
    bind.length = &column.length;
    bind.is_null = &column.is_null;
    bind.error = &column.truncated;
    if (is_integer(fields[i].type)) {
      bind.buffer_type = MYSQL_TYPE_LONGLONG;
      bind.buffer = &column.integer;
      bind.is_unsigned = (fields[i].flags & UNSIGNED_FLAG) != 0;
    } else if (is_floating(fields[i].type)) {
      bind.buffer_type = MYSQL_TYPE_DOUBLE;
      bind.buffer = &column.floating;
    } else {
      // Everything else as its bytes or text: strings, BLOBs, DECIMAL, dates and times.
      if (column.text.size() < kColumnBuffer) column.text.resize(kColumnBuffer);
      bind.buffer_type = MYSQL_TYPE_STRING;
      bind.buffer = column.text.data();
      bind.buffer_length = column.text.size();
    }
  }
  if (mysql_stmt_bind_result(stmt, statement.results.data())) fail(stmt);

  for (;;) {
    const int rc = run(deadline, [&] { return mysql_stmt_fetch(stmt); });
    if (rc == MYSQL_NO_DATA) return;
    if (rc != 0 && rc != MYSQL_DATA_TRUNCATED) fail(stmt);
    std::vector<SqlValue>& row = result.rows.emplace_back();
    row.reserve(width);
    for (unsigned i = 0; i < width; ++i) {
      const MYSQL_BIND& bind = statement.results[i];
      Statement::Column& column = statement.columns[i];
      if (column.is_null) {
        row.emplace_back(nullptr);
      } else if (bind.buffer_type == MYSQL_TYPE_LONGLONG) {
        row.push_back(bind.is_unsigned ? unsigned_value(static_cast<std::uint64_t>(column.integer))
                                       : SqlValue(column.integer));
      } else if (bind.buffer_type == MYSQL_TYPE_DOUBLE) {
        row.emplace_back(column.floating);
      } else if (column.length <= bind.buffer_length) {
        row.emplace_back(std::string(column.text.data(), column.length));
      } else {
        // Longer than the buffer: count it before it is copied, then fetch it whole.
        count(column.length);
        std::string whole(column.length, '\0');
        MYSQL_BIND full{};
        unsigned long length = 0;
        full.buffer_type = MYSQL_TYPE_STRING;
        full.buffer = whole.data();
        full.buffer_length = whole.size();
        full.length = &length;
        if (mysql_stmt_fetch_column(stmt, &full, i, 0)) fail(stmt);
        whole.resize(std::min<unsigned long>(length, whole.size()));
        row.emplace_back(std::move(whole));
        continue;
      }
      count(value_bytes(row.back()));
    }
  }
}

void MariadbConnection::skip_further_results(MYSQL_STMT* stmt, SqlDeadline deadline) {
  // A CALL answers with its result sets and then a status: only the first is returned;
  // the rest are read (and counted) to keep the connection in step.
  while (mysql_stmt_more_results(stmt)) {
    const int rc = run(deadline, [&] { return mysql_stmt_next_result(stmt); });
    if (rc > 0) fail(stmt);
    if (rc < 0) return;
    if (mysql_stmt_field_count(stmt) == 0) continue;
    std::vector<MYSQL_BIND> nothing(mysql_stmt_field_count(stmt));  // lengths only: no values copied
    std::vector<unsigned long> lengths(nothing.size());
    for (std::size_t i = 0; i < nothing.size(); ++i) {
      nothing[i].buffer_type = MYSQL_TYPE_STRING;
      nothing[i].length = &lengths[i];
    }
    if (mysql_stmt_bind_result(stmt, nothing.data())) fail(stmt);
    for (;;) {
      const int fetched = run(deadline, [&] { return mysql_stmt_fetch(stmt); });
      if (fetched == MYSQL_NO_DATA) break;
      if (fetched != 0 && fetched != MYSQL_DATA_TRUNCATED) fail(stmt);
      for (const unsigned long length : lengths) count(length);
    }
  }
}

SqlResult MariadbConnection::execute_text(std::string_view sql, SqlDeadline deadline) {
  if (run(deadline, [&] { return mysql_real_query(mysql_, sql.data(), sql.size()); }) != 0)
    fail();
  SqlResult result;
  SqlResult* wanted = &result;  // the first result set's rows are returned, later ones only counted
  for (;;) {
    if (mysql_field_count(mysql_) == 0) {
      if (wanted) {
        result.affected_rows = mysql_affected_rows(mysql_);
        result.last_insert_id = static_cast<std::int64_t>(mysql_insert_id(mysql_));
      }
    } else {
      MYSQL_RES* rows = mysql_use_result(mysql_);  // rows are read one by one below
      if (!rows) fail();
      try {
        read_text_rows(rows, wanted, deadline);
      } catch (...) {
        // The rest of the rows may still be coming, and freeing the result would read
        // them all: it is freed detached from the connection, which is discarded.
        broken_ = true;
        rows->handle = nullptr;
        mysql_free_result(rows);
        throw;
      }
      mysql_free_result(rows);  // all read: nothing left to skip
    }
    wanted = nullptr;
    const int rc = run(deadline, [&] { return mysql_next_result(mysql_); });
    if (rc > 0) fail();
    if (rc < 0) return result;
  }
}

void MariadbConnection::read_text_rows(MYSQL_RES* rows, SqlResult* result, SqlDeadline deadline) {
  const unsigned width = mysql_num_fields(rows);
  const MYSQL_FIELD* fields = mysql_fetch_fields(rows);
  if (result)
    for (unsigned i = 0; i < width; ++i) result->columns.emplace_back(fields[i].name, fields[i].name_length);
  for (;;) {
    const MYSQL_ROW row = run(deadline, [&] { return mysql_fetch_row(rows); });
    if (!row) {
      if (mysql_errno(mysql_)) fail();
      return;
    }
    const unsigned long* lengths = mysql_fetch_lengths(rows);
    std::vector<SqlValue> values;
    values.reserve(width);
    for (unsigned i = 0; i < width; ++i) {
      values.push_back(text_value(fields[i], row[i], lengths[i]));
      count(value_bytes(values.back()));
    }
    if (result) result->rows.push_back(std::move(values));
  }
}

// ---- connecting -------------------------------------------------------------------------

std::string numeric_host(const sockaddr_storage& address) {
  char text[INET6_ADDRSTRLEN] = {};
  const void* bytes = address.ss_family == AF_INET6
                          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6&>(address).sin6_addr)
                          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in&>(address).sin_addr);
  ::inet_ntop(address.ss_family, bytes, text, sizeof text);
  return text;
}

/// The numeric addresses to try for the server's host. Connector/C resolves names with
/// a blocking getaddrinfo(): a name is resolved here on the loop's blocking pool while
/// the fiber waits, and Connector/C is given a numeric address.
std::vector<std::string> server_addresses(const Server& server, SqlDeadline deadline) {
  socklen_t length = 0;
  if (numeric_address(server.target.host, server.target.port, length)) return {server.target.host};
  IOLoop* here = current_fiber_loop();
  if (!here) throw std::logic_error(server.name + ": connect() must be called from a fiber of the pool's loop");
  const std::string host = server.target.host;
  const std::uint16_t port = server.target.port;
  const char* what = "resolving the host name";
  std::vector<ResolvedAddress> found;
  try {
    found = wait_for_future(here->blocking_executor().submit([host, port, what] { return resolve(host, port, what); }),
                            time_left(deadline));
  } catch (const TimeoutError&) {
    throw TimeoutError(server.name + ": resolving the host name took longer than the connect deadline");
  } catch (const Error& e) {
    throw_sql(server, CR_UNKNOWN_HOST, e.what());
  }
  std::vector<std::string> addresses;
  for (const ResolvedAddress& a : found) {
    std::string text = numeric_host(a.address);
    if (std::find(addresses.begin(), addresses.end(), text) == addresses.end()) addresses.push_back(std::move(text));
  }
  return addresses;
}

std::unique_ptr<MariadbConnection> open_connection(const std::shared_ptr<const Server>& server,
                                                   const std::string& address, SqlDeadline deadline) {
  MYSQL* mysql = mysql_init(nullptr);
  if (!mysql) throw std::bad_alloc();
  auto socket = std::make_unique<MariadbSocket>(*server->loop);
  install_mariadb_io_wait(mysql);
  const my_bool no = 0;
  const unsigned int off = 0;
  mysql_optionsv(mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  mysql_optionsv(mysql, MYSQL_OPT_RECONNECT, &no);      // a lost connection stays lost: the pool replaces it
  mysql_optionsv(mysql, MYSQL_OPT_LOCAL_INFILE, &off);  // LOAD DATA LOCAL would read client files
  // A row larger than the result limit fails as it arrives instead of filling memory.
  const std::size_t packet =
      std::clamp<std::size_t>(server->limits.max_result_bytes, 0, std::size_t{1} << 30) + (std::size_t{1} << 20);
  mysql_optionsv(mysql, MYSQL_OPT_MAX_ALLOWED_PACKET, &packet);
  // Matched rows, not changed ones, in affected_rows: as SQLite counts them.
  const unsigned long flags = CLIENT_FOUND_ROWS;
  const MariadbTarget& t = server->target;
  bool connected = false;
  bool timed_out = false;
  std::exception_ptr wait_error;
  {
    MariadbCall scope(*socket, mysql, deadline);
    connected = mysql_real_connect(mysql, address.c_str(), t.user.c_str(), t.password.c_str(),
                                   t.database.empty() ? nullptr : t.database.c_str(), t.port, nullptr, flags) != nullptr;
    timed_out = scope.timed_out();
    wait_error = scope.wait_error();
  }
  if (!connected || wait_error) {
    const unsigned code = mysql_errno(mysql);
    const std::string message = mysql_error(mysql);
    socket->release();
    mysql_close(mysql);  // nothing to send: the connection never opened
    if (wait_error) std::rethrow_exception(wait_error);
    if (timed_out) throw TimeoutError(server->name + ": connecting took longer than its deadline");
    throw_sql(*server, code, message);
  }
  return std::make_unique<MariadbConnection>(server, mysql, std::move(socket));
}

std::unique_ptr<MariadbConnection> connect_to(const std::shared_ptr<const Server>& server, SqlDeadline deadline) {
  const std::vector<std::string> addresses = server_addresses(*server, deadline);
  for (std::size_t i = 0;; ++i) {
    try {
      return open_connection(server, addresses.at(i), deadline);
    } catch (const SqlError& e) {
      // Refused or unreachable there: the next address of the name may answer
      // ("localhost" is often ::1 first, and a server may listen on 127.0.0.1 only).
      const bool unreachable = e.code() == CR_CONNECTION_ERROR || e.code() == CR_CONN_HOST_ERROR;
      if (!unreachable || i + 1 == addresses.size()) throw;
    }
  }
}

void kill_query(std::shared_ptr<const Server> server, unsigned long thread_id) {
  try {
    const fiberloop::NullContext unrelated;  // not the request's: its Deadline, which may have passed, would cut the KILL too
    (void)server->loop->spawn("MariaDB KILL QUERY", [server, thread_id] {
      try {
        const SqlDeadline deadline = deadline_after(kKillTimeout);
        connect_to(server, deadline)->execute_text("KILL QUERY " + std::to_string(thread_id), deadline);
      } catch (const boost::context::detail::forced_unwind&) {
        throw;
      } catch (...) {
        // Best effort: the statement's own connection is closed, so the server ends the
        // statement anyway once it next writes to it.
      }
    });
  } catch (const std::exception&) {
    // No fiber (out of memory, or the loop is closing): as above.
  }
}

// ---- the driver ------------------------------------------------------------------------

class MariadbDriver final : public SqlDriver {
 public:
  explicit MariadbDriver(std::shared_ptr<const Server> server) : server_(std::move(server)) {}
  std::unique_ptr<SqlConnection> connect(SqlDeadline deadline) override {
    if (deadline <= Clock::now()) throw TimeoutError(server_->name + ": the connect deadline passed before connecting");
    return connect_to(server_, deadline);
  }
  const std::string& name() const noexcept override { return server_->name; }

 private:
  std::shared_ptr<const Server> server_;
};

}  // namespace

std::unique_ptr<SqlDriver> make_mariadb_driver(MariadbTarget target, SqlDriverLimits limits, IOLoop& loop) {
  // Once per process, here rather than at the first connect on the loop: it reads
  // /etc/services (getservbyname) and sets up the character sets.
  static std::once_flag library;
  std::call_once(library, [] {
    if (mysql_library_init(0, nullptr, nullptr) != 0) throw std::runtime_error("mysql_library_init failed");
  });
  auto server = std::make_shared<Server>();
  server->name = describe(target);
  server->target = std::move(target);
  server->limits = limits;
  server->loop = &loop;
  return std::make_unique<MariadbDriver>(std::move(server));
}

}  // namespace fiberloop::detail
