// The fiberloop bottom: do_stuff() looks as blocking as before, but waits with
// wait_for_future() on an HttpClient fetch, so only the calling fiber is suspended
// and the loop serves the other requests meanwhile. One HttpClient (a pool of
// kept-alive connections) for the loop; at most max_connections fetches in flight.
//
// With --cache, cache-aside in front of it through one fiberloop::MemcacheClient on
// the loop: its few pipelined connections carry every fiber's gets and sets.
#include <memory>
#include <optional>

#include <fiberloop/fiberloop.hpp>
#include <fiberloop/memcache.hpp>

#include "../middle/backend.hpp"
#include "backend_client.hpp"
#include "cache_entry.hpp"

namespace legacy {
namespace {

struct State {
  explicit State(const BackendConfig& c)
      : config(c), base_url("http://" + c.host + ":" + std::to_string(c.port)), client(client_options(c)) {}

  static fiberloop::HttpClientOptions client_options(const BackendConfig& c) {
    fiberloop::HttpClientOptions options;
    options.max_idle_per_host = c.max_connections;  // every connection in use may go back to the pool
    return options;
  }

  BackendConfig config;
  std::string base_url;
  fiberloop::HttpClient client;
  // Turns to fetch cap the sockets (the process's descriptors are shared with the
  // clients' connections). A finished fetch hands its turn to the longest waiter
  // (FIFO): a newcomer cannot barge in, so no request starves behind later ones.
  fiberloop::Semaphore turns{config.max_connections};
};
std::unique_ptr<State> g_state;  // the loop thread's (every call below runs on it)

// The memcached servers through MemcacheClient. Fiber: the loop's fibers.
class Cache {
 public:
  explicit Cache(const BackendConfig& config) : ttl_(config.cache_ttl), client_(servers(config), options(config)) {}

  std::optional<BackendReply> get(const std::string& key) {
    try {
      std::optional<fiberloop::MemcacheItem> item = client_.get(key);
      if (!item) return std::nullopt;
      return cached_reply(std::move(item->value), item->flags);
    } catch (const fiberloop::Error& e) {  // TimeoutError, MemcacheServerDown, MemcacheError, StreamClosed
      note_cache_failure("get " + key + ": " + e.what());
    } catch (const std::system_error& e) {  // refused, reset
      note_cache_failure("get " + key + ": " + e.what());
    }
    return std::nullopt;
  }

  void set(const std::string& key, const BackendReply& reply) {
    try {
      client_.set(key, reply.body, cache_flags(reply), ttl_);
    } catch (const fiberloop::Error& e) {
      note_cache_failure("set " + key + ": " + e.what());
    } catch (const std::system_error& e) {
      note_cache_failure("set " + key + ": " + e.what());
    }
  }

 private:
  static std::vector<fiberloop::MemcacheServer> servers(const BackendConfig& config) {
    std::vector<fiberloop::MemcacheServer> out;
    for (const HostPort& server : config.cache) out.push_back({server.host, server.port, 1});
    return out;
  }
  static fiberloop::MemcacheOptions options(const BackendConfig& config) {
    // Dead servers as the blocking bottom's libmemcached: 2 failures, 2 s, no failover.
    fiberloop::MemcacheOptions options;
    options.connect_timeout = config.cache_timeout;
    options.request_timeout = config.cache_timeout;
    return options;
  }

  std::chrono::seconds ttl_;
  fiberloop::MemcacheClient client_;
};
std::unique_ptr<Cache> g_cache;  // the loop thread's, like g_state

/// A turn to fetch, waited for until `deadline`, given back however the fetch ends.
class Turn {
 public:
  Turn(fiberloop::Semaphore& turns, std::chrono::steady_clock::time_point deadline) : turns_(turns) {
    turns_.acquire(deadline - std::chrono::steady_clock::now());  // TimeoutError, LoopClosed
  }
  ~Turn() { turns_.release(); }
  Turn(const Turn&) = delete;
  Turn& operator=(const Turn&) = delete;

 private:
  fiberloop::Semaphore& turns_;
};

}  // namespace

void backend_start(const BackendConfig& config) {
  g_state = std::make_unique<State>(config);
  if (!config.cache.empty()) g_cache = std::make_unique<Cache>(config);
}

void backend_stop() noexcept {
  g_cache.reset();
  g_state.reset();
}

namespace {

BackendReply ask_backend(const std::string& target) {
  State& s = *g_state;
  const auto deadline = std::chrono::steady_clock::now() + s.config.timeout;
  try {
    const Turn turn(s.turns, deadline);
    fiberloop::FetchOptions options;
    options.connect_timeout = s.config.timeout;
    options.request_timeout = deadline - std::chrono::steady_clock::now();
    // The fetch's request_timeout fires first; this limit only guards against a
    // fetch that would never complete.
    fiberloop::HttpResponse response = fiberloop::wait_for_future(s.client.fetch(s.base_url + target, options),
                                                                  s.config.timeout + std::chrono::seconds(1));
    return {response.status, std::move(response.body)};
  } catch (const fiberloop::Error& e) {  // TimeoutError, StreamClosed, a malformed reply
    throw BackendError("backend " + s.base_url + ": " + e.what());
  } catch (const std::system_error& e) {  // refused, reset
    throw BackendError("backend " + s.base_url + ": " + e.what());
  }
}

}  // namespace

BackendReply do_stuff(const std::string& target) { return cache_aside(g_cache.get(), target, ask_backend); }

}  // namespace legacy
