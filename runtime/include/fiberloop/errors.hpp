#pragma once
/// @file
/// The exceptions fiberloop throws. Runtime failures derive from fiberloop::Error;
/// misuse (a call that could never succeed where it was made) is a std::logic_error.

#include <stdexcept>
#include <string>
#include <utility>

namespace fiberloop {

/// Base of every runtime failure fiberloop reports.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A wait, run_sync or connection attempt ran past its deadline.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

/// The Promise was destroyed without a value or an exception being set.
class BrokenPromise : public Error {
 public:
  BrokenPromise()
      : Error("broken promise: the Promise was destroyed before set_value() or set_exception()") {}
  using Error::Error;
};

/// The IOLoop that owns the waiting fiber is being destroyed; the wait cannot finish.
class LoopClosed : public Error {
 public:
  using Error::Error;
};

/// submit() was called after shutdown().
class ExecutorShutdown : public Error {
 public:
  using Error::Error;
};

/// run_sync() found its loop stuck (IOLoop::Options::throw_when_stuck): fibers
/// suspended and nothing registered that could wake them. what() includes the dump.
class StuckLoopError : public Error {
 public:
  StuckLoopError(const std::string& what, std::string dump) : Error(what), dump_(std::move(dump)) {}
  /// IOLoop::dump() at the moment the loop was found stuck.
  const std::string& dump() const noexcept { return dump_; }

 private:
  std::string dump_;
};

/// A blocking wait was attempted on a loop's thread outside any fiber, where it
/// would stop the loop from ever completing what it waits for.
class BlockingCallError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// Future::result() or exception() was called before the future was done.
class FutureNotDone : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// set_value() or set_exception() was called on a Promise that was already satisfied.
class PromiseAlreadySatisfied : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

}  // namespace fiberloop
