#pragma once
// Test support: a real server program (memcached, mariadbd) run as a child of the test
// process, and what starting one needs — a free loopback port, a program in $PATH.
// Used by MemcachedServer and MariadbServer.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fiberloop::testing {

/// A loopback port free a moment ago (the kernel's pick for port 0): another process
/// may take it before the server binds it, so callers retry on "address in use".
std::uint16_t free_loopback_port();

/// The path of `name` in $PATH, or "" (/usr/sbin and /sbin are searched too: Debian
/// puts mariadbd there).
std::string find_in_path(const std::string& name);

/// One run of a server program: in its own process group, its stdout and stderr kept
/// in memory (output()), stdin from /dev/null. Started from the main thread, it is
/// killed with the test process if that dies first (a crash, an abort:
/// PR_SET_PDEATHSIG); started from another thread, which might end before the
/// process, it is not. Thread: any, one at a time.
class ServerProcess {
 public:
  ServerProcess() = default;
  /// kill().
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  /// Starts `argv` (argv[0] a path); what it printed before is forgotten. Throws
  /// std::system_error when it cannot fork (a failed exec shows as exit status 127
  /// and a line in output()); std::logic_error while it still runs.
  void start(std::vector<std::string> argv);
  /// Its process id while it runs, else -1.
  pid_t pid() const noexcept { return pid_; }
  bool running() const noexcept { return pid_ > 0; }
  /// Nothing while it runs; once it has ended, how ("exited with status 1", "was
  /// killed by signal 9"). Never blocks.
  std::optional<std::string> ended();
  /// Sends `signal` to its group, waits up to `grace` for it to end, then SIGKILLs
  /// it; reaps it. Returns true when it ended within `grace`. Blocks the calling
  /// thread (a fiber too: call it outside fibers or through run_blocking).
  bool stop(int signal, std::chrono::milliseconds grace) noexcept;
  /// SIGKILL, and reaps it: once this returns its ports are closed. No-op when it
  /// is not running.
  void kill() noexcept;
  /// What it printed to stdout and stderr in its last run.
  std::string output() const;
  /// The last `max_bytes` of output(), from a line start when one is near.
  std::string output_tail(std::size_t max_bytes) const;

 private:
  pid_t pid_ = -1;
  int output_fd_ = -1;  // memfd holding the program's stdout and stderr
  std::optional<std::string> ended_;
};

}  // namespace fiberloop::testing
