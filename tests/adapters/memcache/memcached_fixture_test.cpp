// The MemcacheClient tests' servers work: the real memcached stores and serves, dies
// on kill(), comes back on restart() and leaves no process behind; the fault servers
// count, stay silent, or answer as scripted. Plain blocking sockets play the client.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>

#include "adapters/net/tcp_test_support.hpp"
#include "support/helpers.hpp"
#include "support/memcached_server.hpp"

namespace fiberloop::testing {
namespace {

using namespace std::chrono_literals;

// Loopback answers come within microseconds; these bounds only keep a broken fixture
// from hanging the suite, so they are generous for a loaded machine.
constexpr auto kAnswer = 5s;
// How long "never answers" is watched (the brief's read with a 200 ms timeout).
constexpr auto kSilence = 200ms;

/// A blocking socket connected to 127.0.0.1:`port`, closed on scope exit.
struct RawClient {
  explicit RawClient(std::uint16_t port) : fd(connect_raw(port)) {}
  ~RawClient() { ::close(fd); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  /// Sends `request` and returns what came until `end` (or all that came in kAnswer).
  std::string ask(std::string_view request, std::string_view end = "\r\n") const {
    send_raw(fd, request);
    return receive_raw_until(fd, end, kAnswer);
  }
  int fd;
};

/// Polls `condition` every millisecond for up to kAnswer.
bool eventually(const std::function<bool()>& condition) {
  for (const auto give_up = std::chrono::steady_clock::now() + kAnswer; !condition();) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

/// True while `pid` is a live process (a zombie left to a non-reaping init counts as dead).
bool process_alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, name, state;
  if (!(stat >> pid_field >> name >> state)) return false;
  return state != "Z" && state != "X";
}

/// True when `pid` was our child and has been reaped (it is no zombie of ours).
bool reaped(pid_t pid) { return ::waitpid(pid, nullptr, WNOHANG) < 0 && errno == ECHILD; }

bool connect_refused(std::uint16_t port) {
  try {
    RawClient client(port);
    return false;
  } catch (const std::runtime_error&) {
    return true;
  }
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

// ---- the real memcached ------------------------------------------------------------

TEST(MemcachedServerTest, StoresAndReturnsAValueOverARawSocket) {
  MemcachedServer memcached;
  EXPECT_EQ(memcached.address(), "127.0.0.1:" + std::to_string(memcached.port()));
  EXPECT_EQ(memcached.server().host, "127.0.0.1");
  EXPECT_EQ(memcached.server(3).port, memcached.port());
  EXPECT_EQ(memcached.server(3).weight, 3u);

  RawClient client(memcached.port());
  EXPECT_EQ(client.ask("set greeting 7 0 5\r\nhello\r\n"), "STORED\r\n");
  EXPECT_EQ(client.ask("get greeting\r\n", "END\r\n"), "VALUE greeting 7 5\r\nhello\r\nEND\r\n");
}

TEST(MemcachedServerTest, ExtraArgumentsReachMemcached) {
  MemcachedServer memcached({"-I", "2m"});
  RawClient client(memcached.port());
  EXPECT_NE(client.ask("stats settings\r\n", "END\r\n").find("STAT item_size_max 2097152\r\n"), std::string::npos);
}

TEST(MemcachedServerTest, TwoServersListenOnTwoPorts) {
  MemcachedServer first;
  MemcachedServer second;
  EXPECT_NE(first.port(), second.port());
  RawClient to_first(first.port());
  RawClient to_second(second.port());
  EXPECT_EQ(to_first.ask("set k 0 0 1\r\n1\r\n"), "STORED\r\n");
  EXPECT_EQ(to_second.ask("get k\r\n", "END\r\n"), "END\r\n");
}

TEST(MemcachedServerTest, KillClosesItsConnectionsRefusesConnectsAndReapsIt) {
  MemcachedServer memcached;
  const pid_t pid = memcached.pid();
  RawClient client(memcached.port());
  ASSERT_EQ(client.ask("version\r\n").rfind("VERSION ", 0), 0u);

  memcached.kill();
  EXPECT_FALSE(memcached.running());
  EXPECT_EQ(memcached.pid(), -1);
  EXPECT_TRUE(closed_by_peer_within(client.fd, kAnswer));
  EXPECT_TRUE(connect_refused(memcached.port()));
  EXPECT_TRUE(reaped(pid));
  EXPECT_FALSE(process_alive(pid));
  memcached.kill();  // again: nothing to do
}

TEST(MemcachedServerTest, RestartServesTheSamePortAgainWithNoData) {
  MemcachedServer memcached;
  const std::uint16_t port = memcached.port();
  const pid_t first_pid = memcached.pid();
  EXPECT_EQ(RawClient(port).ask("set k 0 0 3\r\nold\r\n"), "STORED\r\n");

  memcached.kill();
  memcached.restart();
  EXPECT_EQ(memcached.port(), port);
  EXPECT_NE(memcached.pid(), first_pid);
  EXPECT_EQ(RawClient(port).ask("get k\r\n", "END\r\n"), "END\r\n");

  // Restarting a running server kills it first.
  const pid_t second_pid = memcached.pid();
  memcached.restart();
  EXPECT_TRUE(reaped(second_pid));
  EXPECT_EQ(RawClient(port).ask("version\r\n").rfind("VERSION ", 0), 0u);
}

TEST(MemcachedServerTest, RestartFailsSayingSoWhenThePortWasTakenAndWorksOnceItIsFree) {
  MemcachedServer memcached;
  memcached.kill();
  {
    // Someone else listens on the port now (no SO_REUSEADDR can share a listening port).
    const int squatter = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(memcached.port());
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(squatter, reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << std::strerror(errno);
    ASSERT_EQ(::listen(squatter, 1), 0);
    const std::string error = error_of([&] { memcached.restart(); });
    EXPECT_NE(error.find("port " + std::to_string(memcached.port()) + " stayed in use"), std::string::npos) << error;
    EXPECT_NE(error.find("Address already in use"), std::string::npos) << error;
    EXPECT_FALSE(memcached.running());
    ::close(squatter);
  }
  memcached.restart();
  EXPECT_EQ(RawClient(memcached.port()).ask("version\r\n").rfind("VERSION ", 0), 0u);
}

TEST(MemcachedServerTest, DestructorStopsAndReapsItLeavingNoDescriptor) {
  const std::size_t fds_before = open_fd_count();
  pid_t pid = -1;
  {
    MemcachedServer memcached;
    pid = memcached.pid();
    memcached.restart();  // a second launch must not leak the first's descriptors either
    pid = memcached.pid();
    ASSERT_TRUE(process_alive(pid));
  }
  EXPECT_TRUE(reaped(pid));
  EXPECT_FALSE(process_alive(pid));
  EXPECT_EQ(open_fd_count(), fds_before);
}

TEST(MemcachedServerTest, DiesWithTheTestProcessThatNeverRanItsDestructor) {
  int pid_pipe[2];
  ASSERT_EQ(::pipe2(pid_pipe, O_CLOEXEC), 0);
  // The child starts memcached and _exits without destructors, as a crashing test would.
  const std::string failure = run_in_child([&] {
    auto* memcached = new MemcachedServer;  // never deleted, on purpose
    const pid_t pid = memcached->pid();
    return ::write(pid_pipe[1], &pid, sizeof pid) == sizeof pid ? "" : "could not report the pid";
  });
  ::close(pid_pipe[1]);
  pid_t pid = -1;
  const ssize_t got = ::read(pid_pipe[0], &pid, sizeof pid);
  ::close(pid_pipe[0]);
  ASSERT_EQ(failure, "");
  ASSERT_EQ(got, static_cast<ssize_t>(sizeof pid));
  EXPECT_TRUE(eventually([&] { return !process_alive(pid); })) << "memcached " << pid << " outlived its test process";
}

TEST(MemcachedServerTest, RestartedFromAThreadThatEndsOutlivesThatThread) {
  // As run_blocking's pool threads may: the death signal must not follow that thread.
  MemcachedServer memcached;
  std::thread([&] { memcached.restart(); }).join();
  std::this_thread::sleep_for(kSilence);  // a death signal would have come by now
  EXPECT_TRUE(process_alive(memcached.pid()));
  EXPECT_EQ(RawClient(memcached.port()).ask("version\r\n").rfind("VERSION ", 0), 0u);
}

TEST(MemcachedServerTest, FailureToStartThrowsWithMemcachedsOwnComplaint) {
  const std::string error = error_of([] { MemcachedServer memcached({"--no-such-option"}); });
  EXPECT_NE(error.find("memcached exited with status"), std::string::npos) << error;
  EXPECT_NE(error.find("unrecognized option '--no-such-option'"), std::string::npos) << error;
}

TEST(MemcachedServerTest, MissingMemcachedSaysWhatToInstall) {
  // In a child: PATH is process-wide.
  EXPECT_EQ(run_in_child([] {
              ::setenv("PATH", "/nonexistent", 1);
              const std::string error = error_of([] { MemcachedServer memcached; });
              return error.find("apt-get install memcached") != std::string::npos ? "" : "the error was: " + error;
            }),
            "");
}

// ---- SilentMemcached ---------------------------------------------------------------

TEST(SilentMemcachedTest, CountsAConnectionAndACommandAndNeverAnswers) {
  SilentMemcached silent;
  EXPECT_EQ(silent.address(), "127.0.0.1:" + std::to_string(silent.port()));
  RawClient client(silent.port());
  ASSERT_TRUE(eventually([&] { return silent.connections() == 1; }));
  send_raw(client.fd, "get k\r\n");
  EXPECT_EQ(receive_raw_until(client.fd, "\n", kSilence), "");
  ASSERT_TRUE(eventually([&] { return silent.commands() == 1; }));
  EXPECT_EQ(silent.command_lines(), std::vector<std::string>{"get k"});
  EXPECT_EQ(silent.bytes_received(), 7u);
  EXPECT_EQ(silent.open_connections(), 1u);
}

TEST(SilentMemcachedTest, AStorageCommandsDataBlockIsPartOfItEvenWhenItArrivesLate) {
  SilentMemcached silent;
  RawClient client(silent.port());
  const std::string line = "set k 0 0 7\r\n";
  send_raw(client.fd, line + "get");  // the data block ("get x\r\n") is not a command
  ASSERT_TRUE(eventually([&] { return silent.bytes_received() == line.size() + 3; }));
  EXPECT_EQ(silent.commands(), 0u);
  send_raw(client.fd, " x\r\n\r\nget k\n");  // a bare "\n" ends a line too, as in memcached
  ASSERT_TRUE(eventually([&] { return silent.commands() == 2; }));
  EXPECT_EQ(silent.command_lines(), (std::vector<std::string>{"set k 0 0 7", "get k"}));
}

TEST(SilentMemcachedTest, ClientClosingIsNoticedAndStopLeavesNoDescriptor) {
  const std::size_t fds_before = open_fd_count();
  {
    SilentMemcached silent;
    {
      RawClient client(silent.port());
      ASSERT_TRUE(eventually([&] { return silent.open_connections() == 1; }));
    }
    EXPECT_TRUE(eventually([&] { return silent.open_connections() == 0; }));
    RawClient still_connected(silent.port());
    ASSERT_TRUE(eventually([&] { return silent.open_connections() == 1; }));
    silent.stop();
    EXPECT_TRUE(closed_by_peer_within(still_connected.fd, kAnswer));
    EXPECT_EQ(silent.open_connections(), 0u);
    EXPECT_TRUE(connect_refused(silent.port()));
  }
  EXPECT_EQ(open_fd_count(), fds_before);
}

// ---- ScriptedMemcached -------------------------------------------------------------

TEST(ScriptedMemcachedTest, RepliesWhatTheScriptSays) {
  ScriptedMemcached scripted([](std::string_view line) -> std::string {
    if (line.rfind("get ", 0) == 0) return "VALUE k 0 10\r\nabc";  // truncated
    if (line.rfind("set ", 0) == 0) return "SERVER_ERROR object too large for cache\r\n";
    return "\x01garbage\r\n";
  });
  RawClient client(scripted.port());
  EXPECT_EQ(client.ask("get k\r\n", "abc"), "VALUE k 0 10\r\nabc");
  EXPECT_EQ(client.ask("set k 0 0 2\r\nhi\r\n"), "SERVER_ERROR object too large for cache\r\n");
  EXPECT_EQ(client.ask("version\r\n"), "\x01garbage\r\n");
  EXPECT_EQ(scripted.commands(), 3u);
  EXPECT_EQ(scripted.command_lines(), (std::vector<std::string>{"get k", "set k 0 0 2", "version"}));
}

TEST(ScriptedMemcachedTest, PipelinedCommandsAreAnsweredInOrder) {
  ScriptedMemcached echo([](std::string_view line) {
    std::string reply = "<";  // not "<" + std::string(line): GCC 12 warns falsely (-Wrestrict)
    return reply.append(line).append(">\r\n");
  });
  RawClient client(echo.port());
  EXPECT_EQ(client.ask("get a\r\nset b 0 0 3\r\nxyz\r\nget c\r\n", "<get c>\r\n"),
            "<get a>\r\n<set b 0 0 3>\r\n<get c>\r\n");
}

TEST(ScriptedMemcachedTest, ThenCloseClosesTheConnectionAfterItsReplyAndServesTheNext) {
  ScriptedMemcached scripted([](std::string_view) { return ScriptedReply::then_close("SERVER_ERROR bye\r\n"); });
  RawClient client(scripted.port());
  // The second command, already sent, is dropped with the connection.
  EXPECT_EQ(client.ask("get a\r\nget b\r\n"), "SERVER_ERROR bye\r\n");
  EXPECT_TRUE(closed_by_peer_within(client.fd, kAnswer));
  EXPECT_TRUE(eventually([&] { return scripted.open_connections() == 0; }));
  EXPECT_EQ(scripted.commands(), 1u);

  RawClient next(scripted.port());
  EXPECT_EQ(next.ask("get c\r\n"), "SERVER_ERROR bye\r\n");
  EXPECT_EQ(scripted.connections(), 2u);
}

TEST(ScriptedMemcachedTest, AReplyBiggerThanTheSocketBuffersArrivesWhole) {
  const std::string huge(8 << 20, 'v');  // more than loopback buffers hold: sent in parts
  ScriptedMemcached scripted([&](std::string_view) { return huge + "\r\n"; });
  RawClient client(scripted.port());
  send_raw(client.fd, "get big\r\n");
  // Counted, not searched for "\r\n" after every chunk (quadratic, slow under TSan).
  std::size_t received = 0;
  char chunk[65536];
  for (pollfd ready{client.fd, POLLIN, 0}; received < huge.size() + 2 && ::poll(&ready, 1, 5000) == 1;) {
    const ssize_t n = ::recv(client.fd, chunk, sizeof chunk, 0);
    if (n <= 0) break;
    received += static_cast<std::size_t>(n);
  }
  EXPECT_EQ(received, huge.size() + 2);
}

}  // namespace
}  // namespace fiberloop::testing
