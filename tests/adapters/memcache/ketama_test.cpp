// KetamaRing: placement exactly as libmemcached's weighted ketama, checked against
// libmemcached's own test vectors and against Debian's libmemcached itself.

#include "memcache/ketama.hpp"

#include <libmemcached/memcached.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace fiberloop {
namespace {

using detail::KetamaRing;

/// The placement Debian's libmemcached computes for `servers`, added in order with
/// MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED (no server has to run for placement).
class LibmemcachedPlacement {
 public:
  explicit LibmemcachedPlacement(const std::vector<MemcacheServer>& servers) : memc_(memcached_create(nullptr)) {
    if (memcached_behavior_set(memc_.get(), MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1) != MEMCACHED_SUCCESS) {
      ADD_FAILURE() << "libmemcached refused MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED";
    }
    for (const MemcacheServer& server : servers) {
      if (memcached_server_add_with_weight(memc_.get(), server.host.c_str(), server.port, server.weight) !=
          MEMCACHED_SUCCESS) {
        ADD_FAILURE() << "libmemcached refused server " << server.host << ":" << server.port;
      }
    }
  }
  std::size_t server_for(std::string_view key) const {
    return memcached_generate_hash(memc_.get(), key.data(), key.size());
  }

 private:
  struct Free {
    void operator()(memcached_st* memc) const { memcached_free(memc); }
  };
  std::unique_ptr<memcached_st, Free> memc_;
};

/// 10 000 keys of every kind a client sends: short and long, printable and binary.
std::vector<std::string> make_sample_keys() {
  std::vector<std::string> keys;
  for (int i = 0; i < 5000; ++i) keys.push_back("user:" + std::to_string(i));
  std::mt19937 random(20240611);
  std::uniform_int_distribution<std::size_t> length(1, 250);
  std::uniform_int_distribution<int> byte(0, 255);
  while (keys.size() < 10000) {
    std::string key(length(random), '\0');
    for (char& c : key) c = static_cast<char>(byte(random));
    keys.push_back(std::move(key));
  }
  return keys;
}

const std::vector<std::string>& sample_keys() {
  static const std::vector<std::string> keys = make_sample_keys();
  return keys;
}

/// Every sample key goes to the same server index with KetamaRing as with libmemcached.
void expect_same_placement_as_libmemcached(const std::vector<MemcacheServer>& servers) {
  const KetamaRing ring(servers);
  const LibmemcachedPlacement libmemcached(servers);
  std::size_t disagreements = 0;
  std::map<std::size_t, std::size_t> keys_per_server;
  for (const std::string& key : sample_keys()) {
    const std::size_t ours = ring.server_for(key);
    const std::size_t theirs = libmemcached.server_for(key);
    ++keys_per_server[ours];
    if (ours != theirs && ++disagreements <= 3) {
      ADD_FAILURE() << "key of " << key.size() << " bytes starting '" << key.substr(0, 16) << "': KetamaRing says "
                    << ours << ", libmemcached says " << theirs;
    }
  }
  EXPECT_EQ(disagreements, 0U) << "of 10000 keys";
  for (const auto& [server, count] : keys_per_server) EXPECT_LT(server, servers.size());
}

std::vector<MemcacheServer> equal_servers(std::size_t count, std::uint16_t port) {
  std::vector<MemcacheServer> servers;
  for (std::size_t i = 0; i < count; ++i) servers.push_back({"10.1.0." + std::to_string(i + 1), port, 1});
  return servers;
}

/// The servers of libmemcached's test/tests/memcached/ketama.cpp ("generate hash").
std::vector<MemcacheServer> libmemcached_fixture_servers() {
  return {{"10.0.1.1", 11211, 600}, {"10.0.1.2", 11211, 300}, {"10.0.1.3", 11211, 200},
          {"10.0.1.4", 11211, 350}, {"10.0.1.5", 11211, 1000}, {"10.0.1.6", 11211, 800},
          {"10.0.1.7", 11211, 950}, {"10.0.1.8", 11211, 100}};
}

struct FixtureCase {
  const char* key;
  const char* server;
};

// libmemcached's test/fixtures/ketama.hpp, ketama_test_cases (the key and the server it
// must land on; its two hash columns are left out).
const FixtureCase libmemcached_fixture_cases[99] = {
    {"SVa_]_V41)", "10.0.1.7"},
    {"*/Z;?V(.\\8", "10.0.1.1"},
    {"30C1*Z*S/_", "10.0.1.2"},
    {"ERR:EC58G>", "10.0.1.7"},
    {"1I=cTMNTKF", "10.0.1.5"},
    {"]VG<`I*Z8)", "10.0.1.5"},
    {"UUTC`-V159", "10.0.1.5"},
    {"@7RU6C6T+Z", "10.0.1.5"},
    {"/XLN0@+36;", "10.0.1.1"},
    {"4(`X;\\V.^c", "10.0.1.1"},
    {"726bW=9*a4", "10.0.1.7"},
    {"\\`)<B)UE,c", "10.0.1.1"},
    {"P1[Ma3=K1/", "10.0.1.8"},
    {"C89I.-V?cT", "10.0.1.8"},
    {"D[HE+cFXDK", "10.0.1.3"},
    {"P1L?NAB[)K", "10.0.1.1"},
    {"cDT0)Z5P6,", "10.0.1.5"},
    {"@JW`+[WAO8", "10.0.1.5"},
    {"\\39DKW^)N_", "10.0.1.3"},
    {"EM75N0+[X1", "10.0.1.4"},
    {"`,SS]NBP,b", "10.0.1.1"},
    {"XX1a9LT+F?", "10.0.1.5"},
    {"Zc\\-,F-c6V", "10.0.1.5"},
    {"1*RTMC7,03", "10.0.1.8"},
    {"*Xc+V0P>32", "10.0.1.7"},
    {"U))Fb-(`,.", "10.0.1.7"},
    {"R-08RNTaRT", "10.0.1.5"},
    {"(LHcO203I3", "10.0.1.5"},
    {"=256P+;Qc8", "10.0.1.5"},
    {"OI5XZ_BBT(", "10.0.1.7"},
    {"2TLRL/UL;:", "10.0.1.7"},
    {"WHD\\O1`ZRW", "10.0.1.5"},
    {".=54)_c;=T", "10.0.1.1"},
    {";G<W-XWZ@b", "10.0.1.5"},
    {"(,>E`)FT\\4", "10.0.1.2"},
    {"HZAU*;P*N]", "10.0.1.7"},
    {"NZ@ZE=O84_", "10.0.1.7"},
    {"6,cEI`F_P>", "10.0.1.6"},
    {"c,5AQ/T5)6", "10.0.1.8"},
    {".O,>>BT)RX", "10.0.1.5"},
    {"XY\\X::LX50", "10.0.1.6"},
    {"+550F^/.01", "10.0.1.6"},
    {"<.X9E2S5+9", "10.0.1.7"},
    {"]\\.UH8_0a1", "10.0.1.4"},
    {"8(6=(T0/Z0", "10.0.1.7"},
    {"8*6a;Sc*X+", "10.0.1.2"},
    {"<QW:;3K6;H", "10.0.1.5"},
    {"7C@EY@-Y?_", "10.0.1.5"},
    {"aPb3E1WD4K", "10.0.1.1"},
    {"?@12R<=1BH", "10.0.1.8"},
    {"QR(a+Q=1FU", "10.0.1.6"},
    {"`C9^FV,960", "10.0.1.6"},
    {"UNHVP..^8H", "10.0.1.4"},
    {":Y.2W2[(35", "10.0.1.7"},
    {"M/HV^_HZ4O", "10.0.1.7"},
    {"ZY16KQ<ICD", "10.0.1.4"},
    {"bV2,`a.PY9", "10.0.1.1"},
    {"U;9:-+5N]9", "10.0.1.1"},
    {"1S/:aJ[1(;", "10.0.1.2"},
    {"Nb-X^]M)I:", "10.0.1.6"},
    {"2;M;ES>J5/", "10.0.1.7"},
    {"[>RZHG97Q9", "10.0.1.6"},
    {"J3/G[)9<^Z", "10.0.1.7"},
    {"N-)88>[O`,", "10.0.1.5"},
    {"NP:=FR\\OaA", "10.0.1.7"},
    {"`@L+W;a,O[", "10.0.1.6"},
    {"W2`P:-+1T[", "10.0.1.5"},
    {"-6G7K^YDIN", "10.0.1.7"},
    {"U>*>9ZI6V5", "10.0.1.6"},
    {".I?^6Ic9RK", "10.0.1.6"},
    {"0OZH^9BKM[", "10.0.1.8"},
    {"5?50UGZ:ML", "10.0.1.5"},
    {"?K2NF@3=IU", "10.0.1.1"},
    {"YI@G-2X?UB", "10.0.1.5"},
    {"7cY</BSaL=", "10.0.1.6"},
    {"A(`KF:[RH8", "10.0.1.6"},
    {";=ZT\\W^P+H", "10.0.1.4"},
    {"b2?WFF56;R", "10.0.1.4"},
    {"CTR74,J+N.", "10.0.1.8"},
    {"<b;*R+QDST", "10.0.1.5"},
    {"\\R^7=9UCG`", "10.0.1.5"},
    {"1bQS5]WOXB", "10.0.1.4"},
    {"M(@X^b[L:K", "10.0.1.1"},
    {"431cBF8,YO", "10.0.1.7"},
    {"(bEIQJ:E./", "10.0.1.6"},
    {"WS/3H*)7F;", "10.0.1.5"},
    {"ZJF[Ia6Q)+", "10.0.1.7"},
    {"<]*QCK8U,>", "10.0.1.7"},
    {"\\[a\\^=V_M0", "10.0.1.6"},
    {"7;RM+8J9YC", "10.0.1.7"},
    {"4*=.SPR[AV", "10.0.1.1"},
    {"-2F+^88P4U", "10.0.1.7"},
    {"X;-F`(N?9D", "10.0.1.7"},
    {"R=F_D-K2a]", "10.0.1.7"},
    {"X*+2aaC.EG", "10.0.1.5"},
    {"[1ZXONX2]a", "10.0.1.4"},
    {"FL;\\GWacaV", "10.0.1.4"},
    {"\\MQ_XNT7L-", "10.0.1.7"},
    {"VD6D0]ba_\\", "10.0.1.1"},
};

TEST(KetamaRingTest, PlacesLibmemcachedFixtureKeysOnTheirServers) {
  const std::vector<MemcacheServer> servers = libmemcached_fixture_servers();
  const KetamaRing ring(servers);
  for (const FixtureCase& fixture : libmemcached_fixture_cases) {
    EXPECT_EQ(servers[ring.server_for(fixture.key)].host, fixture.server) << "key " << fixture.key;
  }
}

TEST(KetamaRingTest, PlacesSpymemcachedLibmemcachedFormatKeysOnTheirServers) {
  // spymemcached's KetamaNodeLocatorTest.testLibKetamaWeightedCompatLibmemcached: its
  // ketama with libmemcached's node names ("localhost-N", "localhost:11212-N") and
  // weights 8 and 8.
  const KetamaRing ring({{"localhost", 11211, 8}, {"localhost", 11212, 8}});
  EXPECT_EQ(ring.server_for("key1"), 1U);
  EXPECT_EQ(ring.server_for("key2"), 0U);
  EXPECT_EQ(ring.server_for("key3"), 1U);
  EXPECT_EQ(ring.server_for("key4"), 1U);
}

TEST(KetamaRingTest, KeyHashingPastTheLastPointWrapsToTheFirst) {
  // libmemcached's ketama test: "VDEAAAAA hashes to fffcd1b5, after the last continuum
  // point", so it goes to the owner of the lowest point.
  const std::vector<MemcacheServer> servers = libmemcached_fixture_servers();
  EXPECT_EQ(KetamaRing(servers).server_for("VDEAAAAA"), LibmemcachedPlacement(servers).server_for("VDEAAAAA"));
}

TEST(KetamaRingTest, AgreesWithLibmemcachedOnOneServer) {
  expect_same_placement_as_libmemcached({{"127.0.0.1", 11211, 1}});
  expect_same_placement_as_libmemcached({{"cache.example", 11311, 7}});
}

TEST(KetamaRingTest, AgreesWithLibmemcachedOnEqualWeights) {
  expect_same_placement_as_libmemcached(equal_servers(3, 11211));
  expect_same_placement_as_libmemcached(equal_servers(3, 22122));
  expect_same_placement_as_libmemcached(equal_servers(10, 11211));
  // One host, several ports: the node names differ only by ":port".
  expect_same_placement_as_libmemcached({{"127.0.0.1", 11211, 1}, {"127.0.0.1", 11212, 1}, {"127.0.0.1", 11213, 1}});
}

TEST(KetamaRingTest, AgreesWithLibmemcachedOnUnequalWeights) {
  expect_same_placement_as_libmemcached(libmemcached_fixture_servers());
  expect_same_placement_as_libmemcached({{"cache-a.example", 11211, 3}, {"cache-b.example", 11212, 1}, {"10.2.0.1", 11211, 2}});
  std::vector<MemcacheServer> ten;
  const std::uint32_t weights[] = {1, 2, 3, 5, 7, 11, 13, 17, 19, 23};
  for (std::size_t i = 0; i < 10; ++i) {
    ten.push_back({"10.3.0." + std::to_string(i + 1), static_cast<std::uint16_t>(i % 2 ? 11211 : 11300 + i), weights[i]});
  }
  expect_same_placement_as_libmemcached(ten);
  // Weights whose total does not fit 32 bits.
  expect_same_placement_as_libmemcached({{"10.4.0.1", 11211, 4000000000U}, {"10.4.0.2", 11211, 3000000000U}, {"10.4.0.3", 11211, 5}});
}

TEST(KetamaRingTest, AgreesWithLibmemcachedWhereFloatRoundingDropsPoints) {
  // With 25 equal servers libmemcached's float arithmetic gives each 156 points, not 160
  // (floor of 39.99999 digests); a double or integer computation would not.
  expect_same_placement_as_libmemcached(equal_servers(25, 11211));
}

TEST(KetamaRingTest, AgreesWithLibmemcachedOnAServerWithoutPoints) {
  // A share below 1/80 of two servers' total rounds down to no points: no key goes there.
  const std::vector<MemcacheServer> servers = {{"10.5.0.1", 11211, 1}, {"10.5.0.2", 11211, 1000}};
  expect_same_placement_as_libmemcached(servers);
  const KetamaRing ring(servers);
  for (const std::string& key : sample_keys()) ASSERT_EQ(ring.server_for(key), 1U) << key;
}

TEST(KetamaRingTest, WithEveryServerLivePlacesAsWithoutPredicate) {
  const KetamaRing ring(libmemcached_fixture_servers());
  for (const std::string& key : sample_keys()) {
    ASSERT_EQ(ring.server_for(key, [](std::size_t) { return true; }), ring.server_for(key));
  }
}

TEST(KetamaRingTest, DeadServerKeysGoToTheNextLiveServerClockwise) {
  // With equal weights every server keeps its 160 points when one is removed, so walking
  // past the dead server's points is exactly the ring of the other nine — which is what
  // libmemcached builds when it ejects a server.
  const std::vector<MemcacheServer> servers = equal_servers(10, 11211);
  constexpr std::size_t dead = 3;
  std::vector<MemcacheServer> survivors = servers;
  survivors.erase(survivors.begin() + dead);
  const KetamaRing ring(servers);
  const LibmemcachedPlacement ejected(survivors);
  std::size_t moved = 0;
  for (const std::string& key : sample_keys()) {
    const std::size_t primary = ring.server_for(key);
    const std::size_t failover = ring.server_for(key, [&](std::size_t server) { return server != dead; });
    const std::size_t survivor = ejected.server_for(key);
    ASSERT_EQ(failover, survivor < dead ? survivor : survivor + 1) << key;
    if (primary != dead) {
      ASSERT_EQ(failover, primary) << key;
    } else {
      ++moved;
    }
  }
  EXPECT_GT(moved, 500U) << "a tenth of the keys lived on the dead server";
}

TEST(KetamaRingTest, AsksEachServerOnceAndGivesNposWhenNoneIsLive) {
  const std::vector<MemcacheServer> servers = libmemcached_fixture_servers();
  const KetamaRing ring(servers);
  for (const std::string& key : {std::string("user:1"), std::string("VDEAAAAA"), std::string("SVa_]_V41)")}) {
    std::vector<int> asked(servers.size(), 0);
    const std::size_t found = ring.server_for(key, [&](std::size_t server) {
      EXPECT_LT(server, servers.size());
      ++asked.at(server);
      return false;
    });
    EXPECT_EQ(found, KetamaRing::npos) << key;
    for (std::size_t server = 0; server < servers.size(); ++server) {
      EXPECT_EQ(asked[server], 1) << "server " << server << ", key " << key;
    }
  }
}

TEST(KetamaRingTest, TheOnlyLiveServerTakesEveryKey) {
  const std::vector<MemcacheServer> servers = libmemcached_fixture_servers();
  const KetamaRing ring(servers);
  for (std::size_t only = 0; only < servers.size(); ++only) {
    for (const std::string& key : {std::string("user:1"), std::string("VDEAAAAA"), std::string("D[HE+cFXDK")}) {
      EXPECT_EQ(ring.server_for(key, [&](std::size_t server) { return server == only; }), only) << key;
    }
  }
}

}  // namespace
}  // namespace fiberloop
