// Stack contexts and fibers: each fiber owns its chain (saved and restored as it
// suspends and resumes), a spawned fiber starts with its spawner's, reports name the
// fiber, errors of dropped fiber futures are reported — and seed 000's scenario.

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;

using testing::capture_stderr;
using testing::ReportLog;
using testing::what_of;

class FiberContextTest : public testing::LoopTest {};

TEST_F(FiberContextTest, InterleavingFibersNeverSeeEachOthersValuesOrHandlers) {
  ContextLocal<int> id;
  std::vector<int> resumed;          // which fiber resumed, in order
  std::vector<std::string> handled;  // "handler of N got M"
  std::vector<std::string> outside;  // what callbacks registered with no context see
  auto request = [&](int me) {
    auto scope = id.set(me);
    ExceptionStackContext context([&handled, me](std::exception_ptr error) {
      handled.push_back("handler of " + std::to_string(me) + " got " + what_of(error));
      return true;
    });
    for (int round = 0; round < 20; ++round) {
      Promise<void> woken;
      Future<void> woken_future = woken.get_future();
      loop_.add_callback([&woken, &id, me] {
        EXPECT_EQ(*id.get(), me);
        woken.set_value();
        throw std::runtime_error(std::to_string(me));
      });
      wait_for_future(woken_future);  // the other fiber runs meanwhile
      resumed.push_back(me);
      ASSERT_NE(id.get(), nullptr);
      EXPECT_EQ(*id.get(), me);
    }
  };
  run_in_fiber([&] {
    Future<void> one = loop_.spawn([&] { request(1); });
    Future<void> two = loop_.spawn([&] { request(2); });
    loop_.add_callback([&] { outside.push_back(id.get() ? "set" : "unset"); });
    wait_for_future(one);
    wait_for_future(two);
    EXPECT_EQ(id.get(), nullptr);
  });
  ASSERT_EQ(resumed.size(), 40u);
  EXPECT_NE(std::find(resumed.begin(), resumed.begin() + 4, 2), resumed.begin() + 4) << "the fibers did not interleave";
  EXPECT_EQ(std::count(handled.begin(), handled.end(), "handler of 1 got 1"), 20);
  EXPECT_EQ(std::count(handled.begin(), handled.end(), "handler of 2 got 2"), 20);
  EXPECT_EQ(handled.size(), 40u);
  EXPECT_EQ(outside, std::vector<std::string>{"unset"});
}

TEST_F(FiberContextTest, SpawnedFiberStartsWithItsSpawnersChainAndChangesOnlyItsOwn) {
  ContextLocal<std::string> tag;
  std::vector<std::string> log;
  run_in_fiber([&] {
    auto scope = tag.set("parent");
    ExceptionStackContext context([&](std::exception_ptr error) {
      log.push_back("handled " + what_of(error));
      return true;
    });
    Future<void> child = loop_.spawn([&] {
      log.push_back("child starts with " + *tag.get());
      auto own = tag.set("child");
      sleep_for(1ms);  // the parent runs meanwhile
      log.push_back("child still has " + *tag.get());
      loop_.add_callback([] { throw std::runtime_error("from the child's callback"); });
    });
    sleep_for(0ms);
    log.push_back("parent still has " + *tag.get());
    wait_for_future(child);
    // An exception escaping a fiber fails its future; it does not go to the handler.
    Future<void> failing = loop_.spawn([] { throw std::runtime_error("from a fiber body"); });
    EXPECT_THROW(wait_for_future(failing), std::runtime_error);
    sleep_for(1ms);  // lets the child's callback run
  });
  EXPECT_EQ(log, (std::vector<std::string>{"child starts with parent", "parent still has parent",
                                           "child still has child", "handled from the child's callback"}));
}

TEST_F(FiberContextTest, UnhandledReportNamesTheFiberACallbackCameFrom) {
  ReportLog reports(loop_);
  run_in_fiber([&] {
    Future<void> named = loop_.spawn("request-7", [&] {
      loop_.add_callback([] { throw std::length_error("boom"); });
      // An unnamed fiber it spawns is not blamed on it.
      wait_for_future(loop_.spawn([&] { loop_.add_callback([] { throw std::length_error("anonymous"); }); }));
    });
    wait_for_future(named);
    sleep_for(1ms);
  });
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].first, "boom");
  EXPECT_EQ(reports[0].second, "a callback registered in fiber \"request-7\"");
  EXPECT_EQ(reports[1].first, "anonymous");
  EXPECT_EQ(reports[1].second, "a callback");
}

TEST_F(FiberContextTest, DefaultReportPrintsTypeMessageAndFiberName) {
  const std::string printed = capture_stderr([&] {
    run_in_fiber([&] {
      wait_for_future(loop_.spawn("checkout", [&] { loop_.add_callback([] { throw std::length_error("too long"); }); }));
      sleep_for(1ms);
    });
  });
  EXPECT_NE(printed.find("std::length_error: too long"), std::string::npos) << printed;
  EXPECT_NE(printed.find("fiber \"checkout\""), std::string::npos) << printed;
}

// ---- errors nobody retrieved --------------------------------------------------------

TEST_F(FiberContextTest, FailedFiberFutureDroppedUnreadIsReportedOnce) {
  ReportLog reports(loop_);
  run_in_fiber([&] {
    {
      Future<void> lost = loop_.spawn("lost-request", [] { throw std::runtime_error("nobody reads me"); });
      Promise<void> finished;
      Future<void> finished_future = finished.get_future();
      lost.add_done_callback([&](const Future<void>&) { finished.set_value(); });  // does not read the error
      wait_for_future(finished_future);
      EXPECT_TRUE(reports.empty()) << "reported while a handle still existed";
    }  // the last handle goes here
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_EQ(reports[0].first, "nobody reads me");
    EXPECT_NE(reports[0].second.find("fiber \"lost-request\""), std::string::npos) << reports[0].second;
    EXPECT_NE(reports[0].second.find("without anyone retrieving the error"), std::string::npos);

    // Fire and forget: the fiber holds the last reference itself.
    (void)loop_.spawn([] { throw std::runtime_error("fire and forget"); });
    sleep_for(1ms);
    ASSERT_EQ(reports.size(), 2u);
    EXPECT_EQ(reports[1].first, "fire and forget");
    EXPECT_NE(reports[1].second.find("a fiber"), std::string::npos);
  });
  EXPECT_EQ(reports.size(), 2u) << "reported more than once";
}

TEST_F(FiberContextTest, DefaultReportOfAnUnretrievedErrorNamesTypeMessageAndFiber) {
  const std::string printed = capture_stderr([&] {
    run_in_fiber([&] {
      (void)loop_.spawn("lost-checkout", [] { throw std::out_of_range("no such cart"); });
      sleep_for(1ms);
    });
  });
  EXPECT_NE(printed.find("std::out_of_range: no such cart"), std::string::npos) << printed;
  EXPECT_NE(printed.find("fiber \"lost-checkout\""), std::string::npos) << printed;
  EXPECT_NE(printed.find("without anyone retrieving the error"), std::string::npos) << printed;
}

TEST_F(FiberContextTest, FailedFiberFutureWhoseErrorWasReadIsNotReported) {
  ReportLog reports(loop_);
  run_in_fiber([&] {
    {
      Future<void> waited = loop_.spawn("waited", [] { throw std::runtime_error("read by wait_for_future"); });
      EXPECT_THROW(wait_for_future(waited), std::runtime_error);
    }
    {
      Future<int> asked = loop_.spawn("asked", []() -> int { throw std::runtime_error("read by exception()"); });
      Promise<void> finished;
      Future<void> finished_future = finished.get_future();
      asked.add_done_callback([&](const Future<int>& done) {
        EXPECT_EQ(what_of(done.exception()), "read by exception()");
        finished.set_value();
      });
      wait_for_future(finished_future);
    }
    {
      Future<void> with_deadline = with_timeout(loop_.spawn([] { throw std::runtime_error("passed on"); }), 1s);
      EXPECT_THROW(wait_for_future(with_deadline), std::runtime_error);
    }
    // Not an error of the program: the loop ending under the fiber.
    (void)loop_.spawn([] { throw LoopClosed("closing"); });
    sleep_for(1ms);
  });
  EXPECT_TRUE(reports.empty()) << reports[0].first << " in " << reports[0].second;
}

// ---- seed 000: a memcached client with timeouts, on stack contexts ---------------------

class MemcacheError : public Error {
 public:
  using Error::Error;
};

/// A fake memcached server: answers after 1 ms, never, or with garbage.
struct FakeServer {
  enum class Mode { answers, silent, garbage };
  explicit FakeServer(Mode m) : mode(m) {}
  Mode mode;
  bool dead = false;
  std::string dead_because;

  void mark_dead(std::string reason) {
    dead = true;
    dead_because = std::move(reason);
  }
  void request(IOLoop& loop, const std::string& key, std::function<void(std::string)> on_reply) {
    if (mode == Mode::silent) return;
    loop.call_later(1ms, [this, key, on_reply] {
      if (mode == Mode::garbage) throw MemcacheError("bad reply from the server");
      on_reply("value of " + key);
    });
  }
};

/// The seed's asynchronous client: errors anywhere in a request's callbacks reach
/// the ExceptionStackContext installed at the call site and become fail_callback;
/// the request timeout is removed on every exit path.
class MemcacheClient {
 public:
  MemcacheClient(IOLoop& loop, FakeServer& server, std::chrono::milliseconds timeout)
      : loop_(loop), server_(server), timeout_(timeout) {}

  void get(const std::string& key, std::function<void(std::string)> callback,
           std::function<void(std::string)> fail_callback) {
    in_get_ = true;
    ExceptionStackContext context([this, fail_callback](std::exception_ptr error) {
      EXPECT_FALSE(in_get_) << "the error was expected after the request's scope ended";
      remove_timeout();  // exit path: an error
      try {
        std::rethrow_exception(error);
      } catch (const MemcacheError& e) {
        fail_callback(e.what());
        return true;
      } catch (...) {
        return false;
      }
    });
    timer_ = loop_.call_later(timeout_, [this] { on_timeout(); });
    server_.request(loop_, key, [this, callback](std::string value) {
      remove_timeout();  // exit path: the answer
      callback(std::move(value));
    });
    in_get_ = false;
  }

  int timeouts_fired = 0;

 private:
  void on_timeout() {
    timer_ = TimeoutHandle();
    ++timeouts_fired;
    server_.mark_dead("Time out");
    throw MemcacheError("memcache call timeout");
  }
  void remove_timeout() {
    if (timer_ != TimeoutHandle()) {
      loop_.remove_timeout(timer_);
      timer_ = TimeoutHandle();
    }
  }

  IOLoop& loop_;
  FakeServer& server_;
  std::chrono::milliseconds timeout_;
  TimeoutHandle timer_;
  bool in_get_ = false;
};

TEST_F(FiberContextTest, Seed000MemcacheTimeoutReachesTheRequestsFailCallback) {
  ReportLog reports(loop_);
  constexpr auto kTimeout = 20ms;
  struct Outcome {
    std::string result;
    int timeouts_fired;
    bool server_dead;
    std::string dead_because;
  };
  auto run_request = [&](FakeServer::Mode mode) {
    FakeServer server(mode);
    MemcacheClient client(loop_, server, kTimeout);
    // Outlives the request: a second outcome would throw PromiseAlreadySatisfied.
    Promise<std::string> outcome;
    // The "request": a fiber that asks the client and waits for either callback.
    Future<std::string> request = loop_.spawn("memcache-request", [&] {
      Future<std::string> outcome_future = outcome.get_future();
      client.get(
          "user:1", [&](std::string value) { outcome.set_value("value: " + value); },
          [&](std::string why) { outcome.set_value("failed: " + why); });
      return wait_for_future(outcome_future, 2s);
    });
    std::string result = wait_for_future(request);
    sleep_for(3 * kTimeout);  // long enough for a timeout left behind to fire (again)
    return Outcome{result, client.timeouts_fired, server.dead, server.dead_because};
  };
  run_in_fiber([&] {
    const Outcome silent = run_request(FakeServer::Mode::silent);
    EXPECT_EQ(silent.result, "failed: memcache call timeout");
    EXPECT_EQ(silent.timeouts_fired, 1) << "the timeout fired twice";
    EXPECT_TRUE(silent.server_dead);
    EXPECT_EQ(silent.dead_because, "Time out");

    const Outcome answered = run_request(FakeServer::Mode::answers);
    EXPECT_EQ(answered.result, "value: value of user:1");
    EXPECT_EQ(answered.timeouts_fired, 0) << "the timeout was not removed when the answer came";
    EXPECT_FALSE(answered.server_dead);

    const Outcome garbage = run_request(FakeServer::Mode::garbage);
    EXPECT_EQ(garbage.result, "failed: bad reply from the server");
    EXPECT_EQ(garbage.timeouts_fired, 0) << "the timeout was not removed on the error path";
    EXPECT_FALSE(garbage.server_dead);
  });
  EXPECT_TRUE(reports.empty());
}

}  // namespace
}  // namespace fiberloop
