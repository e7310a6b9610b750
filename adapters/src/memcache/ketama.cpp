#include "memcache/ketama.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <fiberloop/errors.hpp>

// The facts below are libmemcached's (awesomized/libmemcached 1.1.4, what Debian ships):
// src/libmemcached/hosts.cc update_continuum and ketama_server_hash, src/libmemcached/hash.cc
// dispatch_host, src/libhashkit/md5.cc hashkit_md5, include/libmemcached-1.0/defaults.h.

namespace fiberloop::detail {
namespace {

constexpr std::uint32_t points_per_server = 160;    // MEMCACHED_POINTS_PER_SERVER_KETAMA
constexpr std::uint32_t points_per_digest = 4;      // one per 4 bytes of an MD5 digest
constexpr std::uint16_t memcached_default_port = 11211;  // MEMCACHED_DEFAULT_PORT

using Md5Digest = std::array<unsigned char, 16>;

const EVP_MD* md5_algorithm() noexcept {
  // Fetched once: EVP_MD_fetch is thread-safe, and an explicitly fetched digest spares
  // every lookup the implicit fetch EVP_md5() costs.
  static const EVP_MD* const algorithm = EVP_MD_fetch(nullptr, "MD5", nullptr);
  return algorithm;
}

struct DigestContextFree {
  void operator()(EVP_MD_CTX* context) const noexcept { EVP_MD_CTX_free(context); }
};

/// MD5 of `data` into `digest`; false when OpenSSL cannot (no MD5 provider, no memory).
bool md5(std::string_view data, Md5Digest& digest) noexcept {
  const EVP_MD* algorithm = md5_algorithm();
  // One context per thread, reused: a lookup then allocates nothing.
  thread_local const std::unique_ptr<EVP_MD_CTX, DigestContextFree> context{EVP_MD_CTX_new()};
  unsigned int length = 0;
  return algorithm != nullptr && context != nullptr &&
         EVP_DigestInit_ex2(context.get(), algorithm, nullptr) == 1 &&
         EVP_DigestUpdate(context.get(), data.data(), data.size()) == 1 &&
         EVP_DigestFinal_ex(context.get(), digest.data(), &length) == 1 && length == digest.size();
}

/// The `part`-th little-endian 32-bit word of a digest: part 0 is hashkit_md5's key
/// hash, parts 0..3 are ketama_server_hash's four points.
std::uint32_t digest_word(const Md5Digest& digest, std::size_t part) noexcept {
  const unsigned char* bytes = digest.data() + part * 4;
  return std::uint32_t(bytes[0]) | std::uint32_t(bytes[1]) << 8 | std::uint32_t(bytes[2]) << 16 |
         std::uint32_t(bytes[3]) << 24;
}

/// update_continuum's weighted point count, in float as libmemcached computes it: the
/// float rounding decides whether a server gets 156 or 160 points (this file is built
/// with -ffp-contract=off so no fused multiply-add changes the rounding).
std::uint32_t weighted_point_count(std::uint32_t weight, std::uint64_t total_weight,
                                   std::size_t server_count) noexcept {
  const float share = static_cast<float>(weight) / static_cast<float>(total_weight);
  const float digests = share * static_cast<float>(points_per_server) / 4 *
                            static_cast<float>(server_count) + 0.0000000001F;
  return static_cast<std::uint32_t>(std::floor(digests)) * points_per_digest;
}

/// The name update_continuum hashes for a server's digest: "host-" for the default
/// port, "host:port-" otherwise; the digest's number follows.
std::string node_name_prefix(const MemcacheServer& server) {
  std::string prefix = server.host;
  if (server.port != memcached_default_port) {
    prefix += ':';
    prefix += std::to_string(server.port);
  }
  prefix += '-';
  return prefix;
}

}  // namespace

KetamaRing::KetamaRing(const std::vector<MemcacheServer>& servers) : server_count_(servers.size()) {
  std::uint64_t total_weight = 0;
  for (const MemcacheServer& server : servers) total_weight += server.weight;

  for (std::size_t index = 0; index < servers.size(); ++index) {
    const std::uint32_t point_count = weighted_point_count(servers[index].weight, total_weight, servers.size());
    std::string name = node_name_prefix(servers[index]);
    const std::size_t prefix_length = name.size();
    for (std::uint32_t digest_number = 0; digest_number < point_count / points_per_digest; ++digest_number) {
      name.resize(prefix_length);
      name += std::to_string(digest_number);
      Md5Digest digest;
      if (!md5(name, digest)) {
        throw Error("memcached key placement needs MD5 from OpenSSL's libcrypto, which refused it "
                    "(a FIPS-only configuration?): enable OpenSSL's default provider");
      }
      for (std::size_t part = 0; part < points_per_digest; ++part) {
        points_.push_back(Point{digest_word(digest, part), static_cast<std::uint32_t>(index)});
      }
    }
  }
  // continuum_item_cmp: by value, then by server index, so that of several servers on one
  // point the lowest index wins.
  std::sort(points_.begin(), points_.end(), [](const Point& a, const Point& b) {
    return a.value != b.value ? a.value < b.value : a.server < b.server;
  });
}

std::size_t KetamaRing::first_point_for(std::string_view key) const noexcept {
  // libmemcached does not hash keys when there is one server (_generate_hash_wrapper).
  if (server_count_ == 1) return 0;
  Md5Digest digest;
  if (!md5(key, digest)) {
    // The constructor hashed with the same algorithm, so only a failed allocation of
    // this thread's context gets here.
    std::fputs("fiberloop: MD5 from OpenSSL failed while placing a memcached key\n", stderr);
    std::abort();
  }
  const std::uint32_t hash = digest_word(digest, 0);
  // dispatch_host: the first point at or after the hash, wrapping past the last one.
  const auto point = std::lower_bound(points_.begin(), points_.end(), hash,
                                      [](const Point& p, std::uint32_t value) { return p.value < value; });
  return point == points_.end() ? 0 : static_cast<std::size_t>(point - points_.begin());
}

std::size_t KetamaRing::server_for(std::string_view key) const noexcept {
  return points_[first_point_for(key)].server;
}

std::size_t KetamaRing::server_for(std::string_view key,
                                   const std::function<bool(std::size_t)>& live) const {
  const std::size_t start = first_point_for(key);
  const std::size_t first = points_[start].server;
  if (live(first)) return first;
  // The rare path: remember who was asked, so that each server is asked once and the
  // walk stops as soon as every server has said no.
  std::vector<bool> asked(server_count_, false);
  asked[first] = true;
  std::size_t dead = 1;
  for (std::size_t step = 1; step < points_.size() && dead < server_count_; ++step) {
    const std::size_t server = points_[(start + step) % points_.size()].server;
    if (asked[server]) continue;
    if (live(server)) return server;
    asked[server] = true;
    ++dead;
  }
  return npos;
}

}  // namespace fiberloop::detail
