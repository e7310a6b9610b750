// SqlDatabase on SQLite (files in a scratch directory, and :memory:): values round
// trip verbatim through bound parameters, errors carry SQLite's codes, the pool caps
// and times out as promised, transactions roll back unless committed, a slow
// statement is interrupted at query_timeout, and the loop is never blocked.

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <limits>
#include <thread>

#include "sql/sql_driver.hpp"
#include "support/loop_test.hpp"

namespace fiberloop::testing {
namespace {

using namespace std::chrono_literals;

// A recursive count that keeps SQLite busy for seconds: a slow query.
constexpr const char* kSlowQuery =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000) SELECT count(*) FROM n";

class SqliteDatabaseTest : public LoopTest {
 protected:
  SqliteDatabaseTest() {
    dir_ = std::filesystem::temp_directory_path() / ("fiberloop_sql_" + std::to_string(::getpid()) + "_" +
                                                     std::to_string(counter_++));
    std::filesystem::create_directories(dir_);
  }
  ~SqliteDatabaseTest() override { std::filesystem::remove_all(dir_); }

  std::string url(const std::string& file = "test.db") const { return "sqlite:" + (dir_ / file).string(); }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
};

std::int64_t integer(const SqlValue& v) { return std::get<std::int64_t>(v); }
const std::string& text(const SqlValue& v) { return std::get<std::string>(v); }

TEST_F(SqliteDatabaseTest, ValuesRoundTripVerbatimThroughBoundParameters) {
  run_in_fiber([&] {
    SqlDatabase db(url());
    db.query("CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
    const std::string sql_looking = "'); DROP TABLE t; -- \"quoted\" \\ ' '' ? ?1 :name";
    const std::string binary("a\0b\xff\x01", 5);
    const std::vector<SqlValue> values = {nullptr,
                                          std::numeric_limits<std::int64_t>::min(),
                                          std::numeric_limits<std::int64_t>::max(),
                                          0.1,
                                          -1e300,
                                          std::string(),
                                          sql_looking,
                                          binary,
                                          std::string(1 << 20, 'x')};
    for (const SqlValue& v : values) db.query("INSERT INTO t (v) VALUES (?)", {v});
    const SqlResult r = db.query("SELECT v FROM t ORDER BY id");
    ASSERT_EQ(r.rows.size(), values.size());
    EXPECT_EQ(r.columns, std::vector<std::string>{"v"});
    for (std::size_t i = 0; i < values.size(); ++i) EXPECT_EQ(r.rows[i][0], values[i]) << "value " << i;
    EXPECT_EQ(integer(db.query("SELECT count(*) FROM t WHERE v = ?", {sql_looking}).rows[0][0]), 1);
  });
}

TEST_F(SqliteDatabaseTest, WritesReportAffectedRowsAndTheInsertedId) {
  run_in_fiber([&] {
    SqlDatabase db(url());
    db.query("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)");
    const SqlResult first = db.query("INSERT INTO t (name) VALUES (?), (?)", {"a", "b"});
    EXPECT_EQ(first.affected_rows, 2u);
    EXPECT_EQ(first.last_insert_id, 2);
    const SqlResult update = db.query("UPDATE t SET name = ? WHERE id >= ?", {"c", std::int64_t{1}});
    EXPECT_EQ(update.affected_rows, 2u);
    const SqlResult select = db.query("SELECT id, name FROM t WHERE id = ?", {std::int64_t{2}});
    EXPECT_EQ(select.affected_rows, 0u) << "a read changes nothing";
    EXPECT_EQ(select.columns, (std::vector<std::string>{"id", "name"}));
    ASSERT_EQ(select.rows.size(), 1u);
    EXPECT_EQ(text(select.rows[0][1]), "c");
  });
}

TEST_F(SqliteDatabaseTest, ErrorsCarrySqlitesCodeAndKeepTheConnection) {
  run_in_fiber([&] {
    SqlDatabase db(url());
    db.query("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    try {
      db.query("SELEC nonsense");
      ADD_FAILURE() << "a syntax error was accepted";
    } catch (const SqlError& e) {
      EXPECT_EQ(e.code(), SQLITE_ERROR);
      EXPECT_NE(std::string(e.what()).find("syntax error"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("sqlite:"), std::string::npos) << e.what();
    }
    db.query("INSERT INTO t VALUES (1)");
    try {
      db.query("INSERT INTO t VALUES (1)");
      ADD_FAILURE() << "a duplicate key was accepted";
    } catch (const SqlError& e) {
      EXPECT_EQ(e.code(), SQLITE_CONSTRAINT_PRIMARYKEY) << "the extended code";
    }
    EXPECT_THROW(db.query("SELECT ?", {}), SqlError) << "a placeholder without a parameter";
    EXPECT_THROW(db.query("SELECT 1", {std::int64_t{1}}), SqlError) << "a parameter without a placeholder";
    EXPECT_THROW(db.query("SELECT 1; DROP TABLE t"), SqlError) << "one statement per query";
    EXPECT_EQ(db.query("SELECT count(*) FROM t").rows.size(), 1u) << "the table is still there";
    EXPECT_EQ(db.stats().open, 1u) << "errors in statements keep the connection";
  });
}

TEST_F(SqliteDatabaseTest, FilesAreInWalModeAndMemoryDatabasesArePrivateWithOneConnection) {
  run_in_fiber([&] {
    SqlDatabase file(url());
    EXPECT_EQ(text(file.query("PRAGMA journal_mode").rows[0][0]), "wal");

    SqlPoolOptions options;
    options.max_connections = 8;
    options.acquire_timeout = 50ms;
    SqlDatabase a("sqlite::memory:", options);
    SqlDatabase b("sqlite::memory:", options);
    a.query("CREATE TABLE only_in_a (x)");
    EXPECT_THROW(b.query("SELECT * FROM only_in_a"), SqlError);
    // The pool holds one connection: a second at once would be another, empty database.
    SqlTransaction held = a.transaction();
    EXPECT_THROW(a.query("SELECT 1"), TimeoutError);
    held.query("INSERT INTO only_in_a VALUES (1)");
    held.commit();
    EXPECT_EQ(integer(a.query("SELECT count(*) FROM only_in_a").rows[0][0]), 1);
    EXPECT_EQ(a.stats().open, 1u);
  });
}

TEST_F(SqliteDatabaseTest, TwoHundredFibersThroughFourConnectionsLoseNothingAndNeverBlockTheLoop) {
  run_in_fiber([&] {
    SqlPoolOptions options;
    options.max_connections = 4;
    SqlDatabase db(url(), options);
    db.query("CREATE TABLE t (fiber INTEGER PRIMARY KEY, value TEXT)");
    TimerRhythm rhythm(IOLoop::current(), 5ms);
    std::size_t most_open = 0;
    std::vector<Future<void>> fibers;
    for (std::int64_t i = 0; i < 200; ++i) {
      fibers.push_back(IOLoop::current().spawn([&, i] {
        const std::string value = "value " + std::to_string(i) + " '\"";
        db.query("INSERT INTO t VALUES (?, ?)", {i, value});
        const SqlResult back = db.query("SELECT value FROM t WHERE fiber = ?", {i});
        EXPECT_EQ(back.rows.at(0).at(0), SqlValue(value));
        most_open = std::max(most_open, db.stats().open);
      }));
    }
    // A writer holding the lock for a second: meanwhile the others' inserts wait in
    // SQLite's busy handler, on their connections' threads. Had they waited on the loop
    // thread, it would miss 200 ticks.
    fibers.push_back(IOLoop::current().spawn([&] {
      SqlTransaction tx = db.transaction();
      sleep_for(1s);
      tx.commit();
    }));
    for (auto& f : fibers) wait_for_future(f, 60s);
    EXPECT_EQ(integer(db.query("SELECT count(*) FROM t").rows[0][0]), 200);
    const SqlPoolStats stats = db.stats();
    EXPECT_EQ(stats.in_use, 0u) << "no connection leaked";
    EXPECT_EQ(stats.waiting, 0u);
    EXPECT_LE(stats.open, 4u);
    EXPECT_EQ(most_open, 4u) << "the fibers shared all four";
    EXPECT_GT(rhythm.ticks(), 0u);
    // SQLite works on the connections' threads: the loop thread only hands statements
    // over. Generous for a loaded machine under TSan (200 fiber starts in one loop pass
    // cost ~250 ms there); a loop blocked on the lock gives >= 1000.
    EXPECT_LT(rhythm.largest_gap_ms(), 600.0);
  });
}

TEST_F(SqliteDatabaseTest, TransactionsRollBackUnlessCommittedExceptionsIncluded) {
  run_in_fiber([&] {
    SqlDatabase db(url());
    db.query("CREATE TABLE t (x INTEGER)");
    {
      SqlTransaction tx = db.transaction();
      tx.query("INSERT INTO t VALUES (1)");
      tx.commit();
      EXPECT_THROW(tx.query("SELECT 1"), std::logic_error) << "used after commit";
    }
    {
      SqlTransaction tx = db.transaction();
      tx.query("INSERT INTO t VALUES (2)");
      tx.rollback();
    }
    try {
      SqlTransaction tx = db.transaction();
      tx.query("INSERT INTO t VALUES (3)");
      throw std::runtime_error("the request failed half-way");
    } catch (const std::runtime_error&) {
    }
    {
      SqlTransaction forgotten = db.transaction();
      forgotten.query("INSERT INTO t VALUES (4)");
    }
    const SqlResult rows = db.query("SELECT x FROM t");
    ASSERT_EQ(rows.rows.size(), 1u) << "only the committed row is there";
    EXPECT_EQ(integer(rows.rows[0][0]), 1);
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_EQ(db.stats().open, 1u) << "rolled back on the connection, which was kept";
  });
}

TEST_F(SqliteDatabaseTest, AWriterWaitsForAnotherTransactionUpToItsQueryTimeout) {
  run_in_fiber([&] {
    SqlPoolOptions options;
    options.query_timeout = 2s;
    SqlDatabase db(url(), options);
    db.query("CREATE TABLE t (x INTEGER)");
    SqlTransaction first = db.transaction();  // BEGIN IMMEDIATE: holds the write lock
    first.query("INSERT INTO t VALUES (1)");
    bool second_began = false;
    Future<void> second = IOLoop::current().spawn([&] {
      SqlTransaction tx = db.transaction();  // waits on the busy handler
      second_began = true;
      tx.query("INSERT INTO t VALUES (2)");
      tx.commit();
    });
    sleep_for(100ms);
    EXPECT_FALSE(second_began) << "two write transactions at once";
    first.commit();
    wait_for_future(second, 5s);
    EXPECT_TRUE(second_began);
    EXPECT_EQ(integer(db.query("SELECT count(*) FROM t").rows[0][0]), 2);

    SqlPoolOptions impatient;
    impatient.query_timeout = 100ms;
    SqlDatabase other(url(), impatient);
    SqlTransaction holder = db.transaction();
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(other.query("INSERT INTO t VALUES (3)"), Error) << "busy past query_timeout";
    EXPECT_LT(elapsed_ms(start), 2000.0);
    holder.rollback();
  });
}

TEST_F(SqliteDatabaseTest, ASlowQueryIsInterruptedAtQueryTimeoutAndOnlyItFails) {
  run_in_fiber([&] {
    SqlPoolOptions options;
    options.query_timeout = 100ms;
    options.max_connections = 2;
    SqlDatabase db(url(), options);
    db.query("CREATE TABLE t (x INTEGER)");
    TimerRhythm rhythm(IOLoop::current(), 5ms);
    Future<void> other = IOLoop::current().spawn([&] {
      for (int i = 0; i < 20; ++i) db.query("INSERT INTO t VALUES (?)", {std::int64_t{i}});
    });
    const auto start = std::chrono::steady_clock::now();
    try {
      db.query(kSlowQuery);
      ADD_FAILURE() << "the slow query finished";
    } catch (const TimeoutError& e) {
      EXPECT_NE(std::string(e.what()).find("query_timeout"), std::string::npos) << e.what();
    }
    EXPECT_LT(elapsed_ms(start), 2000.0);
    wait_for_future(other, 10s);
    EXPECT_EQ(integer(db.query("SELECT count(*) FROM t").rows[0][0]), 20) << "the other fiber's queries all ran";
    EXPECT_EQ(db.stats().in_use, 0u);
    EXPECT_LE(db.stats().open, 1u) << "the timed-out connection was discarded";
    EXPECT_LT(rhythm.largest_gap_ms(), 250.0);
  });
}

TEST_F(SqliteDatabaseTest, AResultLargerThanTheLimitFails) {
  run_in_fiber([&] {
    SqlPoolOptions options;
    options.max_result_bytes = 64 * 1024;
    SqlDatabase db(url(), options);
    db.query("CREATE TABLE t (v TEXT)");
    for (int i = 0; i < 10; ++i) db.query("INSERT INTO t VALUES (?)", {std::string(10000, 'x')});
    try {
      db.query("SELECT v FROM t");
      ADD_FAILURE() << "100 kB came back under a 64 KiB limit";
    } catch (const SqlError& e) {
      EXPECT_EQ(e.code(), SQLITE_TOOBIG);
      EXPECT_NE(std::string(e.what()).find("max_result_bytes"), std::string::npos) << e.what();
    }
    EXPECT_EQ(db.query("SELECT v FROM t LIMIT 2").rows.size(), 2u);
  });
}

TEST_F(SqliteDatabaseTest, QueriesFromOtherThreadsAndFuturesRunOnTheLoop) {
  SqlDatabase db(url(), {}, loop_);
  run_in_fiber([&] { db.query("CREATE TABLE t (x INTEGER)"); });
  // On the loop's thread outside a fiber a wait would hang the loop: refused.
  bool refused = false;
  loop_.run_sync([&] {
    loop_.add_callback([&] {
      try {
        (void)db.query("SELECT 1");
      } catch (const BlockingCallError&) {
        refused = true;
      }
    });
    sleep_for(10ms);
  });
  EXPECT_TRUE(refused);
  std::atomic<bool> stop{false};
  std::thread plain([&] {
    for (std::int64_t i = 0; i < 10; ++i) db.query("INSERT INTO t VALUES (?)", {i});
    stop = true;
  });
  run_in_fiber([&] {
    while (!stop) sleep_for(1ms);
    const SqlResult r = wait_for_future(db.query_async("SELECT sum(x) FROM t"));
    EXPECT_EQ(integer(r.rows[0][0]), 45);
    EXPECT_THROW(wait_for_future(db.query_async("SELEC")), SqlError);
  });
  plain.join();
}

TEST_F(SqliteDatabaseTest, TransactionsAreForFibersOfTheLoop) {
  SqlDatabase db(url(), {}, loop_);
  EXPECT_THROW((void)db.transaction(), std::logic_error);
}

TEST_F(SqliteDatabaseTest, ATransactionOutlivesItsDatabase) {
  run_in_fiber([&] {
    std::optional<SqlTransaction> tx;
    {
      SqlDatabase db(url());
      db.query("CREATE TABLE t (x INTEGER)");
      tx.emplace(db.transaction());
    }
    tx->query("INSERT INTO t VALUES (1)");
    tx->commit();
    SqlDatabase again(url());
    EXPECT_EQ(integer(again.query("SELECT count(*) FROM t").rows[0][0]), 1);
  });
}

TEST_F(SqliteDatabaseTest, ALoopDestroyedDuringAQueryUnwindsItsFiber) {
  auto loop = std::make_unique<IOLoop>();
  auto db = std::make_unique<SqlDatabase>(url(), SqlPoolOptions{}, *loop);
  Future<SqlResult> slow = db->query_async(kSlowQuery);
  loop->run_sync([] { sleep_for(50ms); });
  const auto start = std::chrono::steady_clock::now();
  db.reset();
  loop.reset();  // waits for the statement's job (it may use the fiber's stack), which is interrupted
  EXPECT_LT(elapsed_ms(start), 10000.0);
  EXPECT_NE(failure_of<LoopClosed>(std::move(slow)), "");
}

TEST(SqlDatabaseUrlTest, UnknownOrMalformedUrlsAreRefusedWithoutQuotingThePassword) {
  IOLoop loop;
  EXPECT_THROW(SqlDatabase("postgres://u:p@h/db", {}, loop), std::invalid_argument);
  EXPECT_THROW(SqlDatabase("sqlite:", {}, loop), std::invalid_argument);
  EXPECT_THROW(SqlDatabase("", {}, loop), std::invalid_argument);
  try {
    SqlDatabase("mysql://user:s3cret@host:99999/db", {}, loop);
    ADD_FAILURE() << "port 99999 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find("s3cret"), std::string::npos) << e.what();
  }
  SqlPoolOptions none;
  none.max_connections = 0;
  EXPECT_THROW(SqlDatabase("sqlite::memory:", none, loop), std::invalid_argument);
}

TEST(SqlDatabaseUrlTest, MysqlUrlsDecodeTheirParts) {
  const detail::MariadbTarget t = detail::parse_mariadb_url("us%40er:p%3Ass%2F@db.example:3307/shop%20db");
  EXPECT_EQ(t.user, "us@er");
  EXPECT_EQ(t.password, "p:ss/");
  EXPECT_EQ(t.host, "db.example");
  EXPECT_EQ(t.port, 3307);
  EXPECT_EQ(t.database, "shop db");
  const detail::MariadbTarget v6 = detail::parse_mariadb_url("root@[::1]/x");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 3306);
  EXPECT_EQ(v6.user, "root");
  EXPECT_EQ(v6.password, "");
  EXPECT_THROW(detail::parse_mariadb_url("u:p@/db"), std::invalid_argument);
  EXPECT_THROW(detail::parse_mariadb_url("u:p@h:x/db"), std::invalid_argument);
  EXPECT_THROW(detail::parse_mariadb_url("u:p@h/db%zz"), std::invalid_argument);
  EXPECT_THROW(detail::parse_mariadb_url("[::1/db"), std::invalid_argument);
}

}  // namespace
}  // namespace fiberloop::testing
