#pragma once
/// @file
/// MemcacheClient: memcached's text protocol (what memcached, mcrouter and twemproxy
/// speak) over a few pipelined connections per server, keys placed on servers exactly
/// as libmemcached places them (weighted ketama), so a threaded server on libmemcached
/// and its fiberloop port can share one cluster.
///
/// Every command has a future face (`get_async`) and a blocking-looking face (`get`),
/// which is a wait on it: inside a fiber it suspends only that fiber; on a thread with
/// no running loop it blocks that thread; on a loop's thread outside a fiber it throws
/// BlockingCallError.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <fiberloop/errors.hpp>
#include <fiberloop/future.hpp>
#include <fiberloop/io_loop.hpp>

namespace fiberloop {

struct MemcacheServer {
  std::string host;
  std::uint16_t port = 11211;
  std::uint32_t weight = 1;  ///< its share of the keys, relative to the others' weights
};

/// A timeout of nanoseconds::max() means no limit.
struct MemcacheOptions {
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(1);
  /// From the call to its reply (connecting included): TimeoutError.
  std::chrono::nanoseconds request_timeout = std::chrono::milliseconds(500);
  std::size_t failure_limit = 2;  ///< consecutive failures that mark a server dead
  std::chrono::nanoseconds retry_timeout = std::chrono::seconds(2);  ///< dead this long, then one request probes it
  bool failover = false;  ///< a dead server's keys go to the next live server on the ring
  std::size_t connections_per_server = 2;
  /// A longer value in a reply breaks the connection (MemcacheProtocolError): raise it
  /// for a memcached started with a larger -I (item size).
  std::size_t max_value_bytes = 1024 * 1024;
};

struct MemcacheItem {
  std::string value;
  std::uint32_t flags = 0;
  std::uint64_t cas = 0;  ///< for cas(): the item's version when it was read
};

/// A failure that concerns one server: server() is its "host:port".
class MemcacheError : public Error {
 public:
  MemcacheError(const std::string& server, const std::string& what);
  const std::string& server() const noexcept;

 private:
  std::shared_ptr<const std::string> server_;  // shared: exceptions must copy without throwing
};

/// The key's server is marked dead (failure_limit consecutive failures): the call
/// failed at once, sending nothing. It is tried again after retry_timeout.
class MemcacheServerDown : public MemcacheError {
 public:
  using MemcacheError::MemcacheError;
};

/// A reply that breaks the protocol: its connection was closed, and only the requests
/// on it failed.
class MemcacheProtocolError : public MemcacheError {
 public:
  using MemcacheError::MemcacheError;
};

/// The server answered SERVER_ERROR or CLIENT_ERROR (say, a value too large); the
/// connection stays usable.
class MemcacheServerError : public MemcacheError {
 public:
  using MemcacheError::MemcacheError;
};

class MemcacheClient {
 public:
  using Options = MemcacheOptions;
  using Seconds = std::chrono::seconds;

  /// Connects to nothing: connections are made on first use. Thread: any; the
  /// client's connections live on `loop`. std::invalid_argument for no servers, a
  /// server without host or port, or a weight of 0.
  explicit MemcacheClient(std::vector<MemcacheServer> servers, Options options = {},
                          IOLoop& loop = IOLoop::current());
  /// Closes the connections; requests still in flight fail with StreamClosed. Thread:
  /// the loop's, or any once the loop is gone.
  ~MemcacheClient();
  MemcacheClient(const MemcacheClient&) = delete;
  MemcacheClient& operator=(const MemcacheClient&) = delete;

  // The blocking-looking face. Keys: 1 to 250 bytes, no space or control character,
  // else std::invalid_argument before anything is sent. Errors: see the file comment
  // and the exception classes above; TimeoutError past connect_timeout or
  // request_timeout; std::system_error when connecting is refused.
  std::optional<MemcacheItem> get(std::string_view key);  ///< nullopt: a miss
  /// One request per server, sent concurrently. Hits only.
  std::unordered_map<std::string, MemcacheItem> get_multi(const std::vector<std::string>& keys);
  bool set(std::string_view key, std::string_view value, std::uint32_t flags = 0, Seconds ttl = Seconds(0));
  bool add(std::string_view key, std::string_view value, std::uint32_t flags = 0,
           Seconds ttl = Seconds(0));  ///< false: the key exists
  bool replace(std::string_view key, std::string_view value, std::uint32_t flags = 0,
               Seconds ttl = Seconds(0));                     ///< false: the key is missing
  bool append(std::string_view key, std::string_view value);   ///< false: missing
  bool prepend(std::string_view key, std::string_view value);  ///< false: missing
  /// false: changed since `cas` was read, or missing.
  bool cas(std::string_view key, std::string_view value, std::uint64_t cas, std::uint32_t flags = 0,
           Seconds ttl = Seconds(0));
  bool remove(std::string_view key);  ///< memcached's delete; false: missing
  std::optional<std::uint64_t> incr(std::string_view key, std::uint64_t delta);  ///< nullopt: missing
  std::optional<std::uint64_t> decr(std::string_view key, std::uint64_t delta);  ///< stops at 0
  bool touch(std::string_view key, Seconds ttl);  ///< false: missing

  // The future face: the same commands; the futures complete on the client's loop.
  // Thread: any. A bad key fails the future (std::invalid_argument).
  [[nodiscard]] Future<std::optional<MemcacheItem>> get_async(std::string key);
  [[nodiscard]] Future<std::unordered_map<std::string, MemcacheItem>> get_multi_async(std::vector<std::string> keys);
  [[nodiscard]] Future<bool> set_async(std::string key, std::string value, std::uint32_t flags = 0,
                                       Seconds ttl = Seconds(0));
  [[nodiscard]] Future<bool> add_async(std::string key, std::string value, std::uint32_t flags = 0,
                                       Seconds ttl = Seconds(0));
  [[nodiscard]] Future<bool> replace_async(std::string key, std::string value, std::uint32_t flags = 0,
                                           Seconds ttl = Seconds(0));
  [[nodiscard]] Future<bool> append_async(std::string key, std::string value);
  [[nodiscard]] Future<bool> prepend_async(std::string key, std::string value);
  [[nodiscard]] Future<bool> cas_async(std::string key, std::string value, std::uint64_t cas,
                                       std::uint32_t flags = 0, Seconds ttl = Seconds(0));
  [[nodiscard]] Future<bool> remove_async(std::string key);
  [[nodiscard]] Future<std::optional<std::uint64_t>> incr_async(std::string key, std::uint64_t delta);
  [[nodiscard]] Future<std::optional<std::uint64_t>> decr_async(std::string key, std::uint64_t delta);
  [[nodiscard]] Future<bool> touch_async(std::string key, Seconds ttl);

  /// "host:port" of the server the ring maps `key` to (dead or alive). Thread: any.
  std::string server_for(std::string_view key) const;

 private:
  struct Impl;  // adapters/src/memcache/memcache_client.cpp
  std::shared_ptr<Impl> impl_;  // shared with the connections' fibers, which may end later
};

}  // namespace fiberloop
