// The blocking drivers as legacy code uses them: sqlite3's C API and Connector/C's
// blocking API, a statement prepared once per connection and reused.
#include "blocking_sql.hpp"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <sqlite3.h>

#include <algorithm>
#include <climits>
#include <mutex>
#include <unordered_map>

namespace legacy {
namespace {

// ---- SQLite -----------------------------------------------------------------------

class SqliteConnection final : public BlockingSqlConnection {
 public:
  SqliteConnection(const SqlUrl& url, std::chrono::milliseconds timeout, bool create) : name_(describe(url)) {
    // NOMUTEX: the pool lends a connection to one thread at a time.
    const int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(url.path.c_str(), &db, flags, nullptr);
    db_.reset(db);  // closed however this constructor ends
    if (rc != SQLITE_OK) fail(rc, "cannot open the database", true);
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, static_cast<int>(std::min<std::chrono::milliseconds::rep>(timeout.count(), INT_MAX)));
    execute("PRAGMA journal_mode=WAL");  // readers never wait for the writer (the loader)
  }

  std::vector<Row> query(const std::string& sql, const std::vector<std::int64_t>& params) override {
    sqlite3_stmt* statement = prepared(sql);
    struct Reset {  // ready for the next use however this one ends
      sqlite3_stmt* s;
      ~Reset() {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
      }
    } reset{statement};
    if (static_cast<std::size_t>(sqlite3_bind_parameter_count(statement)) != params.size())
      throw BlockingSqlError(name_ + ": " + std::to_string(params.size()) + " parameters for " +
                                 std::to_string(sqlite3_bind_parameter_count(statement)) + " placeholders in " + sql,
                             false);
    for (std::size_t i = 0; i < params.size(); ++i)
      if (const int rc = sqlite3_bind_int64(statement, static_cast<int>(i + 1), params[i]); rc != SQLITE_OK)
        fail(rc, "bind", false);
    std::vector<Row> rows;
    for (;;) {
      const int rc = sqlite3_step(statement);
      if (rc == SQLITE_DONE) return rows;
      if (rc != SQLITE_ROW) fail(rc, sql, false);
      Row& row = rows.emplace_back();
      for (int c = 0, n = sqlite3_column_count(statement); c < n; ++c) {
        if (sqlite3_column_type(statement, c) != SQLITE_INTEGER)
          throw BlockingSqlError(name_ + ": column " + sqlite3_column_name(statement, c) + " is not an integer", false);
        row.push_back(sqlite3_column_int64(statement, c));
      }
    }
  }

  void execute(const std::string& sql) override {
    char* message = nullptr;
    if (const int rc = sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &message); rc != SQLITE_OK) {
      const std::string text = message != nullptr ? message : sqlite3_errstr(rc);
      sqlite3_free(message);
      throw BlockingSqlError(name_ + ": " + text + " (code " + std::to_string(rc) + ")", false);
    }
  }

 private:
  sqlite3_stmt* prepared(const std::string& sql) {
    if (const auto it = statements_.find(sql); it != statements_.end()) return it->second.get();
    sqlite3_stmt* statement = nullptr;
    const int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                      &statement, nullptr);
    if (rc != SQLITE_OK) fail(rc, sql, false);
    return statements_.emplace(sql, statement).first->second.get();
  }

  [[noreturn]] void fail(int rc, const std::string& what, bool connection_lost) const {
    const char* message = db_ ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
    throw BlockingSqlError(name_ + ": " + message + " (code " + std::to_string(rc) + "; " + what + ")",
                           connection_lost);
  }

  struct Close {
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
    void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
  };
  std::string name_;
  std::unique_ptr<sqlite3, Close> db_;
  std::unordered_map<std::string, std::unique_ptr<sqlite3_stmt, Close>> statements_;  // finalized before db_ closes
};

// ---- MariaDB / MySQL (Connector/C, blocking) ----------------------------------------

/// The connection itself broke: the server closed it (wait_timeout, KILL, a restart).
bool connection_lost(unsigned code) {
  return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST || code == CR_SERVER_LOST_EXTENDED ||
         code == ER_CONNECTION_KILLED || code == CR_CONNECTION_ERROR || code == CR_CONN_HOST_ERROR;
}

class MariadbConnection final : public BlockingSqlConnection {
 public:
  MariadbConnection(const SqlUrl& url, std::chrono::milliseconds timeout) : name_(describe(url)) {
    // mysql_init() initializes the library on first use, but not thread-safely.
    static std::once_flag library;
    std::call_once(library, [] { mysql_library_init(0, nullptr, nullptr); });
    mysql_.reset(mysql_init(nullptr));
    if (!mysql_) throw BlockingSqlError(name_ + ": mysql_init: out of memory", true);
    const auto ms = std::max<std::chrono::milliseconds::rep>(timeout.count(), 1000);
    const unsigned seconds = static_cast<unsigned>(std::min<std::chrono::milliseconds::rep>((ms + 999) / 1000, 86400));
    mysql_options(mysql_.get(), MYSQL_OPT_CONNECT_TIMEOUT, &seconds);
    mysql_options(mysql_.get(), MYSQL_OPT_READ_TIMEOUT, &seconds);
    mysql_options(mysql_.get(), MYSQL_OPT_WRITE_TIMEOUT, &seconds);
    if (mysql_real_connect(mysql_.get(), url.host.c_str(), url.user.c_str(), url.password.c_str(),
                           url.database.empty() ? nullptr : url.database.c_str(), url.port, nullptr, 0) == nullptr)
      throw BlockingSqlError(name_ + ": cannot connect: " + mysql_error(mysql_.get()) + " (code " +
                                 std::to_string(mysql_errno(mysql_.get())) + ")",
                             true);
  }

  std::vector<Row> query(const std::string& sql, const std::vector<std::int64_t>& params) override {
    MYSQL_STMT* statement = prepared(sql);
    if (mysql_stmt_param_count(statement) != params.size())
      throw BlockingSqlError(name_ + ": " + std::to_string(params.size()) + " parameters for " +
                                 std::to_string(mysql_stmt_param_count(statement)) + " placeholders in " + sql,
                             false);
    std::vector<long long> values(params.begin(), params.end());
    std::vector<MYSQL_BIND> in(params.size());  // value-initialized: zeroed
    for (std::size_t i = 0; i < params.size(); ++i) {
      in[i].buffer_type = MYSQL_TYPE_LONGLONG;
      in[i].buffer = &values[i];
    }
    if (!in.empty() && mysql_stmt_bind_param(statement, in.data())) fail(statement, sql);
    if (mysql_stmt_execute(statement)) fail(statement, sql);
    const unsigned columns = mysql_stmt_field_count(statement);
    if (columns == 0) return {};

    struct FreeResult {  // ready for the next use however this one ends
      MYSQL_STMT* s;
      ~FreeResult() { mysql_stmt_free_result(s); }
    } free_result{statement};
    std::vector<long long> out(columns);
    std::vector<my_bool> is_null(columns), error(columns);
    std::vector<MYSQL_BIND> result(columns);
    for (unsigned c = 0; c < columns; ++c) {
      result[c].buffer_type = MYSQL_TYPE_LONGLONG;
      result[c].buffer = &out[c];
      result[c].is_null = &is_null[c];
      result[c].error = &error[c];
    }
    if (mysql_stmt_bind_result(statement, result.data())) fail(statement, sql);
    // All rows to the client first: a bad value below leaves the connection in step.
    if (mysql_stmt_store_result(statement)) fail(statement, sql);
    std::vector<Row> rows;
    for (;;) {
      const int rc = mysql_stmt_fetch(statement);
      if (rc == MYSQL_NO_DATA) return rows;
      if (rc == 1) fail(statement, sql);
      for (unsigned c = 0; c < columns; ++c)
        if (is_null[c] || error[c])
          throw BlockingSqlError(name_ + ": column " + std::to_string(c + 1) + " of " + sql + " is not an integer",
                                 false);
      rows.emplace_back(out.begin(), out.end());
    }
  }

  void execute(const std::string& sql) override {
    if (mysql_real_query(mysql_.get(), sql.data(), sql.size()) != 0) {
      const unsigned code = mysql_errno(mysql_.get());
      throw BlockingSqlError(name_ + ": " + mysql_error(mysql_.get()) + " (code " + std::to_string(code) + "; " + sql +
                                 ")",
                             connection_lost(code));
    }
    if (MYSQL_RES* rows = mysql_store_result(mysql_.get())) mysql_free_result(rows);
  }

 private:
  MYSQL_STMT* prepared(const std::string& sql) {
    if (const auto it = statements_.find(sql); it != statements_.end()) return it->second.get();
    std::unique_ptr<MYSQL_STMT, Close> statement(mysql_stmt_init(mysql_.get()));
    if (!statement) throw BlockingSqlError(name_ + ": mysql_stmt_init: out of memory", false);
    if (mysql_stmt_prepare(statement.get(), sql.data(), sql.size())) fail(statement.get(), sql);
    return statements_.emplace(sql, std::move(statement)).first->second.get();
  }

  [[noreturn]] void fail(MYSQL_STMT* statement, const std::string& sql) const {
    const unsigned code = mysql_stmt_errno(statement);
    throw BlockingSqlError(name_ + ": " + mysql_stmt_error(statement) + " (code " + std::to_string(code) + "; " +
                               sql + ")",
                           connection_lost(code));
  }

  struct Close {
    void operator()(MYSQL* m) const noexcept { mysql_close(m); }
    void operator()(MYSQL_STMT* s) const noexcept { mysql_stmt_close(s); }
  };
  std::string name_;
  std::unique_ptr<MYSQL, Close> mysql_;
  std::unordered_map<std::string, std::unique_ptr<MYSQL_STMT, Close>> statements_;  // closed before mysql_
};

}  // namespace

std::unique_ptr<BlockingSqlConnection> connect_blocking(const SqlUrl& url, std::chrono::milliseconds timeout,
                                                        bool create) {
  if (url.driver == SqlUrl::Driver::sqlite) return std::make_unique<SqliteConnection>(url, timeout, create);
  return std::make_unique<MariadbConnection>(url, timeout);
}

std::string describe(const SqlUrl& url) {
  if (url.driver == SqlUrl::Driver::sqlite) return "sqlite " + url.path;
  return "mariadb " + url.user + "@" + url.host + ":" + std::to_string(url.port) + "/" + url.database;
}

}  // namespace legacy
