#pragma once
// Test support for the SQL tests: a private MariaDB server (Debian's mariadb-server),
// installed in a temporary directory and started as root on a free loopback port,
// with a test database and a user with a password; and an admin session (root, on
// the server's Unix socket) to run SQL beside the code under test: KILL its
// connections, read the process list.
//
// Start it once per test suite (SetUpTestSuite); under ctest, which runs each test in
// a process of its own, that is once per test: about a second (the installed data
// directory is made once, kept beside the test binary, and copied). Its constructor,
// admin() and destructor block the calling thread: call them outside fibers, or
// through run_blocking() while the loop must keep serving.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "sql/sql_driver.hpp"
#include "support/server_process.hpp"

struct st_mysql;

namespace fiberloop::testing {

class MariadbServer {
 public:
  /// A result of admin(): rows of column texts (nullopt for NULL).
  using Rows = std::vector<std::vector<std::optional<std::string>>>;

  /// Installs a data directory (mariadb-install-db; or copies the one installed before
  /// beside the test binary), starts mariadbd and waits until it accepts connections
  /// (60 s at most), then creates database() and user() with
  /// password() and every privilege on it. Throws std::runtime_error saying why when
  /// it cannot — the programs are missing (install Debian's mariadb-server), the
  /// install or the server failed (the tail of its log is in the message), it did
  /// not answer in time. Thread: any; blocks it.
  MariadbServer();
  /// stop(), and removes the directory.
  ~MariadbServer();
  MariadbServer(const MariadbServer&) = delete;
  MariadbServer& operator=(const MariadbServer&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  std::string host() const { return "127.0.0.1"; }
  std::string user() const { return "fiberloop_tester"; }
  /// Has characters a URL must percent-encode (@ : / %).
  std::string password() const { return "p@ss:w/rd%"; }
  std::string database() const { return "fiberloop_test"; }
  /// "mysql://USER:PASSWORD@127.0.0.1:PORT/DATABASE", the password percent-encoded.
  std::string url() const;
  /// The same, decoded, as the driver takes it.
  detail::MariadbTarget target() const;
  /// How long the constructor took: installing, starting, setting up.
  std::chrono::milliseconds startup_time() const noexcept { return startup_time_; }
  /// The server's log (its stderr) so far; the last `max_bytes` of it.
  std::string log_tail(std::size_t max_bytes = 4000) const { return process_.output_tail(max_bytes); }

  /// Runs `sql` as root in database() on a connection of the fixture's own (kept
  /// open between calls) and returns the rows of its result, if any. Throws
  /// std::runtime_error with the server's message. Thread: any (one call at a
  /// time; serialized); blocks it.
  Rows admin(const std::string& sql);
  /// The ids of the server's threads running a statement whose text contains
  /// `fragment` (from information_schema.PROCESSLIST; the admin's own query excluded).
  std::vector<std::int64_t> running_statements(const std::string& fragment);
  /// The ids of the connections of user() (idle or busy).
  std::vector<std::int64_t> user_connections();

  /// SIGTERM, then SIGKILL if it has not ended within 20 s. Idempotent.
  void stop() noexcept;

 private:
  void install();
  bool launch();  // false: the port was taken
  void wait_until_ready(std::chrono::steady_clock::time_point give_up);
  [[noreturn]] void fail(const std::string& why);

  std::filesystem::path dir_;
  std::uint16_t port_ = 0;
  std::chrono::milliseconds startup_time_{0};
  ServerProcess process_;
  std::mutex admin_mutex_;
  st_mysql* admin_ = nullptr;  // the admin session, opened on first use
};

}  // namespace fiberloop::testing
