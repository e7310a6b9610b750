#pragma once
/// @file
/// What every legacy_example program does the same way at start: flags, the
/// `listening on` line, and SIGINT/SIGTERM as a file descriptor. No fiberloop here.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace legacy {

/// A server's address, as --backend and --cache take it.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};

/// The programs' flags (README, "The main job"); each program accepts a subset.
struct Flags {
  std::string host = "127.0.0.1";  ///< --host: where to listen
  std::uint16_t port = 0;          ///< --port: 0 picks a free port
  std::string backend_host;        ///< --backend HOST:PORT
  std::uint16_t backend_port = 0;
  std::vector<HostPort> cache;     ///< --cache HOST:PORT[,HOST:PORT...]: memcached servers; empty: no cache
  std::string inventory;           ///< --inventory URL (sql_url.hpp): the inventory from a database; empty: --backend
  int threads = 200;               ///< --threads (the pool)
  int delay_ms = 10;               ///< --delay-ms (the backend)
  int deadline_ms = 0;             ///< --deadline-ms: each request's Deadline (fibers); 0: none
  int watchdog_ms = 0;             ///< --watchdog-ms: the loop's blocking-call watchdog (fibers); 0: off
};

/// Parses `--name VALUE` and `--name=VALUE` for the names in `allowed` ("host", "port",
/// "backend", "cache", "inventory", "threads", "delay-ms", "deadline-ms", "watchdog-ms"). A bad, unknown or missing flag
/// (--backend is required when allowed, unless --inventory is given; the two exclude
/// each other) prints the problem and `usage` to stderr and exits 1; --help prints
/// usage and exits 0.
Flags parse_flags(int argc, char** argv, std::initializer_list<std::string_view> allowed, std::string_view usage);

/// Prints the one line the harness waits for, `listening on HOST:PORT`, and flushes.
void announce_listening(const std::string& host, std::uint16_t port);

/// Blocks SIGINT and SIGTERM in the calling thread (threads started later inherit
/// that) and returns a signalfd that becomes readable when one arrives. Call it
/// first in main, before any thread exists. Exits 1 with a message on failure.
int stop_signal_fd();

}  // namespace legacy
