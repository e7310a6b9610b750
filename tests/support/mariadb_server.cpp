#include "support/mariadb_server.hpp"

#include <mysql.h>
#include <signal.h>
#include <unistd.h>
#include <stdlib.h>

#include <cctype>
#include <functional>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace fiberloop::testing {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

constexpr auto kInstallTimeout = seconds(60);  // ~0.6 s here; generous for a loaded machine
constexpr auto kStartTimeout = seconds(60);    // ~0.2 s here
constexpr auto kStopGrace = seconds(20);       // a clean shutdown flushes InnoDB: ~0.1 s here
constexpr int kFreePortAttempts = 5;           // another process may take the port we picked
constexpr std::size_t kLogInMessages = 4000;

/// The server's options beyond those the issue fixes: small and quick to start (a
/// tiny buffer pool and redo log, no binary log, no performance schema, no reverse
/// DNS), utf8mb4 as Debian's configuration would set, room for the tests' connections.
const std::vector<std::string> kSmallServer = {
    "--innodb-buffer-pool-size=8M", "--innodb-log-file-size=4M", "--skip-log-bin", "--skip-name-resolve",
    "--performance-schema=OFF", "--innodb-use-native-aio=0", "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci", "--max-connections=500"};

std::string percent_encode(const std::string& text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

/// `text` as an SQL string literal (the server's default sql_mode: backslash escapes).
std::string sql_literal(const std::string& text) {
  std::string out = "'";
  for (const char c : text) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

}  // namespace

MariadbServer::MariadbServer() {
  const auto started = Clock::now();
  mysql_library_init(0, nullptr, nullptr);
  char dir_template[] = "/tmp/fiberloop-mariadb-XXXXXX";
  if (!::mkdtemp(dir_template)) throw std::system_error(errno, std::generic_category(), "mkdtemp");
  dir_ = dir_template;
  try {
    install();
    bool listening = false;
    for (int attempt = 0; attempt < kFreePortAttempts && !listening; ++attempt) {
      port_ = free_loopback_port();
      listening = launch();
    }
    if (!listening)
      fail(std::to_string(kFreePortAttempts) + " free ports were taken before mariadbd could listen");
    admin("CREATE DATABASE " + database() + " CHARACTER SET utf8mb4");
    admin("CREATE USER '" + user() + "'@'%' IDENTIFIED BY " + sql_literal(password()));
    admin("GRANT ALL ON " + database() + ".* TO '" + user() + "'@'%'");
  } catch (...) {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    throw;
  }
  startup_time_ = std::chrono::duration_cast<milliseconds>(Clock::now() - started);
}

MariadbServer::~MariadbServer() {
  stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string MariadbServer::url() const {
  return "mysql://" + user() + ":" + percent_encode(password()) + "@" + host() + ":" + std::to_string(port_) + "/" +
         database();
}

detail::MariadbTarget MariadbServer::target() const { return {user(), password(), host(), port_, database()}; }

void MariadbServer::fail(const std::string& why) {
  throw std::runtime_error("MariadbServer (in " + dir_.string() + "): " + why + "; the server's log:\n" +
                           process_.output_tail(kLogInMessages));
}

void MariadbServer::install() {
  const std::string program = find_in_path("mariadb-install-db");
  const std::string server = find_in_path("mariadbd");
  if (program.empty() || server.empty())
    throw std::runtime_error(
        "MariadbServer: mariadb-install-db or mariadbd is not installed: install Debian's mariadb-server "
        "(apt-get install mariadb-server; tests/run.sh does)");
  // ctest runs each test in a process of its own, so a suite's server starts once per
  // test: the installed directory (seconds of mariadb-install-db on a loaded machine) is
  // made once beside the test binary and copied (tens of milliseconds). Its name says
  // which server and options made it.
  std::error_code error;
  const std::filesystem::path binary_dir = std::filesystem::read_symlink("/proc/self/exe", error).parent_path();
  std::string recipe = server + " " + std::to_string(std::filesystem::file_size(server, error));
  for (const std::string& option : kSmallServer) recipe += " " + option;
  const std::filesystem::path cached =
      binary_dir / ("mariadb-datadir-" + std::to_string(std::hash<std::string>{}(recipe)));
  if (!std::filesystem::exists(cached / "mysql")) {
    // Installed under a name of its own and renamed: a concurrent test that loses the
    // race throws its copy away.
    const std::filesystem::path fresh =
        binary_dir.empty() ? dir_ / "data"
                           : binary_dir / (cached.filename().string() + ".installing-" + std::to_string(::getpid()));
    // A tmpdir of its own: installs side by side in a shared /tmp delete each other's
    // temporary tables ("Installation of system tables failed").
    std::vector<std::string> args = {program, "--no-defaults", "--datadir=" + fresh.string(),
                                     "--tmpdir=" + dir_.string(), "--auth-root-authentication-method=normal",
                                     "--skip-test-db"};
    args.insert(args.end(), kSmallServer.begin(), kSmallServer.end());
    process_.start(std::move(args));
    const auto give_up = Clock::now() + kInstallTimeout;
    while (true) {
      if (const auto how = process_.ended()) {
        if (*how != "exited with status 0") fail("mariadb-install-db " + *how);
        break;
      }
      if (Clock::now() > give_up) {
        process_.kill();
        fail("mariadb-install-db did not finish within 60 s");
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    if (binary_dir.empty()) return;  // no place for a copy to keep: this one is the server's
    std::filesystem::rename(fresh, cached, error);
    if (error) {
      std::filesystem::remove_all(fresh, error);  // another test's came first
      if (!std::filesystem::exists(cached / "mysql"))
        fail("cannot keep the installed data directory as " + cached.string());
    }
  }
  std::filesystem::copy(cached, dir_ / "data", std::filesystem::copy_options::recursive);
}

bool MariadbServer::launch() {
  std::vector<std::string> args = {find_in_path("mariadbd"), "--no-defaults", "--user=root",
                                   "--datadir=" + (dir_ / "data").string(), "--socket=" + (dir_ / "sock").string(),
                                   "--port=" + std::to_string(port_), "--bind-address=127.0.0.1",
                                   "--pid-file=" + (dir_ / "mariadbd.pid").string(), "--tmpdir=" + dir_.string()};
  args.insert(args.end(), kSmallServer.begin(), kSmallServer.end());
  process_.start(std::move(args));
  const auto give_up = Clock::now() + kStartTimeout;
  for (;;) {
    if (const auto how = process_.ended()) {
      const std::string log = process_.output();
      if (log.find("Address already in use") != std::string::npos) return false;
      fail("mariadbd " + *how + " before accepting connections on port " + std::to_string(port_));
    }
    // Ready once it listens on TCP: it logs "ready for connections" after opening both.
    if (process_.output().find("ready for connections") != std::string::npos) return true;
    if (Clock::now() > give_up) {
      process_.kill();
      fail("mariadbd did not accept connections within 60 s");
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
}

MariadbServer::Rows MariadbServer::admin(const std::string& sql) {
  std::lock_guard lock(admin_mutex_);
  if (!admin_) {
    admin_ = mysql_init(nullptr);
    if (!admin_) throw std::runtime_error("MariadbServer::admin: mysql_init: out of memory");
    const unsigned timeout = 10;
    mysql_optionsv(admin_, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    if (!mysql_real_connect(admin_, nullptr, "root", nullptr, nullptr, 0, (dir_ / "sock").c_str(), 0)) {
      const std::string error = mysql_error(admin_);
      mysql_close(admin_);
      admin_ = nullptr;
      fail("the admin session cannot connect as root on " + (dir_ / "sock").string() + ": " + error);
    }
  }
  if (mysql_real_query(admin_, sql.data(), sql.size()) != 0)
    throw std::runtime_error("MariadbServer::admin(\"" + sql + "\"): " + mysql_error(admin_) + " (error " +
                             std::to_string(mysql_errno(admin_)) + ")");
  Rows rows;
  MYSQL_RES* result = mysql_store_result(admin_);
  if (!result) {
    if (mysql_field_count(admin_) != 0)
      throw std::runtime_error("MariadbServer::admin(\"" + sql + "\"): reading the result: " + mysql_error(admin_));
    return rows;
  }
  const unsigned columns = mysql_num_fields(result);
  while (MYSQL_ROW row = mysql_fetch_row(result)) {
    const unsigned long* lengths = mysql_fetch_lengths(result);
    auto& out = rows.emplace_back();
    for (unsigned i = 0; i < columns; ++i)
      out.push_back(row[i] ? std::optional<std::string>(std::string(row[i], lengths[i])) : std::nullopt);
  }
  mysql_free_result(result);
  return rows;
}

std::vector<std::int64_t> MariadbServer::running_statements(const std::string& fragment) {
  std::vector<std::int64_t> ids;
  for (const auto& row : admin("SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND "
                               "COMMAND IN ('Query', 'Execute') AND LOCATE(" + sql_literal(fragment) + ", INFO) > 0"))
    ids.push_back(std::stoll(row.at(0).value()));
  return ids;
}

std::vector<std::int64_t> MariadbServer::user_connections() {
  std::vector<std::int64_t> ids;
  for (const auto& row : admin("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '" + user() + "'"))
    ids.push_back(std::stoll(row.at(0).value()));
  return ids;
}

void MariadbServer::stop() noexcept {
  {
    std::lock_guard lock(admin_mutex_);
    if (admin_) mysql_close(admin_);
    admin_ = nullptr;
  }
  process_.stop(SIGTERM, kStopGrace);
}

}  // namespace fiberloop::testing
