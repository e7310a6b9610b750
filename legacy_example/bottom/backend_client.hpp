#pragma once
/// @file
/// How a top sets up the bottom it links. Each bottom (blocking_backend.cpp,
/// fiberloop_backend.cpp) defines these two functions and legacy::do_stuff()
/// (middle/backend.hpp); the middle knows only do_stuff(). With --inventory the
/// bottom hands do_stuff() to its SQL half (inventory_db.hpp).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../support/cli.hpp"

namespace legacy {

struct BackendConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  /// Limit of every wait of one do_stuff() call: connect, send, and the whole reply.
  std::chrono::milliseconds timeout{5000};
  /// Most connections to the backend (so requests in flight); more callers wait
  /// for one, within `timeout`. 512 carry 50 000 requests/s at 10 ms each.
  std::size_t max_connections = 512;

  /// memcached servers for cache-aside in front of the backend (--cache); empty: no
  /// cache, do_stuff() asks the backend every time. Both bottoms place keys with
  /// weighted ketama (libmemcached's MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED), all weights
  /// 1, so the threaded programs and the fiber one share the same servers' entries.
  std::vector<HostPort> cache;
  /// How long a cached answer lives: stock levels may change, so briefly.
  std::chrono::seconds cache_ttl{5};
  /// Limit of every cache wait (connect, get, set; the blocking bottom's wait for a
  /// pooled cache connection too). Past it, or with a server down, the request goes
  /// to the backend: the cache never fails a request.
  std::chrono::milliseconds cache_timeout{100};

  /// --inventory: the database (support/sql_url.hpp) that answers do_stuff() instead of
  /// the HTTP backend, which is then not used (inventory_db.hpp); empty: the backend.
  /// `timeout` bounds each call as for the backend: the wait for a connection, the
  /// connect and the query.
  std::string inventory_url;
  /// Most connections to that database (so queries in flight); more callers wait for
  /// one. Small, as database pools are: a server allows ~150 connections by default.
  std::size_t sql_connections = 64;
};

/// Where do_stuff() goes. Call once before the first request. Blocking bottom: any
/// thread, before the serving threads start. Fiberloop bottom: on the loop's thread,
/// whose fibers then call do_stuff(). Throws BackendError when the host does not resolve
/// or the inventory URL names no database.
void backend_start(const BackendConfig& config);

/// Releases the bottom's shared resources (fiberloop bottom: before its loop is destroyed).
void backend_stop() noexcept;

}  // namespace legacy
