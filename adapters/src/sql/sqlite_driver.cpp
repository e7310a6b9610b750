// SQLite behind the SqlConnection interface. SQLite calls block on the disk, so each
// connection owns one thread that makes all of its calls (as sqlx and aiosqlite do);
// the fiber hands a statement over and waits, the loop serving others meanwhile.
// A statement past its deadline is interrupted (sqlite3_interrupt is safe from any
// thread) and its connection dropped; a busy database is waited for, by our own busy
// handler, until the statement's deadline and no longer.
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <unordered_map>

#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/detail/loop_hooks.hpp>
#include <fiberloop/thread_pool_executor.hpp>
#include <fiberloop/wait.hpp>

#include "sql/sql_driver.hpp"

namespace fiberloop::detail {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kCachedStatements = 64;
constexpr std::size_t kValueOverhead = sizeof(SqlValue);  // what a value costs beyond its bytes

// What the connection's thread works on. Shared with the jobs, which may still run
// after the connection (a timed-out statement) is gone.
class SqliteHandle {
 public:
  SqliteHandle(std::string name, SqlDriverLimits limits) : name_(std::move(name)), limits_(limits) {}
  ~SqliteHandle() {
    for (auto& [sql, statement] : statements_)
      sqlite3_finalize(statement);
    sqlite3_close_v2(db_);  // a null db_ is a no-op
  }
  SqliteHandle(const SqliteHandle&) = delete;
  SqliteHandle& operator=(const SqliteHandle&) = delete;

  void open(const std::string& path) {
    const int rc = sqlite3_open_v2(path.c_str(), &db_,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) fail(rc);
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_handler(db_, &SqliteHandle::on_busy, this);
    // sqlite3_interrupt() is lost when no statement runs yet (the job had not started
    // stepping): this handler stops one that starts after it, every 1000 VM steps.
    sqlite3_progress_handler(db_, 1000, on_progress, this);
    if (path != ":memory:") {
      // WAL: readers do not block the writer nor it them. Asked of every connection;
      // the answer is the mode the file is in.
      const SqlResult mode = execute("PRAGMA journal_mode=WAL", {}, Clock::now() + std::chrono::seconds(5));
      const auto* answer = mode.rows.empty() ? nullptr : std::get_if<std::string>(&mode.rows[0][0]);
      if (answer == nullptr || *answer != "wal")
        throw SqlError(SQLITE_ERROR, name_ + ": cannot switch to WAL mode (journal_mode is " +
                                         (answer ? *answer : std::string("unknown")) + ")");
    }
  }

  /// On the connection's thread.
  SqlResult execute(const std::string& sql, const std::vector<SqlValue>& params, Clock::time_point deadline) {
    deadline_.store(deadline.time_since_epoch().count(), std::memory_order_relaxed);
    sqlite3_stmt* statement = prepare(sql);
    struct Reset {  // leaves the cached statement ready for its next use, bindings cleared
      sqlite3_stmt* s;
      ~Reset() {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
      }
    } reset{statement};
    bind(statement, params);

    SqlResult result;
    const int columns = sqlite3_column_count(statement);
    for (int c = 0; c < columns; ++c)
      result.columns.emplace_back(sqlite3_column_name(statement, c));
    std::size_t bytes = 0;
    for (;;) {
      const int rc = sqlite3_step(statement);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) fail(sqlite3_extended_errcode(db_));
      std::vector<SqlValue>& row = result.rows.emplace_back();
      row.reserve(static_cast<std::size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        row.push_back(column(statement, c));
        if (const auto* text = std::get_if<std::string>(&row.back())) bytes += text->size();
        bytes += kValueOverhead;
      }
      if (bytes > limits_.max_result_bytes)
        throw SqlError(SQLITE_TOOBIG, name_ + ": the result is larger than max_result_bytes (" +
                                          std::to_string(limits_.max_result_bytes) +
                                          "): select fewer rows or raise SqlPoolOptions::max_result_bytes");
    }
    if (!sqlite3_stmt_readonly(statement)) {
      result.affected_rows = static_cast<std::uint64_t>(sqlite3_changes64(db_));
      if (result.affected_rows > 0) result.last_insert_id = sqlite3_last_insert_rowid(db_);
    }
    return result;
  }

  /// From the loop's thread: stops the running statement, and any later one.
  void interrupt() noexcept {
    interrupted_.store(true, std::memory_order_relaxed);
    sqlite3_interrupt(db_);
  }

 private:
  [[noreturn]] void fail(int code) const {
    throw SqlError(code, name_ + ": " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(code)));
  }

  sqlite3_stmt* prepare(const std::string& sql) {
    if (auto it = statements_.find(sql); it != statements_.end()) return it->second;
    sqlite3_stmt* statement = nullptr;
    const char* tail = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                      &statement, &tail);
    if (rc != SQLITE_OK) fail(sqlite3_extended_errcode(db_));
    if (statement == nullptr) throw SqlError(SQLITE_MISUSE, name_ + ": the query is empty");
    if (std::any_of(tail, sql.data() + sql.size(), [](char ch) { return ch != ';' && !std::isspace(ch); })) {
      sqlite3_finalize(statement);
      throw SqlError(SQLITE_MISUSE, name_ + ": a query is one statement; this one has more after the first ';'");
    }
    if (statements_.size() >= kCachedStatements) {  // a bounded cache: start over when full
      for (auto& [cached_sql, cached] : statements_)
        sqlite3_finalize(cached);
      statements_.clear();
    }
    statements_.emplace(sql, statement);
    return statement;
  }

  void bind(sqlite3_stmt* statement, const std::vector<SqlValue>& params) const {
    const int expected = sqlite3_bind_parameter_count(statement);
    if (static_cast<std::size_t>(expected) != params.size())
      throw SqlError(SQLITE_RANGE, name_ + ": the query has " + std::to_string(expected) + " placeholders but " +
                                       std::to_string(params.size()) + " parameters were given");
    for (int i = 0; i < expected; ++i) {
      const SqlValue& value = params[static_cast<std::size_t>(i)];
      int rc = SQLITE_OK;
      if (const auto* n = std::get_if<std::int64_t>(&value)) {
        rc = sqlite3_bind_int64(statement, i + 1, *n);
      } else if (const auto* d = std::get_if<double>(&value)) {
        rc = sqlite3_bind_double(statement, i + 1, *d);
      } else if (const auto* s = std::get_if<std::string>(&value)) {
        // Stays alive and unchanged until the statement is reset: SQLITE_STATIC.
        rc = sqlite3_bind_text64(statement, i + 1, s->data(), s->size(), SQLITE_STATIC, SQLITE_UTF8);
      } else {
        rc = sqlite3_bind_null(statement, i + 1);
      }
      if (rc != SQLITE_OK) fail(rc);
    }
  }

  static SqlValue column(sqlite3_stmt* statement, int c) {
    switch (sqlite3_column_type(statement, c)) {
      case SQLITE_INTEGER:
        return static_cast<std::int64_t>(sqlite3_column_int64(statement, c));
      case SQLITE_FLOAT:
        return sqlite3_column_double(statement, c);
      case SQLITE_NULL:
        return nullptr;
      case SQLITE_BLOB: {
        const auto* bytes = static_cast<const char*>(sqlite3_column_blob(statement, c));
        return std::string(bytes ? bytes : "", static_cast<std::size_t>(sqlite3_column_bytes(statement, c)));
      }
      default: {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, c));
        return std::string(text ? text : "", static_cast<std::size_t>(sqlite3_column_bytes(statement, c)));
      }
    }
  }

  // The busy timeout: another connection holds the lock. Wait in short naps until the
  // statement's deadline, or until it is interrupted (then SQLITE_BUSY ends it).
  static int on_progress(void* self_ptr) noexcept {
    return static_cast<SqliteHandle*>(self_ptr)->interrupted_.load(std::memory_order_relaxed) ? 1 : 0;
  }

  static int on_busy(void* self_ptr, int attempt) noexcept {
    auto* self = static_cast<SqliteHandle*>(self_ptr);
    const Clock::time_point deadline{Clock::duration(self->deadline_.load(std::memory_order_relaxed))};
    const auto now = Clock::now();
    if (self->interrupted_.load(std::memory_order_relaxed) || now >= deadline) return 0;
    const auto nap = std::chrono::milliseconds(std::min(attempt + 1, 10));
    std::this_thread::sleep_for(std::min<Clock::duration>(nap, deadline - now));
    return 1;
  }

  const std::string name_;
  const SqlDriverLimits limits_;
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
  std::atomic<Clock::rep> deadline_{0};
  std::atomic<bool> interrupted_{false};
};

class SqliteConnection final : public SqlConnection {
 public:
  SqliteConnection(std::shared_ptr<SqliteHandle> handle, std::shared_ptr<ThreadPoolExecutor> thread,
                   std::shared_ptr<LoopAnchor> anchor, const std::string& name)
      : handle_(std::move(handle)), thread_(std::move(thread)), anchor_(std::move(anchor)), name_(name) {}

  ~SqliteConnection() override {
    // The close runs on the connection's thread, after any statement still there.
    // An idle connection closes at once (the file is closed when the pool is), the
    // loop waiting for it; one whose statement timed out may still be finishing it, so
    // its thread is joined on the loop's blocking pool instead.
    try {
      (void)thread_->submit([handle = std::move(handle_)]() mutable { handle.reset(); });
      if (IOLoop* loop = alive_on_this_thread(*anchor_); !usable_ && loop && !loop_closing(*loop))
        (void)loop->blocking_executor().submit([thread = std::move(thread_)]() mutable { thread.reset(); });
    } catch (...) {  // a pool that is shutting down: join here
    }
    thread_.reset();
  }

  SqlResult execute(std::string_view sql, std::span<const SqlValue> params, SqlDeadline deadline) override {
    // The job owns copies, and answers through a promise of its own rather than its
    // job's future: a statement that times out, or whose loop is destroyed, is
    // interrupted and goes on without the fiber or its stack.
    auto answer = std::make_shared<Promise<SqlResult>>();
    Future<SqlResult> done = answer->get_future();
    (void)thread_->submit([handle = handle_, sql = std::string(sql),
                           params = std::vector<SqlValue>(params.begin(), params.end()), deadline, answer] {
      try {
        answer->set_value(handle->execute(sql, params, deadline));
      } catch (...) {
        answer->set_exception(std::current_exception());
      }
    });
    try {
      return wait_for_future(std::move(done), time_left(deadline));
    } catch (const TimeoutError&) {
      stop();
      throw TimeoutError(name_ + ": the query ran past query_timeout (or the request's Deadline) and was interrupted: " +
                         std::string(sql.substr(0, 200)));
    } catch (...) {  // LoopClosed, or the fiber unwinding
      stop();
      throw;
    }
  }
  bool usable() const noexcept override { return usable_; }
  bool still_open() noexcept override { return true; }  // a file does not hang up
  std::string_view begin_statement() const noexcept override { return "BEGIN IMMEDIATE"; }

 private:
  void stop() noexcept {
    handle_->interrupt();
    usable_ = false;
  }

  std::shared_ptr<SqliteHandle> handle_;
  std::shared_ptr<ThreadPoolExecutor> thread_;
  std::shared_ptr<LoopAnchor> anchor_;
  const std::string name_;
  bool usable_ = true;
};

class SqliteDriver final : public SqlDriver {
 public:
  SqliteDriver(std::string path, SqlDriverLimits limits, IOLoop& loop)
      : path_(std::move(path)), name_("sqlite:" + path_), limits_(limits), anchor_(loop_anchor(loop)) {}

  std::unique_ptr<SqlConnection> connect(SqlDeadline deadline) override {
    auto handle = std::make_shared<SqliteHandle>(name_, limits_);
    auto thread = std::make_shared<ThreadPoolExecutor>(1);
    auto connection = std::make_unique<SqliteConnection>(handle, thread, anchor_, name_);
    wait_for_future(thread->submit([handle, path = path_] { handle->open(path); }), time_left(deadline));
    return connection;
  }
  std::size_t connection_limit() const noexcept override { return path_ == ":memory:" ? 1 : SIZE_MAX; }
  const std::string& name() const noexcept override { return name_; }

 private:
  const std::string path_;
  const std::string name_;
  const SqlDriverLimits limits_;
  const std::shared_ptr<LoopAnchor> anchor_;
};

}  // namespace

std::unique_ptr<SqlDriver> make_sqlite_driver(std::string path, SqlDriverLimits limits, IOLoop& loop) {
  return std::make_unique<SqliteDriver>(std::move(path), limits, loop);
}

}  // namespace fiberloop::detail
