#pragma once
// The blocking-call watchdog (IOLoop::Options::watchdog_threshold). Internal.

namespace fiberloop::detail {

/// Watches one loop from a thread of its own (to be built: see issue 12).
class Watchdog {
 public:
  Watchdog() = default;
};

}  // namespace fiberloop::detail
