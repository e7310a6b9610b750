// Connector/C's two ways to let a fiber wait on the server, side by side (docs/sql.md,
// "MariaDB: how a fiber waits on Connector/C"): the io-wait hook the driver uses, and
// the non-blocking API (MYSQL_OPT_NONBLOCK, _start/_cont). Both wait through the same
// FdWaiter. FIBERS fibers on one loop, each with a connection of its own, run point
// selects by primary key on a prepared statement for SECONDS; prints one line:
//   hook fibers=100 queries=N qps=N p50=Nus p99=Nus cpu/query=Nus
// Under `valgrind --tool=callgrind --collect-atstart=no` only the query window is
// counted (instructions per query, independent of the machine's load).
// bench/sql/wait_ways.sh starts a private server and runs the comparison.
//
//   mariadb_wait_ways hook|nonblocking PORT USER PASSWORD DATABASE FIBERS SECONDS
// The table: items(id INT PRIMARY KEY, name VARCHAR(64), qty BIGINT) with qty = id * 7
// for ids 1..10000 (wait_ways.sh creates it).

#include <mysql.h>
#include <sys/resource.h>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_TOGGLE_COLLECT
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <fiberloop/fiberloop.hpp>

#include "net/fd_waiter.hpp"
#include "sql/mariadb_io_wait.hpp"

namespace {

using namespace fiberloop;
using Clock = std::chrono::steady_clock;

constexpr int kRows = 10000;
bool use_hook = true;

/// One connection, set up for either way.
struct Connection {
  MYSQL* mysql = nullptr;
  std::unique_ptr<detail::MariadbSocket> socket;  // the hook's
  std::unique_ptr<detail::FdWaiter> waiter;       // the non-blocking API's
};

void check(bool ok, const char* what, const char* error) {
  if (!ok) throw std::runtime_error(std::string(what) + ": " + error);
}

/// The non-blocking API's wait: suspends the fiber as `status` asks, returns what happened.
int wait_for(Connection& c, int status) {
  if (!c.waiter) c.waiter = std::make_unique<detail::FdWaiter>(IOLoop::current(), mysql_get_socket(c.mysql));
  const Events direction = (status & MYSQL_WAIT_READ) ? Events::read : Events::write;
  if (!c.waiter->wait(direction, Clock::time_point::max(), "mariadb_wait_ways")) return MYSQL_WAIT_TIMEOUT;
  return direction == Events::read ? MYSQL_WAIT_READ : MYSQL_WAIT_WRITE;
}

/// A blocking call the hook's way: plain Connector/C inside a MariadbCall.
template <class F>
auto hooked(Connection& c, F&& call) {
  detail::MariadbCall scope(*c.socket, c.mysql, Clock::time_point::max());
  return call();
}

/// The same call the non-blocking API's way: `start` then `cont` until it is done.
template <class R, class Start, class Cont>
R nonblocking(Connection& c, Start&& start, Cont&& cont) {
  R result{};
  for (int status = start(&result); status != 0;) status = cont(&result, wait_for(c, status));
  return result;
}

void connect(Connection& c, unsigned port, const char* user, const char* password, const char* database) {
  c.mysql = mysql_init(nullptr);
  MYSQL* connected = nullptr;
  if (use_hook) {
    detail::install_mariadb_io_wait(c.mysql);
    c.socket = std::make_unique<detail::MariadbSocket>(IOLoop::current());
    connected = hooked(c, [&] {
      return mysql_real_connect(c.mysql, "127.0.0.1", user, password, database, port, nullptr, 0);
    });
  } else {
    mysql_options(c.mysql, MYSQL_OPT_NONBLOCK, nullptr);
    connected = nonblocking<MYSQL*>(
        c,
        [&](MYSQL** r) {
          return mysql_real_connect_start(r, c.mysql, "127.0.0.1", user, password, database, port, nullptr, 0);
        },
        [&](MYSQL** r, int ready) { return mysql_real_connect_cont(r, c.mysql, ready); });
  }
  check(connected != nullptr, "connect", mysql_error(c.mysql));
}

/// Point selects until `end`; their latencies in microseconds.
std::vector<double> run_queries(Connection& c, unsigned seed, Clock::time_point end) {
  MYSQL_STMT* stmt = mysql_stmt_init(c.mysql);
  const char* sql = "SELECT name, qty FROM items WHERE id = ?";
  const std::size_t length = std::strlen(sql);
  const int prepared =
      use_hook ? hooked(c, [&] { return mysql_stmt_prepare(stmt, sql, length); })
               : nonblocking<int>(
                     c, [&](int* r) { return mysql_stmt_prepare_start(r, stmt, sql, length); },
                     [&](int* r, int ready) { return mysql_stmt_prepare_cont(r, stmt, ready); });
  check(prepared == 0, "prepare", mysql_stmt_error(stmt));
  long long id = 0;
  MYSQL_BIND param{};
  param.buffer_type = MYSQL_TYPE_LONGLONG;
  param.buffer = &id;
  check(!mysql_stmt_bind_param(stmt, &param), "bind", mysql_stmt_error(stmt));
  char name[65];
  unsigned long name_length = 0;
  long long qty = 0;
  MYSQL_BIND columns[2]{};
  columns[0].buffer_type = MYSQL_TYPE_STRING;
  columns[0].buffer = name;
  columns[0].buffer_length = sizeof name;
  columns[0].length = &name_length;
  columns[1].buffer_type = MYSQL_TYPE_LONGLONG;
  columns[1].buffer = &qty;
  check(!mysql_stmt_bind_result(stmt, columns), "bind result", mysql_stmt_error(stmt));

  const auto execute = [&] {
    return use_hook ? hooked(c, [&] { return mysql_stmt_execute(stmt); })
                    : nonblocking<int>(
                          c, [&](int* r) { return mysql_stmt_execute_start(r, stmt); },
                          [&](int* r, int ready) { return mysql_stmt_execute_cont(r, stmt, ready); });
  };
  const auto fetch = [&] {
    return use_hook ? hooked(c, [&] { return mysql_stmt_fetch(stmt); })
                    : nonblocking<int>(
                          c, [&](int* r) { return mysql_stmt_fetch_start(r, stmt); },
                          [&](int* r, int ready) { return mysql_stmt_fetch_cont(r, stmt, ready); });
  };
  std::mt19937 random(seed);
  std::vector<double> latencies;
  while (Clock::now() < end) {
    id = 1 + static_cast<long long>(random() % kRows);
    const auto start = Clock::now();
    check(execute() == 0, "execute", mysql_stmt_error(stmt));
    int rows = 0;
    for (int rc; (rc = fetch()) != MYSQL_NO_DATA; ++rows) check(rc == 0, "fetch", mysql_stmt_error(stmt));
    if (rows != 1 || qty != id * 7) throw std::runtime_error("a wrong answer for id " + std::to_string(id));
    latencies.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  mysql_stmt_close(stmt);  // nothing pending: COM_STMT_CLOSE only
  return latencies;
}

double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8 || (std::string(argv[1]) != "hook" && std::string(argv[1]) != "nonblocking")) {
    std::fprintf(stderr, "usage: %s hook|nonblocking PORT USER PASSWORD DATABASE FIBERS SECONDS\n", argv[0]);
    return 2;
  }
  use_hook = std::string(argv[1]) == "hook";
  const unsigned port = static_cast<unsigned>(std::stoul(argv[2]));
  const int fibers = std::stoi(argv[6]);
  const auto duration = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(std::stod(argv[7])));
  mysql_library_init(0, nullptr, nullptr);
  IOLoop loop;
  std::vector<double> latencies;
  double cpu = 0, wall = 0;
  loop.run_sync([&] {
    std::vector<Connection> connections(static_cast<std::size_t>(fibers));
    for (Connection& c : connections) connect(c, port, argv[3], argv[4], argv[5]);
    const double cpu_before = cpu_seconds();
    const auto start = Clock::now();
    CALLGRIND_TOGGLE_COLLECT;
    std::vector<Future<std::vector<double>>> done;
    for (int i = 0; i < fibers; ++i)
      done.push_back(loop.spawn([&, i] { return run_queries(connections[static_cast<std::size_t>(i)], i, start + duration); }));
    for (auto& d : done) {
      const std::vector<double> mine = wait_for_future(d);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    }
    CALLGRIND_TOGGLE_COLLECT;
    wall = std::chrono::duration<double>(Clock::now() - start).count();
    cpu = cpu_seconds() - cpu_before;
    for (Connection& c : connections) {
      c.socket.reset();  // no handler left for the socket mysql_close closes
      c.waiter.reset();
      mysql_close(c.mysql);
    }
  });
  if (latencies.empty()) return 1;
  std::sort(latencies.begin(), latencies.end());
  const double queries = static_cast<double>(latencies.size());
  std::printf("%s fibers=%d queries=%zu qps=%.0f p50=%.1fus p99=%.1fus cpu/query=%.2fus\n", argv[1], fibers,
              latencies.size(), queries / wall, latencies[latencies.size() / 2],
              latencies[latencies.size() * 99 / 100], cpu / queries * 1e6);
  mysql_library_end();
}
