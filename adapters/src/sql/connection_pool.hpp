#pragma once
// ConnectionPool<C>: connections to one server, shared by the fibers of one loop.
// Generic over the connection: the SQL pool uses it with SqlConnection, the tests with
// a fake. A connection C offers
//   bool still_open() noexcept  — checked before an idle connection is handed out;
//   bool usable() const noexcept — checked when it comes back: false discards it.
//
// At most max_connections exist at once (a Semaphore of that many permits: waiters
// are served first come, first served, and a wait past acquire_timeout fails only that
// waiter). Connections are opened lazily by the factory, reused most recently used
// first (its caches are warm; an old idle one is checked anyway), and a broken one is
// dropped, so the next acquire opens a fresh one.
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/detail/wait_label.hpp>
#include <fiberloop/errors.hpp>
#include <fiberloop/semaphore.hpp>
#include <fiberloop/stack_context.hpp>

namespace fiberloop::detail {

struct ConnectionPoolStats {
  std::size_t open = 0;
  std::size_t idle = 0;
  std::size_t in_use = 0;
  std::size_t waiting = 0;
};

/// Thread: one loop's; acquire() from its fibers. Make it with std::make_shared: a
/// lease keeps the pool alive.
template <class C>
class ConnectionPool : public std::enable_shared_from_this<ConnectionPool<C>> {
 public:
  using Deadline = std::chrono::steady_clock::time_point;
  using Factory = std::function<std::unique_ptr<C>(Deadline)>;

  /// A connection on loan: given back (or dropped, if no longer usable) on every exit.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept
        : pool_(std::move(other.pool_)), connection_(std::move(other.connection_)) {}
    Lease& operator=(Lease&& other) noexcept {
      if (this != &other) {
        give_back();
        pool_ = std::move(other.pool_);
        connection_ = std::move(other.connection_);
      }
      return *this;
    }
    ~Lease() { give_back(); }

    C& operator*() const noexcept { return *connection_; }
    C* operator->() const noexcept { return connection_.get(); }
    explicit operator bool() const noexcept { return connection_ != nullptr; }

    /// Closes the connection instead of giving it back (its state is unknown).
    void discard() noexcept {
      if (!connection_) return;
      connection_.reset();
      pool_->dropped();
      pool_.reset();
    }

   private:
    friend class ConnectionPool;
    Lease(std::shared_ptr<ConnectionPool> pool, std::unique_ptr<C> connection) noexcept
        : pool_(std::move(pool)), connection_(std::move(connection)) {}
    void give_back() noexcept {
      if (!connection_) return;
      if (connection_->usable()) {
        pool_->returned(std::move(connection_));
        pool_.reset();
      } else {
        discard();
      }
    }

    std::shared_ptr<ConnectionPool> pool_;
    std::unique_ptr<C> connection_;
  };

  /// `name` says which pool in messages ("SqlDatabase sqlite:/tmp/x.db").
  ConnectionPool(std::string name, std::size_t max_connections, std::chrono::nanoseconds acquire_timeout,
                 Factory factory)
      : name_(std::move(name)),
        max_connections_(max_connections),
        acquire_timeout_(acquire_timeout),
        factory_(std::move(factory)),
        permits_(max_connections) {}

  /// An idle connection that is still open, or a new one. TimeoutError when none is
  /// free within acquire_timeout (only this waiter fails); what the factory throws
  /// when opening one fails. Fiber: the pool's loop.
  Lease acquire() {
    const Deadline deadline = deadline_after(acquire_timeout_);
    try {
      const WaitLabel label("connection pool acquire", name_);
      permits_.acquire(acquire_timeout_);
    } catch (const TimeoutError&) {
      if (const auto request = ::fiberloop::Deadline::current(); request && std::chrono::steady_clock::now() >= *request) throw;
      throw TimeoutError(name_ + ": no free connection within " + milliseconds(acquire_timeout_) +
                         " (all " + std::to_string(max_connections_) +
                         " in use: raise max_connections or acquire_timeout, or shorten what holds them)");
    }
    // The permit is ours: a connection comes back to the pool or the permit does.
    while (!idle_.empty()) {
      std::unique_ptr<C> connection = std::move(idle_.back());
      idle_.pop_back();
      if (connection->still_open()) {
        ++in_use_;
        return Lease(this->shared_from_this(), std::move(connection));
      }
      // Closed while idle (a server restart, a KILL, a timeout on its side): drop it
      // and try the next; if none is left, open a fresh one.
    }
    std::unique_ptr<C> connection;
    try {
      connection = factory_(deadline);
    } catch (...) {
      permits_.release();
      throw;
    }
    ++in_use_;
    return Lease(this->shared_from_this(), std::move(connection));
  }

  ConnectionPoolStats stats() const noexcept {
    return {idle_.size() + in_use_, idle_.size(), in_use_, permits_.waiting()};
  }

  /// Closes the idle connections and every one given back from now on.
  void close() noexcept {
    closed_ = true;
    idle_.clear();
  }

 private:
  void returned(std::unique_ptr<C> connection) noexcept {
    --in_use_;
    if (!closed_) idle_.push_back(std::move(connection));
    connection.reset();  // closed (pool closed): before the permit goes to a waiter
    permits_.release();
  }
  void dropped() noexcept {
    --in_use_;
    permits_.release();
  }
  static std::string milliseconds(std::chrono::nanoseconds d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
  }

  const std::string name_;
  const std::size_t max_connections_;
  const std::chrono::nanoseconds acquire_timeout_;
  Factory factory_;
  Semaphore permits_;
  std::vector<std::unique_ptr<C>> idle_;  // most recently returned last
  std::size_t in_use_ = 0;
  bool closed_ = false;
};

}  // namespace fiberloop::detail
