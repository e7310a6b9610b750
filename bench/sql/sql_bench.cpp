// Point selects by primary key against one MariaDB, from N concurrent requesters, one
// way per run (bench/sql/run.sh runs every way, each in its own process, and pins the
// server and this program to different CPUs):
//
//   fibers        (a) N fibers on one loop, fiberloop::SqlDatabase (its MariaDB driver:
//                     the fiber waits on the driver's socket, no thread hand-off)
//   run-blocking  (b) N fibers on one loop, each query handed to the loop's run_blocking
//                     pool (one thread per connection) running the blocking Connector/C
//                     API through a hand-written thread-safe pool: seed 003's way
//   threads       (c) N threads, each a requester doing blocking queries through the
//                     same hand-written pool: thread-per-request as legacy servers do
//   threads-own   (c') N threads, each with a connection of its own: the reference that
//                     shows what a pool saves (MariaDB then runs N server threads)
//
//   sql_bench --variant V --concurrency N --url mysql://USER:PASS@HOST:PORT/DB
//             [--connections C] [--rows R] [--seconds S] [--warmup S] [--stack-kib KIB]
//             [--server-pid PID]
//
// Every requester loops `SELECT stock, price_cents FROM inventory WHERE sku = ?` with a
// uniformly random sku in 1..R and checks the row against the values the loader wrote
// (bench/sql/mariadb.sh: stock = sku*37 % 50, price_cents = 199 + sku*7919 % 9800).
// After every requester is set up and --warmup seconds have passed, a window of
// --seconds opens. Prints one line:
//   variant=… concurrency=… connections=… seconds=… queries=… queries_per_s=… p50_us=…
//   p99_us=… max_us=… peak_rss_kib=… cpu_s=… cpu_us_per_query=… server_cpu_us_per_query=…
//   errors=… lost=…
// queries and the latencies (from asking for a connection to holding the checked row)
// count what completed inside the window; cpu_s is the process's user+system time
// over the window (getrusage: every thread); peak_rss_kib is the process's VmHWM at the
// end; with --server-pid, server_cpu_us_per_query is that process's (mariadbd's) CPU time
// over the window per query, from /proc (-1 without). errors counts failed queries and
// wrong or missing rows over the whole run; lost counts queries that had not ended 30 s
// after the window closed (their requesters are then abandoned and the process exits
// with status 1).
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <mysql.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fiberloop/fiberloop.hpp>

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kQuery = "SELECT stock, price_cents FROM inventory WHERE sku = ?";
constexpr auto kDrainTimeout = std::chrono::seconds(30);

struct Target {
  std::string user, password, host, database;
  unsigned port = 3306;
};

struct Config {
  std::string variant;
  std::size_t concurrency = 0;
  std::string url;
  Target target;
  std::size_t connections = 16;
  std::int64_t rows = 100'000;
  double seconds = 5;
  double warmup = 1;
  std::size_t stack_kib = 256;  // per requester thread: 1 000 of them fit anywhere
  long server_pid = 0;
};

[[noreturn]] void usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s --variant fibers|run-blocking|threads|threads-own --concurrency N\n"
               "          --url mysql://USER:PASS@HOST:PORT/DB [--connections C] [--rows R]\n"
               "          [--seconds S] [--warmup S] [--stack-kib KIB] [--server-pid PID]\n",
               program);
  std::exit(2);
}

// mysql://user:password@host:port/database, as SqlDatabase takes it (no percent-escapes
// here: the bench's user and password are plain).
bool parse_url(std::string_view url, Target& target) {
  constexpr std::string_view scheme = "mysql://";
  if (url.substr(0, scheme.size()) != scheme) return false;
  url.remove_prefix(scheme.size());
  const auto at = url.rfind('@');
  const auto slash = url.find('/', at == std::string_view::npos ? 0 : at);
  if (at == std::string_view::npos || slash == std::string_view::npos) return false;
  const std::string_view credentials = url.substr(0, at);
  const std::string_view host_port = url.substr(at + 1, slash - at - 1);
  const auto colon = credentials.find(':');
  target.user = std::string(credentials.substr(0, colon));
  target.password = colon == std::string_view::npos ? "" : std::string(credentials.substr(colon + 1));
  const auto port_colon = host_port.rfind(':');
  target.host = std::string(host_port.substr(0, port_colon));
  if (port_colon != std::string_view::npos) target.port = std::stoul(std::string(host_port.substr(port_colon + 1)));
  target.database = std::string(url.substr(slash + 1));
  return !target.user.empty() && !target.host.empty() && !target.database.empty();
}

Config parse(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage(argv[0]);
    const char* value = argv[++i];
    if (arg == "--variant") {
      config.variant = value;
    } else if (arg == "--concurrency") {
      config.concurrency = std::strtoul(value, nullptr, 10);
    } else if (arg == "--url") {
      config.url = value;
      if (!parse_url(config.url, config.target)) usage(argv[0]);
    } else if (arg == "--connections") {
      config.connections = std::strtoul(value, nullptr, 10);
    } else if (arg == "--rows") {
      config.rows = std::strtoll(value, nullptr, 10);
    } else if (arg == "--seconds") {
      config.seconds = std::atof(value);
    } else if (arg == "--warmup") {
      config.warmup = std::atof(value);
    } else if (arg == "--stack-kib") {
      config.stack_kib = std::strtoul(value, nullptr, 10);
    } else if (arg == "--server-pid") {
      config.server_pid = std::strtol(value, nullptr, 10);
    } else {
      usage(argv[0]);
    }
  }
  const bool known = config.variant == "fibers" || config.variant == "run-blocking" || config.variant == "threads" ||
                     config.variant == "threads-own";
  if (!known || config.concurrency == 0 || config.url.empty() || config.connections == 0 || config.rows < 1 ||
      config.seconds <= 0 || config.warmup < 0 || config.stack_kib < 64) {
    usage(argv[0]);
  }
  if (config.variant == "threads-own") config.connections = config.concurrency;
  return config;
}

// ---- what every variant measures the same way -------------------------------------

/// A row as the loader wrote it: what every answer is checked against.
bool expected_row(std::int64_t sku, std::int64_t stock, std::int64_t price_cents) {
  return stock == sku * 37 % 50 && price_cents == 199 + sku * 7919 % 9800;
}

/// A uniformly random sku per query; each requester its own generator (splitmix64).
class SkuSource {
 public:
  SkuSource(std::uint64_t seed, std::int64_t rows) : state_(seed), rows_(static_cast<std::uint64_t>(rows)) {}
  std::int64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<std::int64_t>(1 + (z ^ (z >> 31)) % rows_);
  }

 private:
  std::uint64_t state_;
  std::uint64_t rows_;
};

/// Latencies in nanoseconds, log-linear: 32 buckets per power of two (within 3 %).
/// One for the whole process, so a thousand requesters cost no more memory than one.
class Histogram {
 public:
  void record(std::uint64_t ns) { buckets_[index(ns)].fetch_add(1, std::memory_order_relaxed); }
  /// The upper bound of the bucket holding the q-quantile, in microseconds.
  double quantile_us(double q) const {
    std::uint64_t total = 0;
    for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
    if (total == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen >= rank) return static_cast<double>(upper_bound(i)) / 1e3;
    }
    return static_cast<double>(upper_bound(buckets_.size() - 1)) / 1e3;
  }

 private:
  static constexpr int kSubBits = 5;
  static constexpr int kMaxBits = 40;  // ~18 minutes
  static std::size_t index(std::uint64_t ns) {
    ns = std::min<std::uint64_t>(ns, (std::uint64_t{1} << kMaxBits) - 1);
    if (ns < (1u << kSubBits)) return ns;
    const int msb = std::bit_width(ns) - 1;
    return static_cast<std::size_t>((msb - kSubBits + 1) << kSubBits) + ((ns >> (msb - kSubBits)) - (1u << kSubBits));
  }
  static std::uint64_t upper_bound(std::size_t i) {
    if (i < (1u << (kSubBits + 1))) return i + 1;
    const int msb = static_cast<int>(i >> kSubBits) + kSubBits - 1;
    const std::uint64_t top = (i & ((1u << kSubBits) - 1)) + (1u << kSubBits) + 1;
    return top << (msb - kSubBits);
  }
  std::array<std::atomic<std::uint64_t>, ((kMaxBits - kSubBits + 1) << kSubBits)> buckets_{};
};

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

/// utime + stime of another process (the server), or -1 when it cannot be read.
double process_cpu_seconds(long pid) {
  if (pid <= 0) return -1;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(stat, text);
  const auto paren = text.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // proc(5): state is field 3, utime 14, stime 15.
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

long peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

/// What the requesters share: counters over the whole run (to find lost queries) and
/// over the window, the latencies in it, and the flags that open and close it.
struct Tally {
  std::atomic<bool> recording{false};
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> ready{0};  // requesters set up (threads-own: connected)
  std::atomic<std::uint64_t> started{0};
  std::atomic<std::uint64_t> ended{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> window_queries{0};
  std::atomic<bool> error_reported{false};
  Histogram latency;

  /// Runs one query through `lookup` (returns whether the checked row came back;
  /// throws on a driver error) and counts it.
  template <class Lookup>
  void query(Lookup&& lookup) {
    started.fetch_add(1, std::memory_order_relaxed);
    const auto begin = Clock::now();
    bool ok = false;
    try {
      ok = lookup();
    } catch (const std::exception& error) {  // not catch-all: forced_unwind passes through
      report_first_error(error.what());
    }
    const auto took = Clock::now() - begin;
    ended.fetch_add(1, std::memory_order_relaxed);
    if (!ok) errors.fetch_add(1, std::memory_order_relaxed);
    if (!recording.load(std::memory_order_relaxed)) return;
    window_queries.fetch_add(1, std::memory_order_relaxed);
    latency.record(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count()));
  }

  void report_first_error(const char* what) {
    if (!error_reported.exchange(true)) std::fprintf(stderr, "first query error: %s\n", what);
  }
};

struct Window {
  std::uint64_t queries = 0;
  double cpu_s = 0;
  double server_cpu_s = -1;
  double wall_s = 0;
};

/// Opens the window after the warm-up, closes it after `seconds`; `sleep` is the
/// variant's way to wait (a fiber's sleep_for or the thread's).
template <class Sleep>
Window measure(const Config& config, Tally& tally, Sleep&& sleep) {
  const auto seconds = [](double s) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
  };
  // Setting up (threads-own connects N times) is not part of the warm-up.
  for (const auto deadline = Clock::now() + std::chrono::seconds(60);
       tally.ready.load() < config.concurrency && Clock::now() < deadline;) {
    sleep(std::chrono::milliseconds(10));
  }
  sleep(seconds(config.warmup));
  const double server_cpu_start = process_cpu_seconds(config.server_pid);
  const double cpu_start = cpu_seconds();
  const auto start = Clock::now();
  tally.recording = true;
  sleep(seconds(config.seconds));
  tally.recording = false;
  const auto end = Clock::now();
  const double cpu_end = cpu_seconds();
  const double server_cpu_end = process_cpu_seconds(config.server_pid);
  tally.stop = true;
  const bool server_known = server_cpu_start >= 0 && server_cpu_end >= 0;
  return {tally.window_queries.load(), cpu_end - cpu_start,
          server_known ? server_cpu_end - server_cpu_start : -1, std::chrono::duration<double>(end - start).count()};
}

/// Prints the result line; returns how many queries were lost.
std::uint64_t print_result(const Config& config, const Window& window, const Tally& tally) {
  const std::uint64_t lost = tally.started.load() - tally.ended.load();
  const double queries = static_cast<double>(window.queries);
  std::printf(
      "variant=%s concurrency=%zu connections=%zu seconds=%.3f queries=%llu queries_per_s=%.0f p50_us=%.1f "
      "p99_us=%.1f max_us=%.1f peak_rss_kib=%ld cpu_s=%.3f cpu_us_per_query=%.2f server_cpu_us_per_query=%.2f "
      "errors=%llu lost=%llu\n",
      config.variant.c_str(), config.concurrency, config.connections, window.wall_s,
      static_cast<unsigned long long>(window.queries), queries / window.wall_s, tally.latency.quantile_us(0.5),
      tally.latency.quantile_us(0.99), tally.latency.quantile_us(1.0), peak_rss_kib(), window.cpu_s,
      queries > 0 ? window.cpu_s * 1e6 / queries : 0.0,
      window.server_cpu_s >= 0 && queries > 0 ? window.server_cpu_s * 1e6 / queries : -1.0,
      static_cast<unsigned long long>(tally.errors.load()),
      static_cast<unsigned long long>(lost));
  std::fflush(stdout);
  return lost;
}

/// Some requesters never ended their query: report them lost and leave them, rather
/// than hang in a destructor waiting for them.
[[noreturn]] void abandon(const Config& config, const Window& window, const Tally& tally) {
  print_result(config, window, tally);
  std::fprintf(stderr, "%llu queries had not ended %lld s after the window closed\n",
               static_cast<unsigned long long>(tally.started.load() - tally.ended.load()),
               static_cast<long long>(kDrainTimeout.count()));
  std::_Exit(1);
}

// ---- the blocking Connector/C side: what (b), (c) and (c') share --------------------

/// One blocking Connector/C connection with the point select prepared once (the
/// blocking driver's best case: one round trip a query).
class BlockingConnection {
 public:
  explicit BlockingConnection(const Target& target) : mysql_(mysql_init(nullptr)) {
    if (mysql_ == nullptr) throw std::runtime_error("mysql_init: out of memory");
    // Connector/C's blocking defaults wait forever; a bench must not hang.
    const unsigned timeout_s = 30;
    mysql_optionsv(mysql_, MYSQL_OPT_CONNECT_TIMEOUT, &timeout_s);
    mysql_optionsv(mysql_, MYSQL_OPT_READ_TIMEOUT, &timeout_s);
    mysql_optionsv(mysql_, MYSQL_OPT_WRITE_TIMEOUT, &timeout_s);
    if (mysql_real_connect(mysql_, target.host.c_str(), target.user.c_str(), target.password.c_str(),
                           target.database.c_str(), target.port, nullptr, 0) == nullptr) {
      fail("mysql_real_connect");
    }
    stmt_ = mysql_stmt_init(mysql_);
    if (stmt_ == nullptr) fail("mysql_stmt_init");
    if (mysql_stmt_prepare(stmt_, kQuery, std::strlen(kQuery)) != 0) fail_stmt("mysql_stmt_prepare");
    param_.buffer_type = MYSQL_TYPE_LONGLONG;
    param_.buffer = &sku_;
    if (mysql_stmt_bind_param(stmt_, &param_) != 0) fail_stmt("mysql_stmt_bind_param");
    for (std::size_t i = 0; i < 2; ++i) {
      result_[i].buffer_type = MYSQL_TYPE_LONGLONG;
      result_[i].buffer = &values_[i];
      result_[i].is_null = &is_null_[i];
    }
    if (mysql_stmt_bind_result(stmt_, result_.data()) != 0) fail_stmt("mysql_stmt_bind_result");
  }
  ~BlockingConnection() {
    if (stmt_ != nullptr) mysql_stmt_close(stmt_);
    mysql_close(mysql_);
  }
  BlockingConnection(const BlockingConnection&) = delete;
  BlockingConnection& operator=(const BlockingConnection&) = delete;

  /// True when exactly the expected row came back; throws on a driver error (the
  /// connection is then broken: its owner drops it).
  bool lookup(std::int64_t sku) {
    sku_ = sku;
    if (mysql_stmt_execute(stmt_) != 0) fail_stmt("mysql_stmt_execute");
    int rows = 0;
    bool ok = true;
    for (;;) {  // unbuffered: read the result to its end before the next execute
      const int rc = mysql_stmt_fetch(stmt_);
      if (rc == MYSQL_NO_DATA) break;
      if (rc != 0) fail_stmt("mysql_stmt_fetch");
      ok = ok && !is_null_[0] && !is_null_[1] && expected_row(sku, values_[0], values_[1]);
      ++rows;
    }
    return ok && rows == 1;
  }

 private:
  [[noreturn]] void fail(const char* call) {
    throw std::runtime_error(std::string(call) + ": " + mysql_error(mysql_) + " (" + std::to_string(mysql_errno(mysql_)) +
                             ")");
  }
  [[noreturn]] void fail_stmt(const char* call) {
    throw std::runtime_error(std::string(call) + ": " + mysql_stmt_error(stmt_) + " (" +
                             std::to_string(mysql_stmt_errno(stmt_)) + ")");
  }

  MYSQL* mysql_;
  MYSQL_STMT* stmt_ = nullptr;
  MYSQL_BIND param_{};
  std::array<MYSQL_BIND, 2> result_{};
  std::int64_t sku_ = 0;
  std::array<std::int64_t, 2> values_{};
  std::array<my_bool, 2> is_null_{};
};

/// Seed 003's MysqlConnPool, written correctly: up to `max` connections made lazily,
/// shared by threads under a mutex; a thread finding none free waits on a condition
/// variable. A broken connection is dropped and its slot freed.
class BlockingPool {
 public:
  BlockingPool(const Target& target, std::size_t max) : target_(target), max_(max) {}

  std::unique_ptr<BlockingConnection> acquire() {
    std::unique_lock lock(mutex_);
    free_.wait(lock, [&] { return !idle_.empty() || open_ < max_; });
    if (!idle_.empty()) {
      auto connection = std::move(idle_.back());
      idle_.pop_back();
      return connection;
    }
    ++open_;
    lock.unlock();  // connect without holding the others up
    try {
      return std::make_unique<BlockingConnection>(target_);
    } catch (const std::exception&) {
      release(nullptr);
      throw;
    }
  }

  /// Gives `connection` back; null for one that broke.
  void release(std::unique_ptr<BlockingConnection> connection) {
    {
      std::lock_guard lock(mutex_);
      if (connection) {
        idle_.push_back(std::move(connection));
      } else {
        --open_;
      }
    }
    free_.notify_one();
  }

 private:
  const Target target_;
  const std::size_t max_;
  std::mutex mutex_;
  std::condition_variable free_;
  std::vector<std::unique_ptr<BlockingConnection>> idle_;
  std::size_t open_ = 0;
};

/// A connection borrowed from the pool for one query: given back when the query
/// returned, dropped when it threw.
bool pooled_lookup(BlockingPool& pool, std::int64_t sku) {
  auto connection = pool.acquire();
  const bool ok = connection->lookup(sku);  // a throw drops the connection with `connection`
  pool.release(std::move(connection));
  return ok;
}

// ---- (a) and (b): N fibers on one loop -------------------------------------------

/// Spawns N requester fibers doing `one_query(sku)` until the window closes, measures,
/// and waits (bounded) for them.
template <class OneQuery>
Window run_fibers(const Config& config, fiberloop::IOLoop& loop, Tally& tally, OneQuery&& one_query) {
  std::vector<fiberloop::Future<void>> fibers;
  fibers.reserve(config.concurrency);
  for (std::size_t f = 0; f < config.concurrency; ++f) {
    fibers.push_back(loop.spawn([&, f] {
      SkuSource skus(f + 1, config.rows);
      tally.ready.fetch_add(1);
      while (!tally.stop.load(std::memory_order_relaxed)) {
        const std::int64_t sku = skus.next();
        tally.query([&] { return one_query(sku); });
      }
    }));
  }
  const Window window = measure(config, tally, [](auto d) { fiberloop::sleep_for(d); });
  const auto deadline = Clock::now() + kDrainTimeout;
  for (auto& fiber : fibers) {
    try {
      fiberloop::wait_for_future(std::move(fiber), std::max(deadline - Clock::now(), Clock::duration::zero()));
    } catch (const fiberloop::TimeoutError&) {
      abandon(config, window, tally);
    }
  }
  return window;
}

// ---- (c) and (c'): a thread per requester -----------------------------------------

Window run_threads(const Config& config, Tally& tally) {
  const bool own = config.variant == "threads-own";
  BlockingPool pool(config.target, config.connections);
  std::atomic<std::size_t> running{config.concurrency};
  std::vector<std::function<void()>> requesters;
  requesters.reserve(config.concurrency);
  for (std::size_t t = 0; t < config.concurrency; ++t) {
    requesters.emplace_back([&, t] {
      SkuSource skus(t + 1, config.rows);
      std::unique_ptr<BlockingConnection> connection;
      if (own) {
        try {
          connection = std::make_unique<BlockingConnection>(config.target);
        } catch (const std::exception& error) {
          tally.report_first_error(error.what());
        }
      }
      tally.ready.fetch_add(1);
      while (!tally.stop.load(std::memory_order_relaxed)) {
        const std::int64_t sku = skus.next();
        tally.query([&] {
          if (!own) return pooled_lookup(pool, sku);
          if (!connection) connection = std::make_unique<BlockingConnection>(config.target);
          try {
            return connection->lookup(sku);
          } catch (const std::exception&) {
            connection.reset();  // broken: reconnect for the next query
            throw;
          }
        });
      }
      running.fetch_sub(1);
    });
  }
  // A modest stack, set through pthread (std::thread cannot): 1 000 threads at the
  // default 8 MiB would reserve 8 GiB.
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, config.stack_kib * 1024);
  std::vector<pthread_t> threads(config.concurrency);
  for (std::size_t t = 0; t < config.concurrency; ++t) {
    const auto body = [](void* requester) -> void* {
      (*static_cast<std::function<void()>*>(requester))();
      return nullptr;
    };
    if (const int error = pthread_create(&threads[t], &attr, body, &requesters[t]); error != 0) {
      std::fprintf(stderr, "pthread_create (thread %zu of %zu): %s; check ulimit -u\n", t + 1, config.concurrency,
                   std::strerror(error));
      std::exit(1);
    }
  }
  pthread_attr_destroy(&attr);
  const Window window = measure(config, tally, [](auto d) { std::this_thread::sleep_for(d); });
  const auto deadline = Clock::now() + kDrainTimeout;
  while (running.load() > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (running.load() > 0) abandon(config, window, tally);
  for (const pthread_t thread : threads) pthread_join(thread, nullptr);
  return window;
}

Window run(const Config& config, Tally& tally) {
  if (config.variant == "threads" || config.variant == "threads-own") return run_threads(config, tally);
  fiberloop::IOLoop::Options options;
  options.blocking_threads = config.connections;  // (b): a thread per connection, as seed 003
  fiberloop::IOLoop loop(options);
  return loop.run_sync([&] {
    if (config.variant == "fibers") {
      fiberloop::SqlPoolOptions pool;
      pool.max_connections = config.connections;
      fiberloop::SqlDatabase db(config.url, pool);
      return run_fibers(config, loop, tally, [&](std::int64_t sku) {
        const fiberloop::SqlResult result = db.query(kQuery, {sku});
        if (result.rows.size() != 1 || result.rows[0].size() != 2) return false;
        const auto* stock = std::get_if<std::int64_t>(&result.rows[0][0]);
        const auto* price = std::get_if<std::int64_t>(&result.rows[0][1]);
        return stock != nullptr && price != nullptr && expected_row(sku, *stock, *price);
      });
    }
    BlockingPool pool(config.target, config.connections);
    return run_fibers(config, loop, tally, [&](std::int64_t sku) {
      return fiberloop::run_blocking([&] { return pooled_lookup(pool, sku); });
    });
  });
}

}  // namespace

int main(int argc, char** argv) {
  const Config config = parse(argc, argv);
  if (mysql_library_init(0, nullptr, nullptr) != 0) {
    std::fprintf(stderr, "mysql_library_init failed\n");
    return 1;
  }
  static Tally tally;
  Window window;
  try {
    window = run(config, tally);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s failed: %s\n", config.variant.c_str(), error.what());
    return 1;
  }
  if (print_result(config, window, tally) > 0) std::_Exit(1);  // requesters still hang in a query
  mysql_library_end();
  return window.queries > 0 ? 0 : 1;
}
