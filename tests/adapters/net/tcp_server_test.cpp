// TcpServer over real loopback sockets: fiber per connection, cap, graceful stop,
// back-off when out of descriptors (EMFILE in a child process; ENFILE, ENOBUFS and
// ENOMEM injected), handler exceptions.

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/fiber/future.hpp>

#include <fiberloop/fiberloop.hpp>

#include "support/accept_fault.hpp"
#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using testing::AcceptFault;
using testing::elapsed_ms;
using testing::highest_fd;
using testing::ReportLog;
using testing::run_in_child;

class TcpServerTest : public testing::LoopTest {};

/// Echoes lines until the peer closes.
void echo_lines(TcpStream& s) {
  for (;;) s.write_all(s.read_until("\n", 1024, 5s));
}

TEST_F(TcpServerTest, PortZeroPicksAPortThatCanBeReadBack) {
  TcpServer server(echo_lines, {}, loop_);
  const std::uint16_t port = server.listen(0);
  EXPECT_NE(port, 0);
  EXPECT_EQ(server.port(), port);
  run_in_fiber([&] {
    TcpStream c = TcpStream::connect("127.0.0.1", port, 5s);
    c.write_all("hi\n");
    EXPECT_EQ(c.read_until("\n", 100, 5s), "hi\n");
    c.close();  // the handler sees EOF and ends: stop() need not wait out the grace
    server.stop(5s);
  });
}

TEST_F(TcpServerTest, ServesIpv6) {
  TcpServer server(echo_lines, {}, loop_);
  const std::uint16_t port = server.listen(0, "::1");
  run_in_fiber([&] {
    TcpStream c = TcpStream::connect("::1", port, 5s);
    c.write_all("six\n");
    EXPECT_EQ(c.read_until("\n", 100, 5s), "six\n");
    server.stop(10ms);
  });
}

TEST_F(TcpServerTest, ManyConcurrentConnectionsEchoCorrectly) {
  TcpServer server(echo_lines, {}, loop_);
  const std::uint16_t port = server.listen(0);
  run_in_fiber([&] {
    constexpr int clients = 200;
    std::vector<Future<bool>> done;
    for (int i = 0; i < clients; ++i) {
      done.push_back(loop_.spawn([port, i] {
        TcpStream c = TcpStream::connect("127.0.0.1", port, 10s);
        bool ok = true;
        for (int round = 0; round < 3; ++round) {
          const std::string line = "client " + std::to_string(i) + " round " + std::to_string(round) + "\n";
          c.write_all(line, 10s);
          ok = ok && c.read_until("\n", 1024, 10s) == line;
        }
        return ok;
      }));
    }
    int good = 0;
    for (auto& f : done) good += wait_for_future(f) ? 1 : 0;
    EXPECT_EQ(good, clients);
    server.stop(2s);
    EXPECT_EQ(server.connections(), 0u);
  });
}

TEST_F(TcpServerTest, StopLetsASlowHandlerFinishWithinGrace) {
  bool finished = false;
  TcpServer server(
      [&](TcpStream& s) {
        s.read_exactly(1, 5s);
        sleep_for(100ms);
        s.write_all("done");
        finished = true;
      },
      {}, loop_);
  const std::uint16_t port = server.listen(0);
  run_in_fiber([&] {
    TcpStream c = TcpStream::connect("127.0.0.1", port, 5s);
    c.write_all("x");
    while (server.connections() == 0) sleep_for(1ms);
    sleep_for(10ms);  // the handler is in its sleep now
    server.stop(5s);
    EXPECT_TRUE(finished);
    EXPECT_EQ(server.connections(), 0u);
    EXPECT_EQ(c.read_exactly(4, 2s), "done");
    // No longer accepting.
    EXPECT_THROW(TcpStream::connect("127.0.0.1", port, 2s), std::system_error);
  });
}

TEST_F(TcpServerTest, StopAfterGraceClosesBlockedReadersAndWaitsForEveryFiber) {
  int closed_in_handler = 0;
  TcpServer server(
      [&](TcpStream& s) {
        try {
          s.read_exactly(1, 30s);
        } catch (const StreamClosed&) {
          ++closed_in_handler;
          throw;
        }
      },
      {}, loop_);
  const std::uint16_t port = server.listen(0);
  run_in_fiber([&] {
    std::vector<TcpStream> clients;
    for (int i = 0; i < 5; ++i) clients.push_back(TcpStream::connect("127.0.0.1", port, 5s));
    while (server.connections() < 5) sleep_for(1ms);
    const auto start = std::chrono::steady_clock::now();
    server.stop(50ms);
    EXPECT_GE(elapsed_ms(start), 45);
    EXPECT_LT(elapsed_ms(start), 5000);
    EXPECT_EQ(closed_in_handler, 5);
    EXPECT_EQ(server.connections(), 0u);
    for (auto& c : clients) EXPECT_THROW(c.read_exactly(1, 2s), StreamClosed);
  });
}

TEST_F(TcpServerTest, StopAsyncFromACallback) {
  TcpServer server(echo_lines, {}, loop_);
  const std::uint16_t port = server.listen(0);
  run_in_fiber([&] {
    TcpStream c = TcpStream::connect("127.0.0.1", port, 5s);
    while (server.connections() == 0) sleep_for(1ms);
    Promise<Future<void>> stopped;
    loop_.add_callback([&] { stopped.set_value(server.stop_async(20ms)); });
    wait_for_future(wait_for_future(stopped.get_future()), 5s);
    EXPECT_EQ(server.connections(), 0u);
  });
}

TEST_F(TcpServerTest, ConnectionCapRefusesTheExcessAtOnceAndServesAgainWhenASlotFrees) {
  TcpServer::Options options;
  options.max_connections = 2;
  options.refusal = "busy\n";
  TcpServer server(echo_lines, options, loop_);
  const std::uint16_t port = server.listen(0);
  run_in_fiber([&] {
    std::vector<TcpStream> c;
    for (int i = 0; i < 2; ++i) c.push_back(TcpStream::connect("127.0.0.1", port, 5s));
    for (auto& s : c) s.write_all("a\n");
    EXPECT_EQ(c[0].read_until("\n", 10, 5s), "a\n");
    EXPECT_EQ(c[1].read_until("\n", 10, 5s), "a\n");
    // At the cap a newcomer is accepted, told, and closed: not parked in the backlog
    // (there the read below would time out).
    for (int i = 0; i < 5; ++i) {
      TcpStream excess = TcpStream::connect("127.0.0.1", port, 5s);
      EXPECT_EQ(excess.read_until("\n", 10, 2s), "busy\n");
      EXPECT_THROW(excess.read_exactly(1, 2s), StreamClosed);
    }
    EXPECT_EQ(server.connections(), 2u);
    c[1].write_all("b\n");
    EXPECT_EQ(c[1].read_until("\n", 10, 5s), "b\n");  // the live ones are still served
    c[0].close();
    // Served again once the server has seen the close (until then still refused: poll).
    std::string reply;
    for (int attempt = 0; attempt < 200 && reply != "c\n"; ++attempt) {
      TcpStream next = TcpStream::connect("127.0.0.1", port, 5s);
      next.write_all("c\n");
      try {
        reply = next.read_until("\n", 10, 2s);
      } catch (const StreamClosed&) {
      } catch (const std::system_error&) {
      }
      if (reply != "c\n") sleep_for(5ms);
    }
    EXPECT_EQ(reply, "c\n");
    server.stop(10ms);
  });
}

TEST_F(TcpServerTest, HandlerExceptionIsReportedAndTheServerGoesOn) {
  ReportLog reports(loop_);
  TcpServer server(
      [](TcpStream& s) {
        if (s.read_until("\n", 100, 5s) == "boom\n") throw std::runtime_error("handler failed");
        s.write_all("ok\n");
      },
      {}, loop_);
  const std::uint16_t port = server.listen(0);
  run_in_fiber([&] {
    TcpStream bad = TcpStream::connect("127.0.0.1", port, 5s);
    bad.write_all("boom\n");
    EXPECT_THROW(bad.read_exactly(1, 5s), StreamClosed);  // the connection is closed
    TcpStream good = TcpStream::connect("127.0.0.1", port, 5s);
    good.write_all("hello\n");
    EXPECT_EQ(good.read_until("\n", 100, 5s), "ok\n");
    server.stop(1s);
  });
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].first, "handler failed");
  EXPECT_EQ(reports[0].second, "tcp connection handler");
}

TEST_F(TcpServerTest, DestroyingTheServerClosesLiveConnectionsWithoutWaiting) {
  bool handler_saw_close = false;
  run_in_fiber([&] {
    TcpStream c;
    {
      TcpServer server(
          [&](TcpStream& s) {
            try {
              s.read_exactly(1, 30s);
            } catch (const StreamClosed&) {
              handler_saw_close = true;
            }
          },
          {}, loop_);
      c = TcpStream::connect("127.0.0.1", server.listen(0), 5s);
      while (server.connections() == 0) sleep_for(1ms);
    }
    EXPECT_THROW(c.read_exactly(1, 5s), StreamClosed);
    while (loop_.live_fibers() > 1) sleep_for(1ms);  // the handler's fiber ends on its own
    EXPECT_TRUE(handler_saw_close);
  });
}

TEST_F(TcpServerTest, ListenOnAPortInUseThrows) {
  TcpServer a(echo_lines, {}, loop_);
  const std::uint16_t port = a.listen(0);
  TcpServer b(echo_lines, {}, loop_);
  EXPECT_THROW(b.listen(port), std::system_error);
  EXPECT_THROW(b.listen(0, "not-an-address"), Error);
}

/// In a child process: a server whose process runs out of descriptors backs off,
/// then serves the connection that waited once descriptors are free again.
std::string accept_backs_off_on_emfile() {
  IOLoop loop;
  TcpServer::Options options;
  options.accept_backoff = 50ms;
  TcpServer server(echo_lines, options, loop);
  const std::uint16_t port = server.listen(0);
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = static_cast<rlim_t>(highest_fd() + 32);
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return "setrlimit failed";
  return loop.run_sync(
      [&]() -> std::string {
        TcpStream first = TcpStream::connect("127.0.0.1", port, 5s);
        first.write_all("1\n");
        if (first.read_until("\n", 10, 5s) != "1\n") return "the first connection was not served";
        // Two fds kept back for the client socket that must wait, then exhaust the rest.
        const int spare = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        std::vector<int> hogs;
        for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) hogs.push_back(fd);
        if (errno != EMFILE) return std::string("exhausting descriptors ended with ") + std::strerror(errno);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(spare, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS)
          return std::string("connect: ") + std::strerror(errno);
        TcpStream second(spare, loop);
        const std::size_t attempts_before = server.accept_attempts();
        sleep_for(300ms);  // ~6 back-off periods: a spinning accept would try thousands of times
        const std::size_t attempts = server.accept_attempts() - attempts_before;
        if (attempts == 0 || attempts > 20)
          return std::to_string(attempts) + " accept attempts in 300 ms with a 50 ms back-off";
        for (int fd : hogs) ::close(fd);
        second.write_all("2\n", 5s);
        if (second.read_until("\n", 10, 5s) != "2\n") return "the waiting connection was not served afterwards";
        server.stop(10ms);
        return "";
      },
      20s);
}

TEST(TcpServerEmfileTest, AcceptBacksOffWithoutSpinningAndResumes) {
  EXPECT_EQ(run_in_child(accept_backs_off_on_emfile), "");
}

TEST_F(TcpServerTest, AcceptBacksOffOnEnfileEnobufsAndEnomemThenResumes) {
  // The kernel gives these only when the whole system is short of file table entries
  // or memory: accept4() is made to fail on purpose (support/accept_fault.hpp).
  for (const int error : {ENFILE, ENOBUFS, ENOMEM}) {
    SCOPED_TRACE(std::strerror(error));
    TcpServer::Options options;
    options.accept_backoff = 50ms;
    TcpServer server(echo_lines, options, loop_);
    const std::uint16_t port = server.listen(0);
    run_in_fiber([&] {
      std::optional<AcceptFault> fault(std::in_place, testing::listening_fd_of_port(port), error);
      TcpStream client = TcpStream::connect("127.0.0.1", port, 5s);
      client.write_all("x\n");
      sleep_for(300ms);  // ~6 back-off periods: a spinning accept would try thousands of times
      EXPECT_GE(fault->failed_calls(), 1);
      EXPECT_LE(fault->failed_calls(), 20) << "the acceptor did not back off";
      EXPECT_EQ(server.connections(), 0u);
      fault.reset();
      EXPECT_EQ(client.read_until("\n", 10, 5s), "x\n") << "the acceptor did not resume";
      server.stop(10ms);
    });
  }
}


// ---- a server destroyed off its loop's thread, or after its loop (issue 16) --------

// Destroyed on another thread, the server hands its shutdown to the loop: the listening
// fd's handler is removed there, the port refuses connections, and the fd number is
// free for the next server. (Before: the swallowed remove_handler left the slot taken,
// with a handler pointing at the freed server; the next listen() on that fd number
// failed with EEXIST.)
TEST_F(TcpServerTest, DestroyedOnAnotherThreadShutsDownOnItsLoop) {
  // A handler left behind would be replaced by the next listen() on that fd number,
  // and reported: none may be.
  testing::ReportLog reports(loop_);
  run_in_fiber([&] {
    auto server = std::make_unique<TcpServer>(echo_lines, TcpServer::Options{}, loop_);
    const std::uint16_t old_port = server->listen(0);
    std::thread([doomed = std::move(server)] {}).join();
    sleep_for(20ms);  // the handed-over shutdown runs on the loop
    EXPECT_THROW(TcpStream::connect("127.0.0.1", old_port, 5s), std::system_error);  // refused

    TcpServer next(echo_lines, {}, loop_);
    std::uint16_t port = 0;
    ASSERT_NO_THROW(port = next.listen(0));
    TcpStream c = TcpStream::connect("127.0.0.1", port, 5s);
    c.write_all("again\n");
    EXPECT_EQ(c.read_until("\n", 100, 5s), "again\n");
    c.close();
    next.stop();
  });
  EXPECT_TRUE(reports.empty()) << "a handler was left on the loop: " << (reports.empty() ? "" : reports[0].first);
}

// A server may outlive its loop: destroying it then touches nothing of the loop.
// (Before: heap-use-after-free under ASan.)
TEST(TcpServerLoopTest, ServerDestroyedAfterItsLoopClosesItsSocketOnly) {
  auto loop = std::make_unique<IOLoop>();
  auto server = std::make_unique<TcpServer>(echo_lines, TcpServer::Options{}, *loop);
  const std::uint16_t port = server->listen(0);
  loop->run_sync([&] {
    TcpStream c = TcpStream::connect("127.0.0.1", port, 5s);
    c.write_all("hi\n");
    EXPECT_EQ(c.read_until("\n", 100, 5s), "hi\n");
  });
  loop.reset();
  server.reset();
  IOLoop other;
  EXPECT_THROW(other.run_sync([&] { (void)TcpStream::connect("127.0.0.1", port, 5s); }), std::system_error);
}

// A connection's fiber blocked on a Boost.Fiber primitive when its loop dies is
// orphaned (see ~IOLoop) and may end long after: its error and its end reach nothing
// of the dead loop. (Before: the handler's error was reported through the freed loop,
// and the connection's end re-armed the accept handler on it: heap-use-after-free.)
TEST(TcpServerLoopTest, AConnectionFiberOrphanedByItsLoopEndsWithoutTouchingIt) {
  boost::fibers::promise<void> release;
  boost::fibers::future<void> released = release.get_future();
  bool handler_ended = false;
  std::unique_ptr<TcpServer> server;
  ::testing::internal::CaptureStderr();  // the orphan is reported
  {
    IOLoop loop;
    server = std::make_unique<TcpServer>(
        [&](TcpStream&) {
          released.wait();  // a Boost.Fiber wait: ~IOLoop cannot unwind it
          handler_ended = true;
          throw std::runtime_error("the handler fails after its loop is gone");
        },
        TcpServer::Options{}, loop);
    const std::uint16_t port = server->listen(0);
    loop.run_sync([&] {
      TcpStream c = TcpStream::connect("127.0.0.1", port, 5s);
      for (int i = 0; i < 1000 && server->connections() == 0; ++i) sleep_for(1ms);
      ASSERT_EQ(server->connections(), 1u);
      c.close();
    });
  }
  const std::string report = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(report.find("are blocked on a Boost.Fiber primitive"), std::string::npos) << report;
  release.set_value();  // the orphan runs on, on this thread's next loop
  {
    IOLoop next;
    next.run_sync([&] {
      for (int i = 0; i < 1000 && !handler_ended; ++i) sleep_for(1ms);
    });
  }
  EXPECT_TRUE(handler_ended);
  EXPECT_EQ(server->connections(), 0u);
  server.reset();
}

}  // namespace
}  // namespace fiberloop
