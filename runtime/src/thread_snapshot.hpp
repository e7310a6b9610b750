#pragma once
// Capturing another thread's stack, fiber name and report values while it runs (the
// watchdog's view of a blocked loop). Internal.
//
// The capture is a real-time signal, kSnapshotSignal, sent with pthread_sigqueue() to
// the thread: its handler, on that thread, copies the raw return addresses (glibc's
// backtrace()), the running fiber's name and its reported ContextLocal values into a
// fixed slot (no allocation: async-signal-safe) and publishes them with a release
// store; the asking thread waits for that, bounded, and names the functions off the
// handler (symbolizer.hpp).

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace fiberloop::detail {

/// SIGRTMIN + this is the signal the watchdog sends to a blocked loop's thread. The
/// handler is installed once per process, at the first watchdog, unless the program
/// already has a handler for that signal (then stacks are not captured).
inline constexpr int kSnapshotSignalOffset = 6;

/// What a capture found on the thread.
struct ThreadSnapshot {
  /// Innermost first: frames[0] is where the thread was interrupted, the rest are
  /// return addresses.
  std::vector<std::uintptr_t> frames;
  bool on_fiber = false;         // the thread ran on a fiber's stack (else its own)
  std::string fiber_name;        // the innermost fiber name in the active contexts
  bool has_fiber_name = false;   // false: no named fiber in the active contexts
  std::string report_values;     // "request_id=42, user=ann"
  std::uint64_t slice_serial = 0;  // LoopCounters::slice_serial when captured
};

/// Captures snapshots of one thread. Owns one of a fixed number of process-wide
/// slots the signal handler writes into. capture(): from any thread but that one.
class ThreadSnapshotter {
 public:
  /// Captures the calling thread (its stack bounds are read here, to tell its own
  /// stack from a fiber's); the handler also reads `slice_serial` there.
  explicit ThreadSnapshotter(const std::atomic<std::uint64_t>& slice_serial);
  ~ThreadSnapshotter();
  ThreadSnapshotter(const ThreadSnapshotter&) = delete;
  ThreadSnapshotter& operator=(const ThreadSnapshotter&) = delete;

  /// Signals the thread and waits up to `patience` for its answer (polling each
  /// millisecond, and giving up early once `cancelled` is true). True with `out`
  /// filled, or false with `why_not` saying why no snapshot could be taken.
  bool capture(ThreadSnapshot& out, std::string& why_not, std::chrono::milliseconds patience,
               const std::atomic<bool>& cancelled);

 private:
  pthread_t thread_;
  int slot_ = -1;        // -1: none (see why_unavailable_)
  std::string why_unavailable_;
};

}  // namespace fiberloop::detail
