// ConnectionPool<C> on its own, with connections that only count: lazy opening, the
// cap, waiting in line with a bound, idle connections checked before reuse, broken
// ones replaced, every exit path giving the connection back.

#include <stdexcept>

#include "sql/connection_pool.hpp"
#include "support/loop_test.hpp"

namespace fiberloop::testing {
namespace {

using namespace std::chrono_literals;

struct FakeConnection {
  int id = 0;
  bool open = true;    // what still_open() answers
  bool broken = false;  // what usable() denies
  bool still_open() noexcept { return open; }
  bool usable() const noexcept { return !broken; }
};

using Pool = detail::ConnectionPool<FakeConnection>;

class ConnectionPoolTest : public LoopTest {
 protected:
  std::shared_ptr<Pool> make_pool(std::size_t max, std::chrono::nanoseconds acquire_timeout = 5s) {
    return std::make_shared<Pool>("test pool", max, acquire_timeout, [this](Pool::Deadline) {
      if (fail_next_open_) {
        fail_next_open_ = false;
        throw std::runtime_error("cannot connect");
      }
      auto c = std::make_unique<FakeConnection>();
      c->id = ++opened_;
      return c;
    });
  }

  int opened_ = 0;
  bool fail_next_open_ = false;
};

TEST_F(ConnectionPoolTest, OpensLazilyAndReusesTheMostRecentlyReturned) {
  run_in_fiber([&] {
    auto pool = make_pool(4);
    EXPECT_EQ(opened_, 0) << "nothing is opened before it is needed";
    {
      Pool::Lease a = pool->acquire();
      Pool::Lease b = pool->acquire();
      EXPECT_EQ(a->id, 1);
      EXPECT_EQ(b->id, 2);
      EXPECT_EQ(pool->stats().in_use, 2u);
      EXPECT_EQ(pool->stats().idle, 0u);
    }
    EXPECT_EQ(pool->stats().idle, 2u);
    EXPECT_EQ(pool->stats().open, 2u);
    Pool::Lease again = pool->acquire();
    EXPECT_EQ(again->id, 1) << "a was returned last (destroyed after b): it is reused first";
    EXPECT_EQ(opened_, 2);
  });
}

TEST_F(ConnectionPoolTest, NeverHoldsMoreThanMaxAndServesWaitersInOrder) {
  run_in_fiber([&] {
    auto pool = make_pool(2);
    std::vector<int> served;
    std::size_t most_in_use = 0;
    std::vector<Future<void>> fibers;
    for (int i = 0; i < 10; ++i) {
      fibers.push_back(IOLoop::current().spawn([&, i] {
        Pool::Lease lease = pool->acquire();
        served.push_back(i);
        most_in_use = std::max(most_in_use, pool->stats().in_use);
        sleep_for(2ms);
      }));
    }
    for (auto& f : fibers) wait_for_future(f);
    EXPECT_EQ(most_in_use, 2u);
    EXPECT_EQ(opened_, 2);
    EXPECT_EQ(served, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})) << "first come, first served";
    const auto end = pool->stats();
    EXPECT_EQ(end.in_use, 0u);
    EXPECT_EQ(end.waiting, 0u);
    EXPECT_EQ(end.idle, 2u);
  });
}

TEST_F(ConnectionPoolTest, AnExhaustedPoolTimesOutOnlyTheWaiter) {
  run_in_fiber([&] {
    auto pool = make_pool(1, 50ms);
    Pool::Lease held = pool->acquire();
    Future<void> waiter = IOLoop::current().spawn([&] { (void)pool->acquire(); });
    sleep_for(5ms);
    EXPECT_EQ(pool->stats().waiting, 1u);
    const std::string message = failure_of<TimeoutError>(waiter);
    EXPECT_NE(message.find("test pool"), std::string::npos) << message;
    EXPECT_NE(message.find("max_connections"), std::string::npos) << message;
    EXPECT_EQ(pool->stats().waiting, 0u);
    EXPECT_EQ(held->id, 1) << "the holder keeps its connection";
    held = Pool::Lease();
    EXPECT_EQ(pool->acquire()->id, 1) << "and the permit count is right afterwards";
  });
}

TEST_F(ConnectionPoolTest, AnIdleConnectionClosedMeanwhileIsReplaced) {
  run_in_fiber([&] {
    auto pool = make_pool(2);
    FakeConnection* first = nullptr;
    {
      Pool::Lease lease = pool->acquire();
      first = &*lease;
    }
    first->open = false;  // the server hung up while it sat idle
    Pool::Lease lease = pool->acquire();
    EXPECT_EQ(lease->id, 2);
    EXPECT_EQ(pool->stats().open, 1u) << "the closed one was dropped";
  });
}

TEST_F(ConnectionPoolTest, ABrokenConnectionIsDroppedAndItsPermitFreed) {
  run_in_fiber([&] {
    auto pool = make_pool(1, 50ms);
    try {
      Pool::Lease lease = pool->acquire();
      lease->broken = true;
      throw std::runtime_error("the query that hit it");
    } catch (const std::runtime_error&) {
    }
    EXPECT_EQ(pool->stats().open, 0u);
    EXPECT_EQ(pool->acquire()->id, 2) << "a fresh connection, without waiting for a permit";
  });
}

TEST_F(ConnectionPoolTest, AFailedOpenGivesItsErrorToThatCallerAndFreesThePermit) {
  run_in_fiber([&] {
    auto pool = make_pool(1, 50ms);
    fail_next_open_ = true;
    EXPECT_THROW((void)pool->acquire(), std::runtime_error);
    EXPECT_EQ(pool->stats().open, 0u);
    EXPECT_EQ(pool->acquire()->id, 1);
  });
}

TEST_F(ConnectionPoolTest, DiscardAndCloseDropConnections) {
  run_in_fiber([&] {
    auto pool = make_pool(2);
    Pool::Lease a = pool->acquire();
    a.discard();
    EXPECT_FALSE(a);
    EXPECT_EQ(pool->stats().open, 0u);
    Pool::Lease b = pool->acquire();
    Pool::Lease c = pool->acquire();
    b = Pool::Lease();
    pool->close();
    EXPECT_EQ(pool->stats().idle, 0u) << "close() drops the idle ones";
    c = Pool::Lease();
    EXPECT_EQ(pool->stats().open, 0u) << "and those given back later";
  });
}

}  // namespace
}  // namespace fiberloop::testing
