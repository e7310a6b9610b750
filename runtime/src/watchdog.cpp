// The blocking-call watchdog (watchdog.hpp).

#include "watchdog.hpp"

#include <pthread.h>

#include <algorithm>

#include <fiberloop/detail/loop_counters.hpp>
#include <fiberloop/io_loop.hpp>

#include "loop_internals.hpp"
#include "symbolizer.hpp"

namespace fiberloop::detail {

namespace {

/// A quarter of the threshold, within [1 ms, 250 ms]: fine enough to report close to
/// the threshold, coarse enough to cost nothing.
std::chrono::nanoseconds sampling_step(std::chrono::nanoseconds threshold) {
  return std::clamp<std::chrono::nanoseconds>(threshold / 4, std::chrono::milliseconds(1),
                                              std::chrono::milliseconds(250));
}

long long whole_ms(std::chrono::nanoseconds d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

/// `fiber "name" (request_id=42)`, `a callback registered in fiber "name"`, ...
std::string culprit_of(const ThreadSnapshot& snapshot) {
  std::string who;
  if (snapshot.on_fiber) {
    who = snapshot.has_fiber_name ? "fiber \"" + snapshot.fiber_name + "\"" : std::string("an unnamed fiber");
  } else {
    who = "a callback";
    if (snapshot.has_fiber_name) who += " registered in fiber \"" + snapshot.fiber_name + "\"";
  }
  if (!snapshot.report_values.empty()) who += " (" + snapshot.report_values + ")";
  return who;
}

}  // namespace

Watchdog::Watchdog(IOLoop& loop, std::chrono::nanoseconds threshold, std::chrono::milliseconds snapshot_patience)
    : loop_(loop),
      counters_(LoopInternals::counters(loop)),
      threshold_(threshold),
      step_(sampling_step(threshold)),
      snapshot_patience_(snapshot_patience),
      snapshotter_(counters_.slice_serial),
      thread_([this] { run(); }) {
  ::pthread_setname_np(thread_.native_handle(), "fl-watchdog");  // for top, gdb, /proc/*/task/*/comm
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(lock_);
    stopping_.store(true, std::memory_order_relaxed);
  }
  wake_.notify_one();
  thread_.join();
}

void Watchdog::run() noexcept {
  last_sample_ = clock::now();
  std::unique_lock lock(lock_);
  while (!stopping_.load(std::memory_order_relaxed)) {
    wake_.wait_for(lock, step_, [this] { return stopping_.load(std::memory_order_relaxed); });
    if (stopping_.load(std::memory_order_relaxed)) break;
    lock.unlock();
    try {
      sample(clock::now());
    } catch (...) {  // out of memory for a report: the next sample tries again
    }
    lock.lock();
  }
  lock.unlock();
  // The loop is being destroyed on its thread: a slice reported as blocking is over.
  try {
    end_slice(clock::now());
  } catch (...) {
  }
}

void Watchdog::sample(clock::time_point now) {
  const std::uint64_t serial = counters_.slice_serial.load(std::memory_order_relaxed);
  const bool idle = counters_.polling.load(std::memory_order_relaxed) || !loop_.running();
  if (idle || !watching_ || serial != serial_) {
    end_slice(now);
    if (!idle) {
      watching_ = true;
      serial_ = serial;
      before_first_seen_ = last_sample_;
      first_seen_ = last_seen_ = now;
      reported_ = false;
    }
  } else {
    last_seen_ = now;
    // A lower bound: the slice began before it was first seen.
    const std::chrono::nanoseconds so_far = now - first_seen_;
    std::int64_t longest = counters_.longest_slice_ns.load(std::memory_order_relaxed);
    if (so_far.count() > longest) counters_.longest_slice_ns.store(so_far.count(), std::memory_order_relaxed);
    if (!reported_ && so_far >= threshold_) report_blocking(now);
  }
  last_sample_ = clock::now();  // after a report, which may take a while
}

void Watchdog::report_blocking(clock::time_point now) {
  reported_ = true;
  counters_.watchdog_reports.fetch_add(1, std::memory_order_relaxed);
  ThreadSnapshot snapshot;
  std::string why_not;
  bool captured = snapshotter_.capture(snapshot, why_not, snapshot_patience_, stopping_);
  if (captured && snapshot.slice_serial != serial_) {
    captured = false;
    why_not = "the slice ended while its stack was being captured";
  }
  std::string report = "fiberloop: watchdog: the loop has been blocked for " + std::to_string(whole_ms(now - first_seen_)) +
                       " ms by ";
  if (captured) {
    culprit_ = culprit_of(snapshot);
    report += culprit_ + "; the stack of the loop's thread:\n" + describe_frames(snapshot.frames);
  } else {
    culprit_ = "a callback or fiber";
    report += culprit_ + " (its stack could not be captured: " + why_not + ")\n";
  }
  LoopInternals::emit_report(loop_, report);
}

void Watchdog::end_slice(clock::time_point now) {
  if (!watching_) return;
  watching_ = false;
  if (!reported_) return;
  // An upper bound: from the last sample before the slice was seen to now.
  const std::string report = "fiberloop: watchdog: the loop was blocked for " +
                             std::to_string(whole_ms(now - before_first_seen_)) + " ms in total by " + culprit_ + "\n";
  LoopInternals::emit_report(loop_, report);
}

}  // namespace fiberloop::detail
