#pragma once
// Small utilities the tests share: an error type of our own, a destruction counter,
// pipes, descriptor counts, child processes, stderr capture, and a record of what
// reaches a loop's unhandled-exception report.

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fiberloop/fiberloop.hpp>

namespace fiberloop::testing {

/// An error type of our own, to check that exceptions keep their dynamic type.
class CustomError : public std::runtime_error {
 public:
  explicit CustomError(int code) : CustomError("custom error " + std::to_string(code), code) {}
  CustomError(const std::string& what, int code) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// Counts its destructions: RAII on a fiber's stack runs only if the fiber unwinds.
struct Counted {
  explicit Counted(int& n) : count(&n) {}
  Counted(const Counted& other) : count(other.count) {}
  Counted& operator=(const Counted&) = delete;
  ~Counted() { ++*count; }
  int* count;
};

/// A non-blocking pipe, closed on scope exit.
struct Pipe {
  int read_fd = -1;
  int write_fd = -1;
  Pipe();
  ~Pipe();
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void write_byte() const;
  void read_byte() const;
};

/// How many file descriptors this process has open.
std::size_t open_fd_count();

/// The highest open file descriptor number of this process.
int highest_fd();

/// How many memory mappings this process has (lines of /proc/self/maps).
std::size_t memory_mappings();

/// Runs `body` in a forked child process (for tests that change process-wide state,
/// such as RLIMIT_NOFILE, or that may crash) and waits for it. `body` returns an
/// empty string when all its checks passed, else what failed. Returns that text, or
/// says how the child died or that it threw.
std::string run_in_child(const std::function<std::string()>& body);

/// Runs `fn` and returns what it printed to stderr (captured even if `fn` throws).
std::string capture_stderr(const std::function<void()>& fn);

/// A fiber of `loop` that notes the time whenever it runs, every millisecond, until
/// stop(): shows whether the loop kept running other fibers while one waited.
/// Judged by when it ran, not by how often, so a loaded machine cannot fail it.
/// stop() must be called (in a fiber of the loop) before it goes.
class Ticker {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  explicit Ticker(IOLoop& loop);
  ~Ticker();
  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;

  /// Fiber: waits for the ticker's fiber to end.
  void stop();
  /// True when it ran at some moment strictly between `from` and `to`.
  bool ran_between(time_point from, time_point to) const;
  std::size_t ticks() const noexcept { return ticks_.size(); }

 private:
  bool stopping_ = false;
  std::vector<time_point> ticks_;
  Future<void> fiber_;
};

/// Records what reaches `loop`'s unhandled-exception report, from any thread, until
/// it is destroyed (then the loop's default report is back).
class ReportLog {
 public:
  using Entry = std::pair<std::string, std::string>;  ///< the error's what(), where it came from

  explicit ReportLog(IOLoop& loop);
  ~ReportLog();
  ReportLog(const ReportLog&) = delete;
  ReportLog& operator=(const ReportLog&) = delete;
  std::vector<Entry> entries() const;
  std::size_t size() const { return entries().size(); }
  bool empty() const { return size() == 0; }
  Entry operator[](std::size_t i) const { return entries().at(i); }

 private:
  IOLoop& loop_;
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
};

}  // namespace fiberloop::testing
