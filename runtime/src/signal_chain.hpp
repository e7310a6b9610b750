#pragma once
// fiberloop installs process-wide signal handlers (SIGUSR1 for dumps, SIGSEGV/SIGBUS
// for stack overflows); a handler the program had before still runs. Internal.

#include <csignal>

namespace fiberloop::detail {

/// Calls the handler `previous` (saved by our sigaction()) names. False when it names
/// the default action or SIG_IGN: the caller decides what that means. Async-signal-safe.
inline bool call_previous_handler(const struct sigaction& previous, int signal, siginfo_t* info,
                                  void* context) noexcept {
  if (previous.sa_flags & SA_SIGINFO) {
    if (!previous.sa_sigaction) return false;
    previous.sa_sigaction(signal, info, context);
    return true;
  }
  if (previous.sa_handler == SIG_DFL || previous.sa_handler == SIG_IGN) return false;
  previous.sa_handler(signal);
  return true;
}

}  // namespace fiberloop::detail
