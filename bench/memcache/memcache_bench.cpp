// Gets per second and client CPU per get against one memcached: MemcacheClient from
// one IOLoop with N fibers, or libmemcached used thread-per-request with N threads
// (each its own memcached_st, blocking gets). Run with bench/memcache/run.sh, which
// pins memcached and this program to different CPUs.
//
//   memcache_bench --client fiberloop|libmemcached --concurrency N --server HOST:PORT
//                  [--seconds S] [--warmup S] [--keys K] [--value-bytes B]
//                  [--connections C] [--stack-kib KIB]
//
// The keys are preloaded (with libmemcached, for both clients, outside the window).
// Each requester then loops get over them; after --warmup seconds (connections made,
// threads started) the window of --seconds opens. Prints one line:
//   client=… concurrency=… seconds=… gets=… gets_per_s=… cpu_s=… cpu_us_per_get=… errors=…
// cpu_s is the process's user+system time over the window (getrusage: every thread).
// errors counts failed gets, misses and values of the wrong length.
#include <pthread.h>
#include <sys/resource.h>

#include <libmemcached/memcached.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fiberloop/fiberloop.hpp>
#include <fiberloop/memcache.hpp>

namespace {

using Clock = std::chrono::steady_clock;

struct Config {
  std::string client;
  std::size_t concurrency = 0;
  std::string host;
  std::uint16_t port = 0;
  double seconds = 5;
  double warmup = 1;
  std::size_t keys = 1000;
  std::size_t value_bytes = 100;
  std::size_t connections = fiberloop::MemcacheOptions{}.connections_per_server;
  std::size_t stack_kib = 256;  // per libmemcached thread: 1 000 of them fit anywhere
};

[[noreturn]] void usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s --client fiberloop|libmemcached --concurrency N --server HOST:PORT\n"
               "          [--seconds S] [--warmup S] [--keys K] [--value-bytes B] [--connections C]"
               " [--stack-kib KIB]\n",
               program);
  std::exit(2);
}

Config parse(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage(argv[0]);
    const char* value = argv[++i];
    if (arg == "--client") {
      config.client = value;
    } else if (arg == "--concurrency") {
      config.concurrency = std::strtoul(value, nullptr, 10);
    } else if (arg == "--server") {
      const std::string_view server = value;
      const auto colon = server.rfind(':');
      if (colon == std::string_view::npos) usage(argv[0]);
      config.host = std::string(server.substr(0, colon));
      config.port = static_cast<std::uint16_t>(std::atoi(value + colon + 1));
    } else if (arg == "--seconds") {
      config.seconds = std::atof(value);
    } else if (arg == "--warmup") {
      config.warmup = std::atof(value);
    } else if (arg == "--keys") {
      config.keys = std::strtoul(value, nullptr, 10);
    } else if (arg == "--value-bytes") {
      config.value_bytes = std::strtoul(value, nullptr, 10);
    } else if (arg == "--connections") {
      config.connections = std::strtoul(value, nullptr, 10);
    } else if (arg == "--stack-kib") {
      config.stack_kib = std::strtoul(value, nullptr, 10);
    } else {
      usage(argv[0]);
    }
  }
  if ((config.client != "fiberloop" && config.client != "libmemcached") || config.concurrency == 0 ||
      config.port == 0 || config.keys == 0 || config.seconds <= 0 || config.warmup < 0 || config.connections == 0) {
    usage(argv[0]);
  }
  return config;
}

std::vector<std::string> make_keys(std::size_t count) {
  std::vector<std::string> keys;
  keys.reserve(count);
  for (std::size_t i = 0; i < count; ++i) keys.push_back("bench:" + std::to_string(i));
  return keys;
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// A libmemcached handle on the one server, with libmemcached's defaults (blocking,
// text protocol): what a threaded legacy server holds per thread.
struct Memcached {
  memcached_st* handle;
  explicit Memcached(const Config& config) : handle(memcached_create(nullptr)) {
    if (handle == nullptr || memcached_server_add(handle, config.host.c_str(), config.port) != MEMCACHED_SUCCESS) {
      std::fprintf(stderr, "libmemcached: cannot add server %s:%u\n", config.host.c_str(), config.port);
      std::exit(1);
    }
  }
  ~Memcached() { memcached_free(handle); }
  Memcached(const Memcached&) = delete;
  Memcached& operator=(const Memcached&) = delete;
};

void preload(const Config& config, const std::vector<std::string>& keys) {
  Memcached memcached(config);
  const std::string value(config.value_bytes, 'v');
  for (const auto& key : keys) {
    const memcached_return_t rc =
        memcached_set(memcached.handle, key.data(), key.size(), value.data(), value.size(), 0, 0);
    if (rc != MEMCACHED_SUCCESS) {
      std::fprintf(stderr, "preloading %s failed: %s\n", key.c_str(), memcached_strerror(memcached.handle, rc));
      std::exit(1);
    }
  }
}

// What the window saw: gets and errors counted at its start and at its end.
struct Window {
  std::uint64_t gets = 0;
  std::uint64_t errors = 0;
  double cpu_s = 0;
  double wall_s = 0;
};

// Counts a requester's gets; padded so threads don't share a cache line.
struct alignas(64) Counter {
  std::atomic<std::uint64_t> gets{0};
  std::atomic<std::uint64_t> errors{0};
};

struct Snapshot {
  std::uint64_t gets = 0;
  std::uint64_t errors = 0;
  double cpu_s = 0;
  Clock::time_point at;
};

Snapshot snapshot(const std::vector<Counter>& counters) {
  Snapshot taken;
  for (const auto& counter : counters) {
    taken.gets += counter.gets.load(std::memory_order_relaxed);
    taken.errors += counter.errors.load(std::memory_order_relaxed);
  }
  taken.cpu_s = cpu_seconds();
  taken.at = Clock::now();
  return taken;
}

Window between(const Snapshot& start, const Snapshot& end) {
  return {end.gets - start.gets, end.errors - start.errors, end.cpu_s - start.cpu_s,
          std::chrono::duration<double>(end.at - start.at).count()};
}

std::chrono::nanoseconds nanoseconds(double seconds) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds));
}

// ---- MemcacheClient: N fibers on one loop, one client ------------------------------
Window run_fiberloop(const Config& config, const std::vector<std::string>& keys) {
  fiberloop::IOLoop loop;
  return loop.run_sync([&] {
    fiberloop::MemcacheOptions options;
    options.connections_per_server = config.connections;
    // libmemcached's own poll timeout is 5 s: the same patience on both sides, so a
    // loaded machine shows as slower, not as errors on one side only.
    options.request_timeout = std::chrono::seconds(5);
    fiberloop::MemcacheClient client({{config.host, config.port}}, options);
    std::vector<Counter> counters(config.concurrency);
    std::atomic<bool> stop{false};
    std::vector<fiberloop::Future<void>> fibers;
    fibers.reserve(config.concurrency);
    for (std::size_t f = 0; f < config.concurrency; ++f) {
      fibers.push_back(loop.spawn([&, f] {
        Counter& counter = counters[f];
        for (std::size_t i = f; !stop.load(std::memory_order_relaxed); i += 1) {
          const std::string& key = keys[i % keys.size()];
          try {
            const auto item = client.get(key);
            if (!item || item->value.size() != config.value_bytes) {
              counter.errors.fetch_add(1, std::memory_order_relaxed);
            }
          } catch (const std::exception&) {  // not catch-all: forced_unwind passes through
            counter.errors.fetch_add(1, std::memory_order_relaxed);
          }
          counter.gets.fetch_add(1, std::memory_order_relaxed);
        }
      }));
    }
    fiberloop::sleep_for(nanoseconds(config.warmup));
    const Snapshot start = snapshot(counters);
    fiberloop::sleep_for(nanoseconds(config.seconds));
    const Snapshot end = snapshot(counters);
    stop = true;
    for (auto& fiber : fibers) fiberloop::wait_for_future(std::move(fiber));
    return between(start, end);
  });
}

// ---- libmemcached: a thread per requester, each with its own handle ----------------
struct ThreadJob {
  const Config* config;
  const std::vector<std::string>* keys;
  Counter* counter;
  std::size_t first;
  const std::atomic<bool>* stop;
};

void* libmemcached_requester(void* arg) {
  const ThreadJob& job = *static_cast<ThreadJob*>(arg);
  Memcached memcached(*job.config);
  const auto& keys = *job.keys;
  for (std::size_t i = job.first; !job.stop->load(std::memory_order_relaxed); i += 1) {
    const std::string& key = keys[i % keys.size()];
    std::size_t length = 0;
    std::uint32_t flags = 0;
    memcached_return_t rc;
    char* value = memcached_get(memcached.handle, key.data(), key.size(), &length, &flags, &rc);
    if (value == nullptr || rc != MEMCACHED_SUCCESS || length != job.config->value_bytes) {
      job.counter->errors.fetch_add(1, std::memory_order_relaxed);
    }
    std::free(value);
    job.counter->gets.fetch_add(1, std::memory_order_relaxed);
  }
  return nullptr;
}

Window run_libmemcached(const Config& config, const std::vector<std::string>& keys) {
  std::vector<Counter> counters(config.concurrency);
  std::atomic<bool> stop{false};
  std::vector<ThreadJob> jobs(config.concurrency);
  std::vector<pthread_t> threads(config.concurrency);
  // A modest stack: 1 000 threads at the default 8 MiB would reserve 8 GiB.
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, config.stack_kib * 1024);
  for (std::size_t t = 0; t < config.concurrency; ++t) {
    jobs[t] = {&config, &keys, &counters[t], t, &stop};
    if (const int error = pthread_create(&threads[t], &attr, libmemcached_requester, &jobs[t]); error != 0) {
      std::fprintf(stderr, "pthread_create (thread %zu of %zu): %s; check ulimit -u and -n\n", t + 1,
                   config.concurrency, std::strerror(error));
      std::exit(1);
    }
  }
  pthread_attr_destroy(&attr);
  std::this_thread::sleep_for(nanoseconds(config.warmup));
  const Snapshot start = snapshot(counters);
  std::this_thread::sleep_for(nanoseconds(config.seconds));
  const Snapshot end = snapshot(counters);
  stop = true;
  for (auto thread : threads) pthread_join(thread, nullptr);
  return between(start, end);
}

}  // namespace

int main(int argc, char** argv) {
  const Config config = parse(argc, argv);
  const std::vector<std::string> keys = make_keys(config.keys);
  preload(config, keys);
  Window window;
  try {
    window = config.client == "fiberloop" ? run_fiberloop(config, keys) : run_libmemcached(config, keys);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s client failed: %s\n", config.client.c_str(), error.what());
    return 1;
  }
  const double gets = static_cast<double>(window.gets);
  std::printf(
      "client=%s concurrency=%zu seconds=%.3f gets=%llu gets_per_s=%.0f cpu_s=%.3f cpu_us_per_get=%.3f "
      "errors=%llu\n",
      config.client.c_str(), config.concurrency, window.wall_s, static_cast<unsigned long long>(window.gets),
      gets / window.wall_s, window.cpu_s, gets > 0 ? window.cpu_s * 1e6 / gets : 0.0,
      static_cast<unsigned long long>(window.errors));
  return window.gets > 0 ? 0 : 1;
}
