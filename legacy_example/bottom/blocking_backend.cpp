// The blocking bottom, as legacy servers have it: a thread takes a kept-alive
// connection from a shared pool (at most max_connections, like a classic database
// pool) and blocks on it (Boost.Beast over
// a plain socket). Every wait has a timeout: for a free connection, the connect
// (non-blocking, with poll), then each send and receive (SO_SNDTIMEO/SO_RCVTIMEO).
//
// Why a pool and not a connection per thread: at 10 000 connections a thread each
// would need 10 000 backend sockets on top of the 10 000 clients', past the
// descriptor limit (20 000 here); the fiberloop bottom has the same cap.
//
// With --inventory, the answers come from a database instead (sql_inventory_blocking.cpp).
//
// With --cache, cache-aside in front of it through libmemcached, as a legacy server
// would have it: one memcached_st configured once (weighted ketama, timeouts, dead
// servers), cloned into a libmemcachedutil pool, since a memcached_st is not
// thread-safe; a thread borrows one for each get or set.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <libmemcached/memcached.h>
#include <libmemcached/util.h>

#include "../middle/backend.hpp"
#include "../support/fd_stream.hpp"
#include "backend_client.hpp"
#include "blocking_pool.hpp"
#include "cache_entry.hpp"
#include "inventory_db.hpp"

namespace legacy {
namespace http = boost::beast::http;
namespace {

BackendConfig g_config;
sockaddr_storage g_address{};
socklen_t g_address_len = 0;
std::string g_host_header;

struct Connection {
  int fd = -1;
  boost::beast::flat_buffer buffer;

  bool is_open() const noexcept { return fd >= 0; }
  void close() noexcept {
    if (fd >= 0) ::close(fd);
    fd = -1;
    buffer.clear();
  }
  ~Connection() { close(); }
};

BlockingPool<Connection> g_pool("backend");  // first come, first served (blocking_pool.hpp)

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

int connect_with_timeout() {
  const int fd = ::socket(g_address.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw BackendError(errno_text("backend socket"));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&g_address), g_address_len) != 0 && errno != EINPROGRESS) {
    const std::string text = errno_text("connect to backend");
    ::close(fd);
    throw BackendError(text);
  }
  pollfd p{fd, POLLOUT, 0};
  int ready;
  do ready = ::poll(&p, 1, static_cast<int>(g_config.timeout.count()));
  while (ready < 0 && errno == EINTR);
  int error = 0;
  socklen_t len = sizeof error;
  if (ready == 1) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
  if (ready != 1 || error != 0) {
    ::close(fd);
    throw BackendError(ready == 0 ? std::string("connect to backend: timed out")
                                  : std::string("connect to backend: ") + std::strerror(error ? error : errno));
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  set_socket_timeouts(fd, g_config.timeout, g_config.timeout);
  return fd;
}

BackendReply ask_backend(const std::string& target) {
  const PoolLease<Connection> lease(g_pool, std::chrono::steady_clock::now() + g_config.timeout);
  Connection& c = *lease;
  for (int attempt = 0;; ++attempt) {
    const bool reused = c.fd >= 0;
    if (!reused) c.fd = connect_with_timeout();
    FdStream stream(c.fd);

    http::request<http::empty_body> request{http::verb::get, target, 11};
    request.set(http::field::host, g_host_header);
    request.set(http::field::user_agent, "legacy-example");
    boost::beast::error_code ec;
    http::write(stream, request, ec);
    http::response_parser<http::string_body> parser;
    parser.body_limit(1024 * 1024);
    if (!ec) http::read(stream, c.buffer, parser, ec);
    if (ec) {
      c.close();
      // The backend closed our idle kept-alive connection: one fresh try.
      const bool stale = reused && attempt == 0 && ec != boost::asio::error::timed_out;
      if (stale) continue;
      throw BackendError("backend " + g_host_header + ": " + ec.message());
    }
    http::response<http::string_body> response = parser.release();
    if (!response.keep_alive()) c.close();
    return {static_cast<int>(response.result_int()), std::move(response.body())};
  }
}

// The memcached servers through libmemcached. Thread: any (each call borrows its own
// memcached_st from the pool).
class Cache {
 public:
  explicit Cache(const BackendConfig& config)
      : ttl_(config.cache_ttl), fetch_wait_(timespec_of(config.cache_timeout)), master_(memcached_create(nullptr)) {
    if (master_ == nullptr) throw BackendError("memcached_create: out of memory");
    const auto ms = static_cast<std::uint64_t>(config.cache_timeout.count());
    // Placement as MemcacheClient's (weighted ketama, weights 1); failures as its
    // defaults: 2 in a row mark a server dead for 2 s, its keys then miss at once.
    // Not REMOVE_FAILED_SERVERS: ejecting a server would move keys the fiber program
    // still looks for on it.
    const std::pair<memcached_behavior_t, std::uint64_t> behaviors[] = {
        {MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1}, {MEMCACHED_BEHAVIOR_NO_BLOCK, 1},
        {MEMCACHED_BEHAVIOR_TCP_NODELAY, 1},     {MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms},
        {MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms},   {MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 2},
        {MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 2}};
    for (const auto& [behavior, value] : behaviors)
      if (const memcached_return_t rc = memcached_behavior_set(master_.get(), behavior, value); rc != MEMCACHED_SUCCESS)
        fail("memcached_behavior_set", rc);
    for (const HostPort& server : config.cache)
      if (const memcached_return_t rc =
              memcached_server_add_with_weight(master_.get(), server.host.c_str(), server.port, 1);
          rc != MEMCACHED_SUCCESS)
        fail("cache server " + server.host + ":" + std::to_string(server.port), rc);
    // As many handles as backend connections: each thread that may wait on the backend
    // may use the cache at the same time.
    pool_.reset(memcached_pool_create(master_.get(), 1, static_cast<std::uint32_t>(config.max_connections)));
    if (pool_ == nullptr) fail("memcached_pool_create", MEMCACHED_MEMORY_ALLOCATION_FAILURE);
  }

  std::optional<BackendReply> get(const std::string& key) {
    const Handle memc(*this);
    if (!memc) return std::nullopt;
    std::size_t length = 0;
    std::uint32_t flags = 0;
    memcached_return_t rc;
    char* value = memcached_get(memc.get(), key.data(), key.size(), &length, &flags, &rc);
    const std::unique_ptr<char, decltype(&std::free)> owned(value, &std::free);
    if (rc == MEMCACHED_NOTFOUND) return std::nullopt;
    if (rc != MEMCACHED_SUCCESS) {
      note_cache_failure("get " + key + ": " + memcached_last_error_message(memc.get()));
      return std::nullopt;
    }
    return cached_reply(std::string(value != nullptr ? value : "", length), flags);
  }

  void set(const std::string& key, const BackendReply& reply) {
    const Handle memc(*this);
    if (!memc) return;
    const memcached_return_t rc = memcached_set(memc.get(), key.data(), key.size(), reply.body.data(),
                                                reply.body.size(), static_cast<time_t>(ttl_.count()),
                                                cache_flags(reply));
    if (rc != MEMCACHED_SUCCESS) note_cache_failure("set " + key + ": " + memcached_last_error_message(memc.get()));
  }

 private:
  // A memcached_st borrowed from the pool for one call; null (and noted) when none is
  // free within cache_timeout.
  class Handle {
   public:
    explicit Handle(Cache& cache) : cache_(cache) {
      timespec wait = cache_.fetch_wait_;
      memcached_return_t rc;
      memc_ = memcached_pool_fetch(cache_.pool_.get(), &wait, &rc);
      if (memc_ == nullptr) {
        note_cache_failure(std::string("no cache connection free: ") + memcached_strerror(nullptr, rc));
        return;
      }
      // memcached_clone(), which the pool makes its handles with, drops
      // KETAMA_WEIGHTED (libmemcached 1.1.4): a clone places keys by unweighted ketama,
      // ~45 % of them on another server than the master and MemcacheClient.
      if (memcached_behavior_get(memc_, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED) == 0)
        memcached_behavior_set(memc_, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
    }
    ~Handle() {
      if (memc_ != nullptr) memcached_pool_release(cache_.pool_.get(), memc_);
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    explicit operator bool() const noexcept { return memc_ != nullptr; }
    memcached_st* get() const noexcept { return memc_; }

   private:
    Cache& cache_;
    memcached_st* memc_ = nullptr;
  };

  static timespec timespec_of(std::chrono::milliseconds d) {
    return {static_cast<time_t>(d.count() / 1000), static_cast<long>(d.count() % 1000 * 1'000'000)};
  }
  [[noreturn]] void fail(const std::string& what, memcached_return_t rc) {
    throw BackendError(what + ": " + memcached_strerror(master_.get(), rc));
  }
  struct Free {
    void operator()(memcached_st* memc) const noexcept { memcached_free(memc); }
    // Frees the clones and gives the master back (freed by its own unique_ptr after).
    void operator()(memcached_pool_st* pool) const noexcept { memcached_pool_destroy(pool); }
  };

  std::chrono::seconds ttl_;
  timespec fetch_wait_;
  std::unique_ptr<memcached_st, Free> master_;
  std::unique_ptr<memcached_pool_st, Free> pool_;  // after master_: destroyed before it
};
std::unique_ptr<Cache> g_cache;  // set before the serving threads start, reset after they end

}  // namespace

void backend_start(const BackendConfig& config) {
  g_config = config;
  if (!config.inventory_url.empty()) {
    inventory_db_start(config);
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(config.port);
    if (const int rc = ::getaddrinfo(config.host.c_str(), port.c_str(), &hints, &found); rc != 0)
      throw BackendError("cannot resolve backend host " + config.host + ": " + ::gai_strerror(rc));
    std::memcpy(&g_address, found->ai_addr, found->ai_addrlen);
    g_address_len = found->ai_addrlen;
    ::freeaddrinfo(found);
    g_host_header = config.host + ":" + port;
    g_pool.configure(config.max_connections, config.timeout);
  }
  if (!config.cache.empty()) g_cache = std::make_unique<Cache>(config);
}

void backend_stop() noexcept {
  g_cache.reset();
  inventory_db_stop();
}

BackendReply do_stuff(const std::string& target) {
  return cache_aside(g_cache.get(), target, g_config.inventory_url.empty() ? ask_backend : ask_inventory_db);
}

}  // namespace legacy
