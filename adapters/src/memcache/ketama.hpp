#pragma once
// Key placement of MemcacheClient: libmemcached's weighted ketama continuum
// (MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED; pylibmc's ketama_weighted), point for point, so
// a server on libmemcached and one on MemcacheClient put every key on the same server.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include <fiberloop/memcache.hpp>

namespace fiberloop::detail {

/// libmemcached's weighted ketama continuum over `servers` (public header
/// <fiberloop/memcache.hpp> has MemcacheServer). Immutable once built: any thread may
/// look keys up concurrently.
class KetamaRing {
 public:
  /// Builds the continuum: servers non-empty, weights > 0 (the caller checks). A server
  /// whose share of the total weight is below 1/(40 * servers.size()) gets no points and
  /// so no keys, as in libmemcached. Throws Error when OpenSSL offers no MD5 (FIPS mode).
  explicit KetamaRing(const std::vector<MemcacheServer>& servers);

  /// Index in `servers` of the server `key` is placed on.
  std::size_t server_for(std::string_view key) const noexcept;

  /// Walking the ring clockwise from key's point: the first server index for which
  /// live(index) is true; npos when none is. A server without points is never reached.
  /// `live` is called at most once per server.
  std::size_t server_for(std::string_view key, const std::function<bool(std::size_t)>& live) const;

  static constexpr std::size_t npos = std::size_t(-1);

 private:
  struct Point {
    std::uint32_t value;
    std::uint32_t server;
  };
  /// The first point at or clockwise after `key`'s hash.
  std::size_t first_point_for(std::string_view key) const noexcept;

  std::vector<Point> points_;  // sorted by (value, server), as libmemcached's qsort leaves them
  std::size_t server_count_;
};

}  // namespace fiberloop::detail
