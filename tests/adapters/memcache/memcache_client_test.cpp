// MemcacheClient against real memcached servers (started on free loopback ports) and
// fault servers for what a real one won't do: every command, binary values, placement,
// pipelining, timeouts, dead servers and their probe, failover, protocol breakers,
// a server killed and restarted, callers on other threads.

#include <set>
#include <thread>

#include "loop_internals.hpp"
#include "support/loop_test.hpp"
#include "support/memcached_server.hpp"

namespace fiberloop::testing {
namespace {

using namespace std::chrono_literals;

class MemcacheClientTest : public LoopTest {
 protected:
  /// After a client is destroyed its connection fibers end in the next iterations.
  void wait_for_connection_fibers_to_end() {
    for (int i = 0; i < 1000 && loop_.live_fibers() > 1; ++i) sleep_for(1ms);
    EXPECT_EQ(loop_.live_fibers(), 1u) << "the client left connection fibers behind";
  }
};

/// "k7" (written so: GCC 12 warns falsely on "k" + std::to_string(i), PR 105329).
std::string numbered(std::string prefix, int i) { return prefix.append(std::to_string(i)); }

TEST_F(MemcacheClientTest, EveryCommandRoundTripsAgainstARealServer) {
  MemcachedServer memcached;
  run_in_fiber([&] {
    {
      MemcacheClient client({memcached.server()});
      EXPECT_EQ(client.get("absent"), std::nullopt);
      EXPECT_TRUE(client.set("k", "v1", 42));
      const auto item = client.get("k");
      ASSERT_TRUE(item);
      EXPECT_EQ(item->value, "v1");
      EXPECT_EQ(item->flags, 42u);
      EXPECT_NE(item->cas, 0u);

      EXPECT_FALSE(client.add("k", "other"));
      EXPECT_TRUE(client.add("new", "n"));
      EXPECT_FALSE(client.replace("missing", "x"));
      EXPECT_TRUE(client.replace("new", "n2"));
      EXPECT_TRUE(client.append("new", ">"));
      EXPECT_TRUE(client.prepend("new", "<"));
      EXPECT_EQ(client.get("new")->value, "<n2>");
      EXPECT_FALSE(client.append("missing", "x"));
      EXPECT_FALSE(client.prepend("missing", "x"));

      EXPECT_TRUE(client.cas("k", "v2", item->cas));
      EXPECT_FALSE(client.cas("k", "v3", item->cas)) << "cas with a stale version stored";
      EXPECT_FALSE(client.cas("missing", "v", 1));
      EXPECT_EQ(client.get("k")->value, "v2");

      EXPECT_TRUE(client.set("n", "10"));
      EXPECT_EQ(client.incr("n", 5), 15u);
      EXPECT_EQ(client.decr("n", 20), 0u);  // memcached stops at 0
      EXPECT_EQ(client.incr("missing", 1), std::nullopt);
      EXPECT_EQ(client.decr("missing", 1), std::nullopt);

      EXPECT_TRUE(client.touch("k", 100s));
      EXPECT_FALSE(client.touch("missing", 100s));
      EXPECT_TRUE(client.remove("k"));
      EXPECT_FALSE(client.remove("k"));
      EXPECT_EQ(client.get("k"), std::nullopt);

      // A ttl past memcached's 30 days is sent as a Unix time, so it still means "from now".
      EXPECT_TRUE(client.set("long", "l", 0, std::chrono::hours(24 * 60)));
      EXPECT_EQ(client.get("long")->value, "l");
      EXPECT_TRUE(client.set("short", "s", 0, 1s));
      sleep_for(2100ms);
      EXPECT_EQ(client.get("short"), std::nullopt) << "a 1 s ttl did not expire";
    }
    wait_for_connection_fibers_to_end();
  });
}

TEST_F(MemcacheClientTest, ValuesAreBinarySafe) {
  MemcachedServer memcached;
  run_in_fiber([&] {
    {
      MemcacheClient client({memcached.server()});
      const std::string tricky = std::string("a\r\nEND\r\nVALUE x 0 1\r\n\0b", 23) + std::string(3, '\0');
      ASSERT_TRUE(client.set("tricky", tricky));
      EXPECT_EQ(client.get("tricky")->value, tricky);
      ASSERT_TRUE(client.set("empty", ""));
      ASSERT_TRUE(client.get("empty"));
      EXPECT_EQ(client.get("empty")->value, "");
      std::string large(900 * 1024, 'x');
      for (std::size_t i = 0; i < large.size(); i += 4099) large[i] = static_cast<char>(i);
      ASSERT_TRUE(client.set("large", large));
      EXPECT_EQ(client.get("large")->value, large);
    }
    wait_for_connection_fibers_to_end();
  });
}

TEST_F(MemcacheClientTest, BadKeysAreRefusedBeforeAnythingIsSent) {
  ScriptedMemcached fake([](std::string_view) { return ScriptedReply("END\r\n"); });
  run_in_fiber([&] {
    {
      MemcacheClient client({fake.server()});
      for (const std::string& bad : {std::string(), std::string(251, 'k'), std::string("a b"),
                                     std::string("a\r\nflush_all"), std::string("a\0b", 3), std::string("tab\t")}) {
        EXPECT_THROW(client.get(bad), std::invalid_argument) << bad;
        EXPECT_THROW(client.set(bad, "v"), std::invalid_argument) << bad;
        EXPECT_THROW(client.get_multi({"good", bad}), std::invalid_argument) << bad;
        EXPECT_THROW(client.incr(bad, 1), std::invalid_argument) << bad;
      }
      EXPECT_NO_THROW(client.get(std::string(250, 'k')));  // the longest key memcached takes
    }
    wait_for_connection_fibers_to_end();
  });
  EXPECT_EQ(fake.commands(), 1u) << "a bad key's command reached the server";
}

TEST_F(MemcacheClientTest, GetMultiAsksEachServerOnceAndKeysLiveWhereServerForSays) {
  MemcachedServer a, b, c;
  run_in_fiber([&] {
    {
      MemcacheClient client({a.server(), b.server(2), c.server()});
      std::vector<std::string> keys;
      for (int i = 0; i < 300; ++i) keys.push_back(numbered("key:", i));
      for (const auto& key : keys) ASSERT_TRUE(client.set(key, "value of " + key));
      std::vector<std::string> asked = keys;
      asked.push_back("never-set");
      asked.push_back("key:1");  // twice
      const auto hits = client.get_multi(asked);
      EXPECT_EQ(hits.size(), keys.size());
      for (const auto& key : keys) EXPECT_EQ(hits.at(key).value, "value of " + key);

      // Each key is stored on the server server_for() names, and on no other.
      std::set<std::string> used;
      for (MemcachedServer* server : {&a, &b, &c}) {
        MemcacheClient direct({server->server()});
        for (const auto& key : keys) {
          const bool here = client.server_for(key) == server->address();
          EXPECT_EQ(direct.get(key).has_value(), here) << key << " on " << server->address();
          if (here) used.insert(server->address());
        }
      }
      EXPECT_EQ(used.size(), 3u) << "300 keys did not spread over three servers";
    }
    wait_for_connection_fibers_to_end();
  });
}

TEST_F(MemcacheClientTest, AThousandFibersShareTheClientAndEachReadsWhatItWrote) {
  MemcachedServer memcached;
  std::atomic<int> wrong{0};
  run_in_fiber([&] {
    {
      MemcacheOptions options;
      options.request_timeout = 10s;  // sanitizer builds on a loaded machine
      MemcacheClient client({memcached.server()}, options);
      std::vector<Future<void>> fibers;
      for (int i = 0; i < 1000; ++i) {
        fibers.push_back(loop_.spawn([&client, &wrong, i] {
          const std::string key = numbered("fiber:", i);
          for (int round = 0; round < 5; ++round) {
            const std::string value = key + " round " + std::to_string(round) + std::string(i % 50, '.');
            if (!client.set(key, value, static_cast<std::uint32_t>(i))) ++wrong;
            const auto item = client.get(key);
            if (!item || item->value != value || item->flags != static_cast<std::uint32_t>(i)) ++wrong;
          }
        }));
      }
      for (auto& fiber : fibers) wait_for_future(std::move(fiber));
    }
    wait_for_connection_fibers_to_end();
  });
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(MemcacheClientTest, ConcurrentRequestsArePipelinedOnAFewConnections) {
  ScriptedMemcached fake([](std::string_view) { return ScriptedReply("STORED\r\n"); });
  run_in_fiber([&] {
    {
      MemcacheOptions options;
      options.connections_per_server = 2;
      options.request_timeout = 10s;
      MemcacheClient client({fake.server()}, options);
      std::vector<Future<bool>> sets;
      for (int i = 0; i < 500; ++i) sets.push_back(client.set_async(numbered("k", i), "v"));
      for (auto& set : sets) EXPECT_TRUE(wait_for_future(std::move(set)));
    }
    wait_for_connection_fibers_to_end();
  });
  EXPECT_EQ(fake.commands(), 500u);
  EXPECT_EQ(fake.connections(), 2u) << "500 concurrent requests should share connections_per_server connections";
}

TEST_F(MemcacheClientTest, ASilentServerTimesOutIsMarkedDeadFailsFastAndIsProbedOnce) {
  SilentMemcached silent;
  run_in_fiber([&] {
    const std::size_t timers_before = detail::LoopInternals::live_timers(loop_);  // run_sync's own
    {
      MemcacheOptions options;
      options.request_timeout = 100ms;
      options.failure_limit = 2;
      options.retry_timeout = 400ms;
      MemcacheClient client({silent.server()}, options);
      for (int i = 0; i < 2; ++i) {
        const auto start = std::chrono::steady_clock::now();
        const std::string what = failure_of<TimeoutError>(client.get_async("k"));
        EXPECT_NE(what.find(silent.address()), std::string::npos) << what;
        EXPECT_GE(elapsed_ms(start), 90);
        EXPECT_LT(elapsed_ms(start), 2000);
      }
      // Marked dead: fails at once, naming the server, and sends nothing.
      const std::size_t sent = silent.commands();
      const auto start = std::chrono::steady_clock::now();
      try {
        client.get("k");
        ADD_FAILURE() << "a dead server's key did not fail";
      } catch (const MemcacheServerDown& e) {
        EXPECT_EQ(e.server(), silent.address());
        EXPECT_NE(std::string(e.what()).find("retry_timeout"), std::string::npos) << e.what();
      }
      EXPECT_LT(elapsed_ms(start), 50);
      EXPECT_EQ(detail::LoopInternals::live_timers(loop_), timers_before) << "a timer outlived its request";

      // After retry_timeout, one request probes it; the others meanwhile fail fast.
      sleep_for(450ms);
      std::vector<Future<std::optional<MemcacheItem>>> gets;
      for (int i = 0; i < 20; ++i) gets.push_back(client.get_async("k"));
      int down = 0, timed_out = 0;
      for (auto& get : gets) {
        try {
          wait_for_future(std::move(get));
        } catch (const MemcacheServerDown&) {
          ++down;
        } catch (const TimeoutError&) {
          ++timed_out;
        }
      }
      EXPECT_EQ(timed_out, 1) << "one probe";
      EXPECT_EQ(down, 19);
      EXPECT_EQ(silent.commands(), sent + 1) << "the probe is the only request sent";
      EXPECT_THROW(client.get("k"), MemcacheServerDown) << "a failed probe marks it dead again";
    }
    wait_for_connection_fibers_to_end();
    EXPECT_EQ(detail::LoopInternals::live_timers(loop_), timers_before);
  });
}

TEST_F(MemcacheClientTest, WithFailoverADeadServersKeysGoToTheNextLiveServer) {
  MemcachedServer live;
  SilentMemcached silent;
  run_in_fiber([&] {
    {
      MemcacheOptions options;
      options.request_timeout = 100ms;
      options.failure_limit = 1;
      options.retry_timeout = 60s;
      options.failover = true;
      MemcacheClient client({live.server(), silent.server()}, options);
      std::string key;
      for (int i = 0; key.empty(); ++i)
        if (client.server_for(numbered("k", i)) == silent.address()) key = numbered("k", i);
      EXPECT_THROW(client.set(key, "v"), TimeoutError);  // marks it dead
      EXPECT_TRUE(client.set(key, "v"));                 // now on the live server
      EXPECT_EQ(client.get(key)->value, "v");
      EXPECT_EQ(client.get_multi({key, "other"}).at(key).value, "v");
    }
    wait_for_connection_fibers_to_end();
  });
}

TEST_F(MemcacheClientTest, RefusedConnectionsCountAsFailuresToo) {
  std::uint16_t port = 0;
  {
    MemcachedServer gone;  // a port that refuses once it is stopped
    port = gone.port();
  }
  run_in_fiber([&] {
    {
      MemcacheOptions options;
      options.failure_limit = 2;
      MemcacheClient client({{"127.0.0.1", port}}, options);
      EXPECT_THROW(client.get("k"), std::system_error);
      EXPECT_THROW(client.get("k"), std::system_error);
      EXPECT_THROW(client.get("k"), MemcacheServerDown);
    }
    wait_for_connection_fibers_to_end();
  });
}

TEST_F(MemcacheClientTest, AReplyThatBreaksTheProtocolFailsOnlyTheRequestsOnItsConnection) {
  ScriptedMemcached fake([](std::string_view line) -> ScriptedReply {
    if (line.starts_with("gets garbage")) return "HELLO THERE\r\n";
    if (line.starts_with("gets huge")) return "VALUE huge 0 99999999999\r\n";
    if (line.starts_with("gets other")) return "VALUE someone-else 0 1\r\nx\r\nEND\r\n";
    if (line.starts_with("incr")) return "12x\r\n";
    return "VALUE ok 0 2\r\nok\r\nEND\r\n";
  });
  run_in_fiber([&] {
    {
      MemcacheOptions options;
      options.connections_per_server = 1;
      options.failure_limit = 100;
      MemcacheClient client({fake.server()}, options);
      std::string what = failure_of<MemcacheProtocolError>(client.get_async("garbage"));
      EXPECT_NE(what.find("expected VALUE or END"), std::string::npos) << what;
      EXPECT_NE(what.find(fake.address()), std::string::npos) << what;
      EXPECT_EQ(client.get("ok")->value, "ok") << "the next request gets a fresh connection";
      what = failure_of<MemcacheProtocolError>(client.get_async("huge"));
      EXPECT_NE(what.find("max_value_bytes"), std::string::npos) << what;
      what = failure_of<MemcacheProtocolError>(client.get_async("other"));
      EXPECT_NE(what.find("another key"), std::string::npos) << what;
      EXPECT_THROW(client.incr("n", 1), MemcacheProtocolError);
      EXPECT_EQ(client.get("ok")->value, "ok");
    }
    wait_for_connection_fibers_to_end();
  });
  EXPECT_GE(fake.connections(), 3u) << "each protocol break closes its connection";
}

TEST_F(MemcacheClientTest, ServerErrorsFailTheRequestAndKeepTheConnection) {
  MemcachedServer memcached;  // items up to memcached's default 1 MiB
  run_in_fiber([&] {
    {
      MemcacheOptions options;
      options.connections_per_server = 1;
      MemcacheClient client({memcached.server()}, options);
      ASSERT_TRUE(client.set("before", "b"));
      try {
        client.set("too-large", std::string(2 * 1024 * 1024, 'x'));
        ADD_FAILURE() << "a value over memcached's item size was stored";
      } catch (const MemcacheServerError& e) {
        EXPECT_EQ(e.server(), memcached.address());
        EXPECT_NE(std::string(e.what()).find("SERVER_ERROR"), std::string::npos) << e.what();
      }
      EXPECT_EQ(client.get("before")->value, "b");
      EXPECT_TRUE(client.set("n", "not a number"));
      EXPECT_THROW(client.incr("n", 1), MemcacheServerError);  // CLIENT_ERROR
      EXPECT_EQ(client.get("before")->value, "b");
    }
    wait_for_connection_fibers_to_end();
  });
}

TEST_F(MemcacheClientTest, AServerKilledMidRunFailsClearlyAndRecoversAfterRestart) {
  MemcachedServer memcached;
  run_in_fiber([&] {
    {
      MemcacheOptions options;
      options.failure_limit = 2;
      options.retry_timeout = 200ms;
      MemcacheClient client({memcached.server()}, options);
      ASSERT_TRUE(client.set("k", "v"));
      run_blocking([&] { memcached.kill(); });
      int failures = 0;
      for (int i = 0; i < 4; ++i) {
        try {
          client.get("k");
        } catch (const MemcacheServerDown& e) {
          EXPECT_EQ(e.server(), memcached.address());
          ++failures;
        } catch (const StreamClosed& e) {
          EXPECT_NE(std::string(e.what()).find(memcached.address()), std::string::npos) << e.what();
          ++failures;
        } catch (const std::system_error& e) {
          EXPECT_NE(std::string(e.what()).find(memcached.address()), std::string::npos) << e.what();
          ++failures;
        }
      }
      EXPECT_EQ(failures, 4);
      run_blocking([&] { memcached.restart(); });
      sleep_for(250ms);
      EXPECT_EQ(client.get("k"), std::nullopt) << "the restarted server is empty";
      EXPECT_TRUE(client.set("k", "again"));
      EXPECT_EQ(client.get("k")->value, "again");
    }
    wait_for_connection_fibers_to_end();
  });
}

TEST_F(MemcacheClientTest, PlainThreadsBlockAndTheLoopThreadOutsideAFiberIsRefused) {
  MemcachedServer memcached;
  auto client = std::make_unique<MemcacheClient>(std::vector{memcached.server()}, MemcacheOptions{}, loop_);
  std::atomic<int> right{0};
  run_in_fiber([&] {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        const std::string key = numbered("thread:", t);
        if (client->set(key, key)) ++right;
        const auto item = client->get(key);
        if (item && item->value == key) ++right;
      });
    run_blocking([&] {
      for (auto& thread : threads) thread.join();
    });
    // On the loop's thread outside a fiber a wait would stop the loop: refused.
    Promise<void> checked;
    loop_.add_callback([&] {
      EXPECT_THROW(client->get("k"), BlockingCallError);
      checked.set_value();
    });
    wait_for_future(checked.get_future());
    client.reset();
    wait_for_connection_fibers_to_end();
  });
  EXPECT_EQ(right.load(), 8);
}

TEST_F(MemcacheClientTest, DestroyingTheLoopFailsRequestsInFlightWithLoopClosed) {
  SilentMemcached silent;
  auto loop = std::make_unique<IOLoop>();
  MemcacheOptions options;
  options.request_timeout = 60s;
  MemcacheClient client({silent.server()}, options, *loop);
  Future<std::optional<MemcacheItem>> pending = loop->run_sync([&] {
    auto get = client.get_async("k");
    while (silent.commands() == 0) sleep_for(1ms);
    return get;
  });
  loop.reset();
  EXPECT_THROW(wait_for_future(std::move(pending)), LoopClosed);
  EXPECT_THROW(wait_for_future(client.get_async("k")), LoopClosed);
}

}  // namespace
}  // namespace fiberloop::testing
