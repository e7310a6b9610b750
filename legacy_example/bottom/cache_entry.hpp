#pragma once
/// @file
/// What both bottoms cache, and how, so the threaded programs (libmemcached) and the
/// fiber one (MemcacheClient) read each other's entries: do_stuff()'s answer for a
/// target, under the key `legacy:` + target, the body as the value and the HTTP status
/// as the item's flags. No fiberloop and no libmemcached here.

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "../middle/backend.hpp"

namespace legacy {

/// The cache key for do_stuff(target), or nullopt when the target cannot be one
/// (memcached keys are 1-250 bytes without spaces or control characters): such a
/// request simply goes to the backend. Targets are origin-form URLs, so the
/// characters always fit; only a very long sku list could not.
inline std::optional<std::string> cache_key(std::string_view target) {
  constexpr std::string_view prefix = "legacy:";
  constexpr std::size_t max_key = 250;
  if (prefix.size() + target.size() > max_key) return std::nullopt;
  for (const unsigned char c : target)
    if (c <= ' ' || c == 0x7f) return std::nullopt;
  return std::string(prefix) + std::string(target);
}

/// Only successful answers are kept: a 4xx/5xx may be gone on the next try.
inline bool cacheable(const BackendReply& reply) { return reply.status >= 200 && reply.status < 300; }

/// The cached answer, from an item's value and flags; nullopt when the flags are no
/// status we store (another program's item under our key): then it is a miss.
inline std::optional<BackendReply> cached_reply(std::string value, std::uint32_t flags) {
  if (flags < 200 || flags >= 300) return std::nullopt;
  return BackendReply{static_cast<int>(flags), std::move(value)};
}

/// The item flags that carry `reply`'s status.
inline std::uint32_t cache_flags(const BackendReply& reply) { return static_cast<std::uint32_t>(reply.status); }

/// A cache failure is no request's failure (the backend answers instead), but its
/// first one is worth a line on stderr, the others are not (a dead server would
/// flood it). Thread: any.
inline void note_cache_failure(std::string_view what) {
  static std::atomic<bool> noted{false};
  if (!noted.exchange(true))
    std::fprintf(stderr, "cache: %.*s; answering from the backend (later cache failures are not logged)\n",
                 static_cast<int>(what.size()), what.data());
}

}  // namespace legacy

namespace legacy {

/// Cache-aside, as both bottoms do it: a hit answers; a miss (or a cache that failed,
/// or a target that cannot be a key) asks the backend with `ask_backend(target)` and
/// stores a successful answer for the next caller. `cache` may be null (no --cache).
/// Cache must have `std::optional<BackendReply> get(const std::string& key)` and
/// `void set(const std::string& key, const BackendReply& reply)` that report their own
/// failures (note_cache_failure) rather than throw.
template <class Cache, class AskBackend>
BackendReply cache_aside(Cache* cache, const std::string& target, AskBackend&& ask_backend) {
  const std::optional<std::string> key = cache ? cache_key(target) : std::nullopt;
  if (!key) return ask_backend(target);
  if (std::optional<BackendReply> hit = cache->get(*key)) return std::move(*hit);
  BackendReply reply = ask_backend(target);
  if (cacheable(reply)) cache->set(*key, reply);
  return reply;
}

}  // namespace legacy
