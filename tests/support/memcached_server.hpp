#pragma once
// Test support for the MemcacheClient tests: a real memcached (Debian's, started on a
// free loopback port and stopped after), and fault servers for what a real one won't
// do — one that never answers, one that answers whatever the test scripts.
//
// Everything here is usable from plain GoogleTest code and from fibers: the fault
// servers run on their own std::thread (never on a fiberloop loop), and their
// accessors never block. MemcachedServer's constructor, restart() and destructor
// block the calling thread until memcached answers or is gone (a few milliseconds
// usually, 5 s at most): call them outside fibers, or through run_blocking().

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fiberloop/memcache.hpp>

#include "support/server_process.hpp"

namespace fiberloop::testing {

/// A real memcached: `memcached -u root -l 127.0.0.1 -p PORT -U 0 -t 1 -m 64` plus the
/// extra arguments given, on a free port, in its own process group. Started from the
/// main thread, it is killed with the test process if that dies first (a crash, an
/// abort: PR_SET_PDEATHSIG); started from another thread, which might end before the
/// process, it is not.
class MemcachedServer {
 public:
  /// Starts memcached and waits (5 s at most) until it answers `version`. Throws
  /// std::runtime_error saying why when it cannot: memcached is not installed (install
  /// Debian's memcached), it exited (its stderr is in the message), or it did not answer.
  /// `extra_args` go after the standard ones, e.g. {"-I", "2m"}.
  /// Thread: any. Fiber: blocks the thread (use run_blocking in a fiber).
  explicit MemcachedServer(std::vector<std::string> extra_args = {});
  /// kill(). Not SIGTERM first: memcached notices SIGTERM only on its next clock tick
  /// (up to 1 s) and holds nothing a test would lose to SIGKILL.
  ~MemcachedServer();
  MemcachedServer(const MemcachedServer&) = delete;
  MemcachedServer& operator=(const MemcachedServer&) = delete;

  /// The TCP port it listens on (kept by restart()).
  std::uint16_t port() const noexcept { return port_; }
  /// "127.0.0.1:PORT", as MemcacheError and server_for() name a server.
  std::string address() const;
  /// This server as MemcacheClient's constructor takes it.
  MemcacheServer server(std::uint32_t weight = 1) const;
  /// memcached's process id, or -1 after kill().
  pid_t pid() const noexcept { return process_.pid(); }
  bool running() const noexcept { return process_.running(); }
  /// What memcached has printed to stdout and stderr since it last started.
  std::string output() const;

  /// SIGKILL, and reaps it: once this returns, connects to port() are refused and
  /// established connections are reset or closed. Does nothing if it is not running.
  /// Thread: any. Fiber: blocks the thread only while the kernel ends the process.
  void kill() noexcept;
  /// Kills memcached if it runs, then starts it again on the same port (empty) and
  /// waits until it answers. Throws std::runtime_error as the constructor does, e.g.
  /// when something else took the port meanwhile.
  /// Thread: any. Fiber: blocks the thread (use run_blocking in a fiber).
  void restart();

 private:
  enum class Launch { ready, port_in_use };
  Launch launch();

  std::vector<std::string> extra_args_;
  std::string binary_;
  std::uint16_t port_ = 0;
  ServerProcess process_;
};

/// What a ScriptedMemcached sends for one command: `bytes` (nothing when empty), then,
/// if `close`, it closes the connection once they are sent (ignoring what else came).
struct ScriptedReply {
  ScriptedReply(std::string reply) : bytes(std::move(reply)) {}  // NOLINT: implicit on purpose
  ScriptedReply(const char* reply) : bytes(reply) {}             // NOLINT: implicit on purpose
  /// Sends `reply`, then closes the connection.
  static ScriptedReply then_close(std::string reply) {
    ScriptedReply r(std::move(reply));
    r.close = true;
    return r;
  }

  std::string bytes;
  bool close = false;
};

/// A fake memcached on 127.0.0.1 (free port) that answers each command with what the
/// script returns: garbage, a truncated VALUE, SERVER_ERROR, a huge length, nothing...
/// It splits the stream into commands as memcached does: a line ending in "\n" (the
/// "\r" before it is dropped), plus, for set/add/replace/append/prepend/cas, the data
/// block of the line's length and its "\r\n" — the script sees the line only.
/// Runs on its own thread; the script runs there too (share state with it through
/// atomics or a mutex). Replies go out in command order, so pipelining works.
class ScriptedMemcached {
 public:
  /// Called with each command line (without its line end); returns the reply. A
  /// lambda returning std::string (or a string literal) will do.
  using Script = std::function<ScriptedReply(std::string_view command_line)>;

  /// Listens and starts serving. Thread: any; never blocks for long.
  explicit ScriptedMemcached(Script script);
  /// stop().
  virtual ~ScriptedMemcached();
  ScriptedMemcached(const ScriptedMemcached&) = delete;
  ScriptedMemcached& operator=(const ScriptedMemcached&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  /// "127.0.0.1:PORT".
  std::string address() const;
  /// This server as MemcacheClient's constructor takes it.
  MemcacheServer server(std::uint32_t weight = 1) const;

  /// Connections accepted so far. Thread: any.
  std::size_t connections() const noexcept { return connections_.load(); }
  /// Connections accepted and not yet closed (by either side). Thread: any.
  std::size_t open_connections() const noexcept { return open_connections_.load(); }
  /// Complete commands received so far (a data block is part of its command). Thread: any.
  std::size_t commands() const noexcept { return commands_.load(); }
  /// Bytes received so far, on all connections. Thread: any.
  std::size_t bytes_received() const noexcept { return bytes_received_.load(); }
  /// Every command line received so far, in order of arrival. Thread: any.
  std::vector<std::string> command_lines() const;

  /// Closes the listener and every connection and joins the server's thread; the
  /// script is not called after it returns. Idempotent. Thread: any but the server's.
  void stop();

 private:
  struct Connection;
  void serve();
  bool handle_input(Connection& connection);
  int wake_fd_ = -1;  // an eventfd stop() writes to wake the server's thread
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  Script script_;
  std::atomic<std::size_t> connections_{0};
  std::atomic<std::size_t> open_connections_{0};
  std::atomic<std::size_t> commands_{0};
  std::atomic<std::size_t> bytes_received_{0};
  mutable std::mutex lines_mutex_;
  std::vector<std::string> command_lines_;
  std::thread thread_;
};

/// A fake memcached that accepts connections and reads every command but never
/// answers: requests to it time out. It counts connections and commands, so a test
/// can assert that a dead server got exactly one probe after the retry interval.
class SilentMemcached : public ScriptedMemcached {
 public:
  SilentMemcached() : ScriptedMemcached([](std::string_view) { return ScriptedReply(""); }) {}
};

}  // namespace fiberloop::testing
