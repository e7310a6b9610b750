// SqlDatabase: a URL picks the driver; a ConnectionPool of its connections serves the
// loop's fibers; a query runs on the calling fiber when that is a fiber of the
// database's loop, else on a fiber of its own.
#include <boost/context/detail/exception.hpp>
#include <charconv>

#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/detail/loop_hooks.hpp>
#include <fiberloop/detail/wait_label.hpp>
#include <fiberloop/sql.hpp>
#include <fiberloop/wait.hpp>

#include "sql/connection_pool.hpp"
#include "sql/sql_driver.hpp"

namespace fiberloop {
namespace detail {
namespace {

using Connections = ConnectionPool<SqlConnection>;

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decoded(std::string_view text, const char* part) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    const int high = i + 2 < text.size() ? hex_digit(text[i + 1]) : -1;
    const int low = i + 2 < text.size() ? hex_digit(text[i + 2]) : -1;
    if (high < 0 || low < 0)
      throw std::invalid_argument(std::string("SqlDatabase: a bad %-escape in the URL's ") + part);
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

constexpr const char* kUrlForms =
    " (use sqlite:PATH, sqlite::memory: or mysql://user:password@host:port/database)";

}  // namespace

MariadbTarget parse_mariadb_url(std::string_view rest) {
  MariadbTarget target;
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) target.database = percent_decoded(rest.substr(slash + 1), "database");
  if (target.database.find_first_of("/?#") != std::string::npos)
    throw std::invalid_argument("SqlDatabase: the URL's database name holds '/', '?' or '#'" + std::string(kUrlForms));
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view credentials = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    const std::size_t colon = credentials.find(':');
    target.user = percent_decoded(credentials.substr(0, colon), "user");
    if (colon != std::string_view::npos) target.password = percent_decoded(credentials.substr(colon + 1), "password");
  }
  std::string_view port;
  if (authority.starts_with('[')) {  // [IPv6]:port
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos)
      throw std::invalid_argument("SqlDatabase: the URL's host has '[' without ']'" + std::string(kUrlForms));
    target.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (authority.starts_with(':')) port = authority.substr(1);
    else if (!authority.empty())
      throw std::invalid_argument("SqlDatabase: unexpected text after the URL's host" + std::string(kUrlForms));
  } else {
    const std::size_t colon = authority.find(':');
    target.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (target.host.empty()) throw std::invalid_argument("SqlDatabase: the URL names no host" + std::string(kUrlForms));
  if (port.data() != nullptr) {
    unsigned value = 0;
    const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (error != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
      throw std::invalid_argument("SqlDatabase: the URL's port is not a number from 1 to 65535" +
                                  std::string(kUrlForms));
    target.port = static_cast<std::uint16_t>(value);
  }
  return target;
}

namespace {

std::shared_ptr<SqlDriver> make_driver(const std::string& url, SqlDriverLimits limits, IOLoop& loop) {
  const std::string_view text = url;
  if (text.starts_with("sqlite:")) {
    std::string path(text.substr(7));
    if (path.empty()) throw std::invalid_argument("SqlDatabase: \"sqlite:\" names no file" + std::string(kUrlForms));
    return make_sqlite_driver(std::move(path), limits, loop);
  }
  for (std::string_view scheme : {"mysql://", "mariadb://"}) {
    if (text.starts_with(scheme)) return make_mariadb_driver(parse_mariadb_url(text.substr(scheme.size())), limits, loop);
  }
  const std::size_t colon = text.find(':');
  throw std::invalid_argument("SqlDatabase: no driver for \"" +
                              std::string(text.substr(0, std::min<std::size_t>(colon, 32))) + "\"" + kUrlForms);
}

}  // namespace

struct SqlLease {
  Connections::Lease connection;
  std::chrono::nanoseconds query_timeout;
  std::shared_ptr<LoopAnchor> anchor;
};

class SqlPool {
 public:
  SqlPool(std::string url, SqlPoolOptions options, IOLoop& loop)
      : options_(options),
        anchor_(loop_anchor(loop)),
        driver_(make_driver(url, {options.max_result_bytes}, loop)),
        connections_(std::make_shared<Connections>(
            "SqlDatabase " + driver_->name(), std::min(options.max_connections, driver_->connection_limit()),
            options.acquire_timeout, [driver = driver_](SqlDeadline deadline) { return driver->connect(deadline); })) {
    if (options.max_connections == 0) throw std::invalid_argument("SqlDatabase: max_connections is 0");
  }

  /// A lease, once the calling fiber is one of the loop's. Fiber.
  std::unique_ptr<SqlLease> lease(const char* what) {
    require_loop_fiber(what);
    return std::make_unique<SqlLease>(SqlLease{connections_->acquire(), options_.query_timeout, anchor_});
  }

  /// Fiber: one of the loop's (the callers have checked).
  SqlResult query(std::string_view sql, std::span<const SqlValue> params) {
    const WaitLabel label("SQL query", sql);  // names the waits below in IOLoop::dump()
    Connections::Lease connection = connections_->acquire();
    return connection->execute(sql, params, deadline_after(options_.query_timeout));
  }

  static SqlResult execute(SqlLease& held, std::string_view sql, std::span<const SqlValue> params) {
    return held.connection->execute(sql, params, deadline_after(held.query_timeout));
  }

  bool on_loop_fiber() const noexcept {
    IOLoop* loop = current_fiber_loop();
    return loop != nullptr && loop == alive_on_this_thread(*anchor_);
  }
  void require_loop_fiber(const char* what) const {
    if (!on_loop_fiber())
      throw std::logic_error(std::string(what) +
                             ": call it from a fiber of the database's IOLoop (spawn one, or use query_async())");
  }

  LoopAnchor& anchor() const noexcept { return *anchor_; }
  Connections& connections() const noexcept { return *connections_; }

 private:
  const SqlPoolOptions options_;
  const std::shared_ptr<LoopAnchor> anchor_;
  const std::shared_ptr<SqlDriver> driver_;
  const std::shared_ptr<Connections> connections_;
};

}  // namespace detail

// ---- SqlTransaction -------------------------------------------------------------------

SqlTransaction::SqlTransaction(std::unique_ptr<detail::SqlLease> lease) : lease_(std::move(lease)) {}
SqlTransaction::SqlTransaction(SqlTransaction&&) noexcept = default;

SqlTransaction& SqlTransaction::operator=(SqlTransaction&& other) noexcept {
  if (this != &other) {
    SqlTransaction discarded(std::move(*this));  // rolled back, as its destructor does
    lease_ = std::move(other.lease_);
  }
  return *this;
}

SqlTransaction::~SqlTransaction() {
  if (!lease_) return;
  // Roll back on the connection when we may wait for it here; otherwise (the loop is
  // closing, or we are on another thread) close it: the database rolls back what a
  // closed connection left open.
  IOLoop* loop = detail::alive_on_this_thread(*lease_->anchor);
  if (loop != nullptr && !detail::loop_closing(*loop) && detail::current_fiber_loop() == loop) {
    try {
      finish("ROLLBACK");
      return;
    } catch (...) {  // not forced_unwind: that only comes while the loop closes
    }
  }
  if (lease_) lease_->connection.discard();
}

SqlResult SqlTransaction::query(std::string_view sql, std::vector<SqlValue> params) {
  if (!lease_) throw std::logic_error("SqlTransaction::query(): the transaction was already committed or rolled back");
  return detail::SqlPool::execute(*lease_, sql, params);
}

void SqlTransaction::commit() { finish("COMMIT"); }
void SqlTransaction::rollback() { finish("ROLLBACK"); }

void SqlTransaction::finish(std::string_view statement) {
  if (!lease_) throw std::logic_error("SqlTransaction: already committed or rolled back");
  std::unique_ptr<detail::SqlLease> held = std::move(lease_);
  try {
    (void)detail::SqlPool::execute(*held, statement, {});
  } catch (...) {
    // A failed COMMIT may leave the transaction open: closing the connection ends it.
    held->connection.discard();
    throw;
  }
}

// ---- SqlDatabase ----------------------------------------------------------------------

SqlDatabase::SqlDatabase(std::string url, SqlPoolOptions options, IOLoop& loop)
    : pool_(std::make_shared<detail::SqlPool>(std::move(url), options, loop)) {}

SqlDatabase::~SqlDatabase() {
  std::function<void()> close = [pool = pool_] { pool->connections().close(); };
  try {
    if (detail::hand_to_loop_thread(pool_->anchor(), close)) return;
  } catch (...) {  // the loop refused the work: it is going away, and the connections with it
    return;
  }
  close();
}

SqlResult SqlDatabase::query(std::string_view sql, std::vector<SqlValue> params) {
  if (pool_->on_loop_fiber()) return pool_->query(sql, params);
  return wait_for_future(query_async(std::string(sql), std::move(params)));
}

Future<SqlResult> SqlDatabase::query_async(std::string sql, std::vector<SqlValue> params) {
  return detail::spawn_on_loop(
      pool_->anchor(), [pool = pool_, sql = std::move(sql), params = std::move(params)] { return pool->query(sql, params); },
      "SqlDatabase::query_async()");
}

SqlTransaction SqlDatabase::transaction() {
  std::unique_ptr<detail::SqlLease> held = pool_->lease("SqlDatabase::transaction()");
  SqlTransaction transaction(std::move(held));
  (void)detail::SqlPool::execute(*transaction.lease_, transaction.lease_->connection->begin_statement(), {});
  return transaction;
}

SqlPoolStats SqlDatabase::stats() const {
  const detail::ConnectionPoolStats s = pool_->connections().stats();
  return {s.open, s.idle, s.in_use, s.waiting};
}

}  // namespace fiberloop
