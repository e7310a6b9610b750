#pragma once
/// @file
/// The blocking bottoms' connection pool, as a legacy server hand-writes it: at most
/// `max` connections, made lazily, kept open between calls, handed out first come,
/// first served — a thread that frees one gives it to the longest waiter, so no thread
/// starves while newcomers barge in. Used for the HTTP backend's sockets
/// (blocking_backend.cpp) and the inventory database's connections
/// (sql_inventory_blocking.cpp). No fiberloop here. Thread: any.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../middle/backend.hpp"

namespace legacy {

/// `Connection` is default-constructible (not yet connected: the caller connects it
/// outside the pool's lock) and has `bool is_open() const noexcept`.
template <class Connection>
class BlockingPool {
 public:
  /// `what` names the connections in the timeout's message ("backend", "inventory database").
  explicit BlockingPool(std::string what) : what_(std::move(what)) {}

  /// Call once, before the first acquire().
  void configure(std::size_t max_connections, std::chrono::milliseconds timeout) {
    max_ = max_connections;
    timeout_ = timeout;
    idle_.reserve(max_connections);  // so release() cannot throw
  }

  /// A connection (not yet connected when !is_open()), or BackendError at the deadline.
  std::unique_ptr<Connection> acquire(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    if (waiters_.empty()) {
      if (!idle_.empty()) {
        std::unique_ptr<Connection> c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
      if (open_ < max_) {
        ++open_;
        return std::make_unique<Connection>();  // connected outside the lock
      }
    }
    Waiter me;
    waiters_.push_back(&me);
    if (!me.handed_over.wait_until(lock, deadline, [&] { return me.connection != nullptr; })) {
      std::erase(waiters_, &me);
      throw BackendError("no " + what_ + " connection free within " + std::to_string(timeout_.count()) + " ms");
    }
    return std::move(me.connection);
  }

  void release(std::unique_ptr<Connection> c) noexcept {
    std::lock_guard lock(mutex_);
    if (!waiters_.empty()) {  // a closed one too: the waiter reconnects in its place
      Waiter* next = waiters_.front();
      waiters_.pop_front();
      next->connection = std::move(c);
      next->handed_over.notify_one();
    } else if (c->is_open()) {
      idle_.push_back(std::move(c));  // reserved in configure(): cannot throw
    } else {
      --open_;
    }
  }

  /// Closes the idle connections (those lent out close when given back after this).
  void clear() noexcept {
    std::lock_guard lock(mutex_);
    open_ -= idle_.size();
    idle_.clear();
  }

 private:
  struct Waiter {
    std::condition_variable handed_over;
    std::unique_ptr<Connection> connection;
  };
  std::string what_;
  std::size_t max_ = 0;
  std::chrono::milliseconds timeout_{0};
  std::mutex mutex_;
  std::deque<Waiter*> waiters_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;  // idle, lent out, or being handed over
};

/// A connection lent by `pool` for one call; given back however the call ends.
template <class Connection>
class PoolLease {
 public:
  PoolLease(BlockingPool<Connection>& pool, std::chrono::steady_clock::time_point deadline)
      : pool_(pool), c_(pool.acquire(deadline)) {}
  ~PoolLease() { pool_.release(std::move(c_)); }
  PoolLease(const PoolLease&) = delete;
  PoolLease& operator=(const PoolLease&) = delete;
  Connection& operator*() const noexcept { return *c_; }
  Connection* operator->() const noexcept { return c_.get(); }

 private:
  BlockingPool<Connection>& pool_;
  std::unique_ptr<Connection> c_;
};

}  // namespace legacy
