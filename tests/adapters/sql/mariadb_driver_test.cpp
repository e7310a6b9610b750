// The MariaDB driver (adapters/src/sql/mariadb_driver.cpp) against a private MariaDB
// server, through the driver interface the pool uses, from fibers of a loop: values
// both ways, errors and their codes, deadlines (and the KILL QUERY behind them), KILLs
// from an admin session, the result limit, and a loop that never blocks.

#include <array>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <fiberloop/run_blocking.hpp>

#include "sql/sql_driver.hpp"
#include "support/mariadb_test.hpp"

namespace fiberloop::testing {
namespace {

using namespace std::chrono_literals;
using detail::SqlConnection;
using detail::SqlDeadline;
using detail::SqlDriver;
using detail::SqlDriverLimits;

class MariadbDriverTest : public MariadbTest {
 protected:
  std::unique_ptr<SqlDriver> driver(SqlDriverLimits limits = {}) {
    return detail::make_mariadb_driver(server_->target(), limits, loop_);
  }
  std::unique_ptr<SqlDriver> driver_for(detail::MariadbTarget target) {
    return detail::make_mariadb_driver(std::move(target), {}, loop_);
  }
  static SqlDeadline after(std::chrono::milliseconds ms) { return detail::deadline_after(ms); }
  static SqlResult run(SqlConnection& c, std::string_view sql, std::vector<SqlValue> params = {}) {
    return c.execute(sql, params, after(10s));
  }
};

template <class T>
T as(const SqlValue& value) {
  EXPECT_TRUE(std::holds_alternative<T>(value)) << "the value holds alternative " << value.index();
  return std::holds_alternative<T>(value) ? std::get<T>(value) : T{};
}

TEST_F(MariadbDriverTest, ValuesRoundTripVerbatim) {
  run_in_fiber([&] {
    auto db = driver();
    auto c = db->connect(after(10s));
    run(*c, "CREATE TABLE round_trip (id INT AUTO_INCREMENT PRIMARY KEY, i BIGINT NULL, d DOUBLE NULL, "
            "t LONGTEXT NULL, b LONGBLOB NULL)");
    const std::string binary("a\0b\xff\x00z", 6);
    const std::string mebibyte(1 << 20, 'm');
    const std::string sql_looking = "'; DROP TABLE round_trip; -- \"quoted\" \\' \\\\ `ticks` ? %s \\0 ''";
    const std::vector<std::vector<SqlValue>> rows = {
        {nullptr, nullptr, nullptr, nullptr},
        {std::numeric_limits<std::int64_t>::min(), -1e300, std::string(), std::string()},
        {std::numeric_limits<std::int64_t>::max(), 0.1, sql_looking, binary},
        {std::int64_t{0}, -0.0, mebibyte, mebibyte},
    };
    for (const auto& row : rows) run(*c, "INSERT INTO round_trip (i, d, t, b) VALUES (?, ?, ?, ?)", row);

    const SqlResult all = run(*c, "SELECT i, d, t, b FROM round_trip ORDER BY id");
    EXPECT_EQ(all.columns, (std::vector<std::string>{"i", "d", "t", "b"}));
    ASSERT_EQ(all.rows.size(), rows.size());
    for (std::size_t r = 0; r < rows.size(); ++r)
      for (std::size_t col = 0; col < 4; ++col)
        EXPECT_EQ(all.rows[r][col], rows[r][col]) << "row " << r << " column " << col;

    // A parameter is a value, never SQL: the quote-laden text finds its row.
    const SqlResult found = run(*c, "SELECT COUNT(*) FROM round_trip WHERE t = ?", {sql_looking});
    EXPECT_EQ(as<std::int64_t>(found.rows.at(0).at(0)), 1);
  });
}

TEST_F(MariadbDriverTest, ColumnTypesMapToIntegersDoublesAndText) {
  run_in_fiber([&] {
    auto db = driver();
    auto c = db->connect(after(10s));
    const SqlResult r = run(*c,
                            "SELECT CAST(18446744073709551615 AS UNSIGNED) AS big, CAST(42 AS UNSIGNED) AS small, "
                            "CAST(-7 AS SIGNED) AS neg, 2.5e0 AS dbl, CAST(1.5 AS FLOAT) AS flt, 12.50 AS dec_, "
                            "DATE '2024-01-02' AS day, TIMESTAMP '2024-01-02 03:04:05.25' AS ts, NULL AS nothing, "
                            "? AS param",
                            {std::string("text param")});
    EXPECT_EQ(r.columns, (std::vector<std::string>{"big", "small", "neg", "dbl", "flt", "dec_", "day", "ts",
                                                   "nothing", "param"}));
    ASSERT_EQ(r.rows.size(), 1u);
    const auto& row = r.rows[0];
    EXPECT_EQ(as<std::string>(row[0]), "18446744073709551615") << "an UNSIGNED above INT64_MAX is its text";
    EXPECT_EQ(as<std::int64_t>(row[1]), 42);
    EXPECT_EQ(as<std::int64_t>(row[2]), -7);
    EXPECT_EQ(as<double>(row[3]), 2.5);
    EXPECT_EQ(as<double>(row[4]), 1.5);
    EXPECT_EQ(as<std::string>(row[5]), "12.50");
    EXPECT_EQ(as<std::string>(row[6]), "2024-01-02");
    EXPECT_EQ(as<std::string>(row[7]), "2024-01-02 03:04:05.25");
    EXPECT_EQ(row[8], SqlValue(nullptr));
    EXPECT_EQ(as<std::string>(row[9]), "text param");
  });
}

TEST_F(MariadbDriverTest, StatementsThePreparedProtocolRefusesRunAsTextWithTheSameTypes) {
  run_in_fiber([&] {
    auto db = driver();
    auto c = db->connect(after(10s));
    // PREPARE and EXECUTE themselves cannot be prepared (error 1295): they run as text.
    run(*c, "PREPARE text_side FROM 'SELECT 1 AS one, 2.5e0 AS dbl, NULL AS nothing, ''it''''s'' AS txt, "
            "CAST(18446744073709551615 AS UNSIGNED) AS big, 12.50 AS dec_'");
    const SqlResult r = run(*c, "EXECUTE text_side");
    EXPECT_EQ(r.columns, (std::vector<std::string>{"one", "dbl", "nothing", "txt", "big", "dec_"}));
    ASSERT_EQ(r.rows.size(), 1u);
    EXPECT_EQ(r.rows[0], (std::vector<SqlValue>{std::int64_t{1}, 2.5, nullptr, std::string("it's"),
                                                std::string("18446744073709551615"), std::string("12.50")}));
    try {
      c->execute("EXECUTE text_side", std::vector<SqlValue>{std::int64_t{1}}, after(10s));
      ADD_FAILURE() << "an unpreparable statement took parameters";
    } catch (const SqlError& e) {
      EXPECT_EQ(e.code(), 1295) << e.what();
    }
    EXPECT_TRUE(c->usable());
    EXPECT_EQ(as<std::int64_t>(run(*c, "SELECT 5").rows.at(0).at(0)), 5);
  });
}

TEST_F(MariadbDriverTest, AffectedRowsAndLastInsertId) {
  run_in_fiber([&] {
    auto db = driver();
    auto c = db->connect(after(10s));
    run(*c, "CREATE TABLE counted (id INT AUTO_INCREMENT PRIMARY KEY, v INT)");
    SqlResult r = run(*c, "INSERT INTO counted (v) VALUES (?), (?), (?)", {std::int64_t{1}, std::int64_t{2}, std::int64_t{3}});
    EXPECT_EQ(r.affected_rows, 3u);
    EXPECT_EQ(r.last_insert_id, 1) << "MariaDB reports the first id of a multi-row insert";
    r = run(*c, "INSERT INTO counted (v) VALUES (?)", {std::int64_t{4}});
    EXPECT_EQ(r.last_insert_id, 4);
    r = run(*c, "UPDATE counted SET v = 2 WHERE v >= ?", {std::int64_t{2}});
    EXPECT_EQ(r.affected_rows, 3u) << "matched rows (the one already 2 included), as SQLite counts";
    r = run(*c, "DELETE FROM counted WHERE v = 2");
    EXPECT_EQ(r.affected_rows, 3u);
    EXPECT_TRUE(r.rows.empty());
  });
}

TEST_F(MariadbDriverTest, SyntaxErrorIs1064AndTheConnectionStaysUsable) {
  run_in_fiber([&] {
    auto db = driver();
    auto c = db->connect(after(10s));
    try {
      run(*c, "SELEKT 1");
      ADD_FAILURE() << "a syntax error passed";
    } catch (const SqlError& e) {
      EXPECT_EQ(e.code(), 1064);
      const std::string what = e.what();
      EXPECT_EQ(what.find(db->name() + ": "), 0u) << what;
      EXPECT_NE(what.find("SQL syntax"), std::string::npos) << what;
      EXPECT_EQ(what.find(server_->password()), std::string::npos) << "the password leaked: " << what;
    }
    EXPECT_TRUE(c->usable());
    EXPECT_TRUE(c->still_open());
    EXPECT_EQ(as<std::int64_t>(run(*c, "SELECT ?", {std::int64_t{7}}).rows.at(0).at(0)), 7);
    // An error at execution (not at prepare) leaves it usable as well.
    run(*c, "CREATE TABLE unique_v (v INT PRIMARY KEY)");
    run(*c, "INSERT INTO unique_v VALUES (?)", {std::int64_t{1}});
    try {
      run(*c, "INSERT INTO unique_v VALUES (?)", {std::int64_t{1}});
      ADD_FAILURE() << "a duplicate key passed";
    } catch (const SqlError& e) {
      EXPECT_EQ(e.code(), 1062) << e.what();
    }
    EXPECT_TRUE(c->usable());
    EXPECT_EQ(run(*c, "INSERT INTO unique_v VALUES (?)", {std::int64_t{2}}).affected_rows, 1u);
  });
}

TEST_F(MariadbDriverTest, WrongNumberOfParametersIsAnSqlError) {
  run_in_fiber([&] {
    auto db = driver();
    auto c = db->connect(after(10s));
    try {
      run(*c, "SELECT ? + ?", {std::int64_t{1}});
      ADD_FAILURE() << "one parameter for two placeholders passed";
    } catch (const SqlError& e) {
      EXPECT_NE(std::string(e.what()).find("2 '?' placeholders but 1 parameters"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(c->usable());
    EXPECT_EQ(as<std::int64_t>(run(*c, "SELECT ? + ?", {std::int64_t{1}, std::int64_t{2}}).rows.at(0).at(0)), 3);
  });
}

TEST_F(MariadbDriverTest, WrongPasswordIs1045WithoutThePassword) {
  run_in_fiber([&] {
    auto target = server_->target();
    target.password = "not-the-password";
    auto db = driver_for(target);
    try {
      db->connect(after(10s));
      ADD_FAILURE() << "a wrong password connected";
    } catch (const SqlError& e) {
      EXPECT_EQ(e.code(), 1045);
      EXPECT_EQ(std::string(e.what()).find("not-the-password"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("Access denied"), std::string::npos) << e.what();
    }
  });
}

TEST_F(MariadbDriverTest, ConnectionRefusedFailsAtOnce) {
  run_in_fiber([&] {
    auto target = server_->target();
    target.port = free_loopback_port();  // nothing listens there
    auto db = driver_for(target);
    const auto start = std::chrono::steady_clock::now();
    try {
      db->connect(after(10s));
      ADD_FAILURE() << "connected to a port nobody listens on";
    } catch (const SqlError& e) {
      EXPECT_EQ(e.code(), 2002) << e.what();
    }
    EXPECT_LT(elapsed_ms(start), 2000) << "a refused connection is known at once on loopback";
  });
}

TEST_F(MariadbDriverTest, UnknownHostIsAnSqlError) {
  run_in_fiber([&] {
    auto target = server_->target();
    target.host = "no-such-host.invalid";  // RFC 6761: never resolves
    auto db = driver_for(target);
    try {
      db->connect(after(10s));
      ADD_FAILURE() << "connected to a host that does not exist";
    } catch (const SqlError& e) {
      EXPECT_EQ(e.code(), 2005) << e.what();
      EXPECT_NE(std::string(e.what()).find("no-such-host.invalid"), std::string::npos) << e.what();
    } catch (const TimeoutError&) {
      // A resolver without network may time out instead: also an answer, and bounded.
    }
  });
}

TEST_F(MariadbDriverTest, LocalhostIsResolvedByUsAndReachedOverTcp) {
  run_in_fiber([&] {
    auto target = server_->target();
    target.host = "localhost";
    auto db = driver_for(target);
    // Given "localhost", Connector/C would resolve nothing and take a Unix socket that
    // does not exist here: a connection proves the name was resolved (on the blocking
    // pool) and a numeric address passed.
    auto c = db->connect(after(10s));
    const SqlResult r = run(*c, "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()");
    const std::string host = as<std::string>(r.rows.at(0).at(0));
    EXPECT_TRUE(host.starts_with("127.0.0.1:") || host.starts_with("::1:")) << host;
    EXPECT_GE(loop_.blocking_executor().thread_count(), 1u) << "the name was not resolved on the blocking pool";
  });
}

TEST_F(MariadbDriverTest, ConnectPastItsDeadlineTimesOut) {
  run_in_fiber([&] {
    auto db = driver();
    EXPECT_THROW(db->connect(SqlDeadline::min()), TimeoutError);
  });
}

TEST_F(MariadbDriverTest, StatementTimeoutFailsInTimeAndTheQueryIsKilledOnTheServer) {
  run_in_fiber([&] {
    auto db = driver();
    auto c = db->connect(after(10s));
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(c->execute("SELECT SLEEP(5) AS slow_statement_marker", {}, after(200ms)), TimeoutError);
    const double took = elapsed_ms(start);
    EXPECT_GE(took, 190);
    EXPECT_LT(took, 2000) << "the deadline was 200 ms";
    EXPECT_FALSE(c->usable());
    EXPECT_FALSE(c->still_open());
    // KILL QUERY stops it well before its 5 s are over (the bound leaves room for a slow
    // machine; without the KILL it runs on for 4.8 s).
    const bool gone = eventually([] { return running("slow_statement_marker").empty(); });
    EXPECT_TRUE(gone) << "the statement still runs on the server";
    EXPECT_LT(elapsed_ms(start), 4000) << "the statement ran to its end: it was not killed";
  });
}

TEST_F(MariadbDriverTest, StatementWithADeadlineAlreadyPastTimesOutAndKeepsTheConnection) {
  run_in_fiber([&] {
    auto db = driver();
    auto c = db->connect(after(10s));
    EXPECT_THROW(c->execute("SELECT 1", {}, SqlDeadline::min()), TimeoutError);
    EXPECT_TRUE(c->usable()) << "nothing was sent: the connection is as it was";
    EXPECT_EQ(as<std::int64_t>(run(*c, "SELECT 1").rows.at(0).at(0)), 1);
  });
}

TEST_F(MariadbDriverTest, ALoopDestroyedDuringAStatementUnwindsItsFiber) {
  bool unwound = false;
  {
    IOLoop loop;
    auto db = detail::make_mariadb_driver(server_->target(), {}, loop);
    (void)loop.spawn([&] {
      auto c = db->connect(after(10s));
      try {
        c->execute("SELECT SLEEP(5) AS unwind_marker", {}, after(10s));
      } catch (const LoopClosed&) {
        unwound = true;
        EXPECT_FALSE(c->usable());
        throw;
      }
    });
    // Runs the loop until the statement is on the server, then destroys it.
    loop.run_sync([] {
      EXPECT_TRUE(eventually([] { return !running("unwind_marker").empty(); }));
    });
  }
  EXPECT_TRUE(unwound) << "the statement's wait did not end with LoopClosed";
}

TEST_F(MariadbDriverTest, KillOfAnIdleConnectionIsSeenWithoutARoundTrip) {
  run_in_fiber([&] {
    auto db = driver();
    auto c = db->connect(after(10s));
    const auto id = as<std::int64_t>(run(*c, "SELECT CONNECTION_ID()").rows.at(0).at(0));
    EXPECT_TRUE(c->still_open());
    admin("KILL CONNECTION " + std::to_string(id));
    EXPECT_TRUE(eventually([&] { return !c->still_open(); })) << "a killed idle connection still looks open";
    EXPECT_THROW(run(*c, "SELECT 1"), SqlError);
    EXPECT_FALSE(c->usable());
  });
}

TEST_F(MariadbDriverTest, KillDuringAQueryFailsItAndTheConnectionIsUnusable) {
  run_in_fiber([&] {
    auto db = driver();
    auto c = db->connect(after(10s));
    const auto id = as<std::int64_t>(run(*c, "SELECT CONNECTION_ID()").rows.at(0).at(0));
    Future<void> killer = loop_.spawn([&] {
      EXPECT_TRUE(eventually([] { return !running("kill_me_marker").empty(); }));
      admin("KILL CONNECTION " + std::to_string(id));
    });
    try {
      run(*c, "SELECT SLEEP(5) AS kill_me_marker");
      ADD_FAILURE() << "the killed query succeeded";
    } catch (const SqlError& e) {
      // 1927 (connection killed) or 2013 (lost), depending on what arrives first.
      EXPECT_TRUE(e.code() == 1927 || e.code() == 2013 || e.code() == 2006) << e.code() << " " << e.what();
    }
    EXPECT_FALSE(c->usable());
    EXPECT_FALSE(c->still_open());
    wait_for_future(killer);
  });
}

TEST_F(MariadbDriverTest, ResultOverMaxResultBytesFailsAndDiscardsTheConnection) {
  run_in_fiber([&] {
    SqlDriverLimits limits;
    limits.max_result_bytes = 10000;
    auto db = driver(limits);
    {
      auto c = db->connect(after(10s));
      // Many small rows: the limit is reached row by row.
      try {
        run(*c, "SELECT REPEAT('x', 100) FROM seq_1_to_1000");
        ADD_FAILURE() << "100 kB of rows passed a 10 kB limit";
      } catch (const SqlError& e) {
        EXPECT_NE(std::string(e.what()).find("max_result_bytes"), std::string::npos) << e.what();
      }
      EXPECT_FALSE(c->usable());
    }
    {
      auto c = db->connect(after(10s));
      // One value longer than the column buffer and the limit.
      EXPECT_THROW(run(*c, "SELECT REPEAT('y', 50000)"), SqlError);
      EXPECT_FALSE(c->usable());
    }
    {
      auto c = db->connect(after(10s));
      // A row far larger than the limit is refused as it arrives, never held whole
      // (Connector/C's packet limit is the result limit plus 1 MiB).
      try {
        run(*c, "SELECT REPEAT('v', 3 * 1024 * 1024)");
        ADD_FAILURE() << "a 3 MiB row passed a 10 kB limit";
      } catch (const SqlError& e) {
        // Connector/C drops the connection over it and says so as a lost connection.
        EXPECT_EQ(e.code(), 2013) << e.what();
      }
      EXPECT_FALSE(c->usable());
    }
    {
      auto c = db->connect(after(10s));
      // Through the text protocol as well (EXECUTE cannot be prepared).
      run(*c, "PREPARE big FROM 'SELECT REPEAT(''w'', 100) FROM seq_1_to_1000'");
      EXPECT_THROW(run(*c, "EXECUTE big"), SqlError);
      EXPECT_FALSE(c->usable());
    }
    {
      auto c = db->connect(after(10s));
      // Within the limit, a long value comes whole.
      const SqlResult r = run(*c, "SELECT REPEAT('z', 9000)");
      EXPECT_EQ(as<std::string>(r.rows.at(0).at(0)), std::string(9000, 'z'));
      EXPECT_TRUE(c->usable());
    }
  });
}

TEST_F(MariadbDriverTest, PreparedStatementsAreCachedAndSurviveATableChange) {
  run_in_fiber([&] {
    auto db = driver();
    auto c = db->connect(after(10s));
    run(*c, "CREATE TABLE evolving (a INT)");
    run(*c, "INSERT INTO evolving VALUES (1)");
    // The server counts the statements this session prepared.
    const auto prepares = [&] {
      return std::stoll(as<std::string>(
          run(*c, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = ?",
              {std::string("COM_STMT_PREPARE")})
              .rows.at(0)
              .at(0)));
    };
    const long long before = prepares();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(run(*c, "SELECT * FROM evolving").rows.at(0).size(), 1u);
    EXPECT_EQ(prepares() - before, 1) << "a repeated statement was prepared again";
    run(*c, "ALTER TABLE evolving ADD COLUMN b INT DEFAULT 2");
    // The cached statement's columns changed: one that only reads runs again, unseen.
    SqlResult r = run(*c, "SELECT * FROM evolving");
    EXPECT_TRUE(c->usable());
    EXPECT_EQ(r.columns, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(r.rows.at(0), (std::vector<SqlValue>{std::int64_t{1}, std::int64_t{2}}));

    // One that writes ran once already: it fails, saying so, and is not run twice.
    run(*c, "INSERT INTO evolving (a) VALUES (?) RETURNING *", {std::int64_t{10}});
    run(*c, "ALTER TABLE evolving ADD COLUMN c INT DEFAULT 3");
    try {
      run(*c, "INSERT INTO evolving (a) VALUES (?) RETURNING *", {std::int64_t{20}});
      ADD_FAILURE() << "a changed writing statement was run again unseen";
    } catch (const SqlError& e) {
      EXPECT_EQ(e.code(), 2057) << e.what();
    }
    EXPECT_TRUE(c->usable());
    EXPECT_EQ(as<std::int64_t>(run(*c, "SELECT COUNT(*) FROM evolving WHERE a = 20").rows.at(0).at(0)), 1)
        << "the statement ran once";
    r = run(*c, "INSERT INTO evolving (a) VALUES (?) RETURNING *", {std::int64_t{30}});
    EXPECT_EQ(r.rows.at(0), (std::vector<SqlValue>{std::int64_t{30}, std::int64_t{2}, std::int64_t{3}}));
  });
}

TEST_F(MariadbDriverTest, TheStatementCacheIsBoundedOnTheServer) {
  run_in_fiber([&] {
    // The server's count of prepared statements, all sessions (earlier tests' closed
    // sessions may still be letting theirs go: an upper bound, then).
    const auto server_holds = [] {
      return std::stoi(admin("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'").at(0).at(1).value());
    };
    const int before = server_holds();
    auto db = driver();
    auto c = db->connect(after(10s));
    for (int i = 0; i < 300; ++i)
      EXPECT_EQ(as<std::int64_t>(run(*c, "SELECT " + std::to_string(i)).rows.at(0).at(0)), i);
    // Evicted statements are closed on the server: the connection holds the cache's 64.
    EXPECT_LE(server_holds() - before, 64);
  });
}

TEST_F(MariadbDriverTest, TheLoopKeepsItsRhythmWhile100FibersQuery) {
  run_in_fiber(
      [&] {
        auto db = driver();
        run(*db->connect(after(10s)), "CREATE TABLE points (id INT PRIMARY KEY, v BIGINT)");
        run(*db->connect(after(10s)), "INSERT INTO points SELECT seq, seq * 3 FROM seq_1_to_1000");
        TimerRhythm rhythm(loop_, 5ms);  // the largest gap between its ticks: how long the loop was away
        std::vector<Future<void>> fibers;
        std::size_t answered = 0;
        for (int f = 0; f < 100; ++f) {
          fibers.push_back(loop_.spawn([&, f] {
            auto c = db->connect(after(20s));
            for (int i = 0; i < 20; ++i) {
              const std::int64_t id = 1 + (f * 20 + i) % 1000;
              const SqlResult r = run(*c, "SELECT v FROM points WHERE id = ?", {id});
              EXPECT_EQ(as<std::int64_t>(r.rows.at(0).at(0)), id * 3);
              ++answered;
            }
            // Statements that take 1 s each: a loop blocked on one would miss 200 ticks.
            if (f % 10 == 0) run(*c, "SELECT SLEEP(1)");
          }));
        }
        for (auto& f : fibers) wait_for_future(f);
        EXPECT_EQ(answered, 2000u);
        // Generous for a loaded machine and the sanitizers; a blocked loop gives >= 1000.
        EXPECT_LT(rhythm.largest_gap_ms(), 500) << "the loop was blocked";
      },
      60s);
}

}  // namespace
}  // namespace fiberloop::testing
