#pragma once
// The blocking-call watchdog (IOLoop::Options::watchdog_threshold). Internal.
//
// A thread per watched loop samples the loop's LoopCounters every quarter threshold:
// a slice_serial that stays put while the loop runs and is not polling means one
// callback or fiber slice holds the loop. Once that has lasted the threshold, the
// watchdog reports it while it still blocks, with a snapshot of the loop's thread
// (thread_snapshot.hpp: its stack, fiber name and report values), and once more with
// the total when the slice ends. The loop's thread pays only the relaxed stores it
// makes into LoopCounters anyway.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "thread_snapshot.hpp"

namespace fiberloop {
class IOLoop;
}

namespace fiberloop::detail {

struct LoopCounters;

/// Watches one loop from a thread of its own.
class Watchdog {
 public:
  using clock = std::chrono::steady_clock;

  /// How long the watchdog waits for the loop's thread to answer its signal.
  static constexpr std::chrono::milliseconds kSnapshotPatience{100};

  /// Starts watching `loop`. Thread: the loop's own (its stack is the one captured).
  Watchdog(IOLoop& loop, std::chrono::nanoseconds threshold,
           std::chrono::milliseconds snapshot_patience = kSnapshotPatience);
  /// Stops the thread and joins it (promptly: it abandons a capture in flight).
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void run() noexcept;
  void sample(clock::time_point now);
  void end_slice(clock::time_point now);
  void report_blocking(clock::time_point now);

  IOLoop& loop_;
  LoopCounters& counters_;
  const std::chrono::nanoseconds threshold_;
  const std::chrono::nanoseconds step_;  // between samples
  const std::chrono::milliseconds snapshot_patience_;
  ThreadSnapshotter snapshotter_;

  std::mutex lock_;
  std::condition_variable wake_;
  std::atomic<bool> stopping_{false};

  // The slice being watched (the watchdog's thread only).
  bool watching_ = false;
  std::uint64_t serial_ = 0;
  clock::time_point before_first_seen_{};  // the last sample that had not seen it
  clock::time_point first_seen_{};
  clock::time_point last_seen_{};
  clock::time_point last_sample_{};
  bool reported_ = false;
  std::string culprit_;  // `fiber "name" (request_id=42)`, for the closing report

  std::thread thread_;  // last: starts once the rest is ready
};

}  // namespace fiberloop::detail
