// What destroying a loop does to the adapters on it. A fiber suspended in a socket
// read unwinds with LoopClosed and closes its socket; a TcpStream, an HttpClient or
// an HttpServer may outlive its loop, and destroying it afterwards closes its sockets
// without touching the loop that is gone. (Fibers alone: tests/fibers/spawn_test.cpp.)

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include <fiberloop/fiberloop.hpp>

#include "adapters/net/tcp_test_support.hpp"
#include "loop_internals.hpp"  // runtime/src: LoopInternals::watches
#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop::testing {
namespace {

using namespace std::chrono_literals;

/// The descriptors this process has open while no loop of the test exists. A
/// thread's first loop opens the thread's wakeup descriptor, which stays: counted in.
std::size_t baseline_fd_count() {
  { IOLoop warm_up; }
  return open_fd_count();
}

/// Destroyed on a fiber of `loop` after a stream whose descriptor number was `fd`:
/// records whether the loop still has a handler for that number. (Watching a new
/// descriptor with the number would not tell: add_handler replaces a stale slot.)
struct ChecksNoHandlerIsLeft {
  IOLoop& loop;
  const int& fd;
  bool& none_left;
  ~ChecksNoHandlerIsLeft() { none_left = fd >= 0 && !detail::LoopInternals::watches(loop, fd); }
};

enum class Read { some, until, exactly };

const char* name_of(Read read) {
  switch (read) {
    case Read::some: return "read_some";
    case Read::until: return "read_until";
    case Read::exactly: return "read_exactly";
  }
  return "?";
}

TEST(TcpStreamLoopDestructionTest, AFiberSuspendedInAReadUnwindsClosesItsSocketAndLeavesNoHandler) {
  for (const Read read : {Read::some, Read::until, Read::exactly}) {
    SCOPED_TRACE(name_of(read));
    RawListener listener;
    const std::size_t fds_before = baseline_fd_count();
    int unwound = 0;
    bool saw_loop_closed = false;
    bool no_handler_left = false;
    int stream_fd = -1;
    Future<void> reader;
    int peer = -1;
    {
      auto loop = std::make_unique<IOLoop>();
      reader = loop->spawn([&, &l = *loop] {
        ChecksNoHandlerIsLeft check{l, stream_fd, no_handler_left};  // runs after the stream is gone
        Counted guard(unwound);
        TcpStream stream = TcpStream::connect("127.0.0.1", listener.port, 5s);
        stream_fd = stream.fd();
        try {
          char buffer[16];
          if (read == Read::some) (void)stream.read_some(std::span<char>(buffer, sizeof buffer), 1h);
          if (read == Read::until) (void)stream.read_until("\n", 100, 1h);
          if (read == Read::exactly) (void)stream.read_exactly(10, 1h);
        } catch (const LoopClosed&) {
          saw_loop_closed = true;
          throw;
        }
      });
      loop->run_sync([&] {
        while (stream_fd < 0) sleep_for(1ms);
        sleep_for(1ms);  // the reader is suspended in its read by now
      });
      peer = listener.accept();
      ASSERT_GE(peer, 0);
      EXPECT_FALSE(reader.done());
    }
    ASSERT_TRUE(reader.done());
    EXPECT_THROW(reader.result(), LoopClosed);
    EXPECT_TRUE(saw_loop_closed) << "the read did not throw LoopClosed";
    EXPECT_EQ(unwound, 1) << "the fiber's stack was not unwound";
    EXPECT_TRUE(no_handler_left) << "the stream left its handler on the loop";
    EXPECT_TRUE(closed_by_peer_within(peer, 2s)) << "the stream's socket was not closed";
    ::close(peer);
    EXPECT_EQ(open_fd_count(), fds_before) << "a descriptor leaked";
  }
}

TEST(TcpStreamLoopDestructionTest, AStreamOutlivingItsLoopOnlyClosesItsSocket) {
  RawListener listener;
  const std::size_t fds_before = baseline_fd_count();
  TcpStream survivor;  // destroyed after the loop
  int peer = -1;
  {
    IOLoop loop;
    loop.run_sync([&] {
      survivor = TcpStream::connect("127.0.0.1", listener.port, 5s);
      peer = listener.accept();
      char byte;
      // A read that waits registers the socket with the loop.
      EXPECT_THROW((void)survivor.read_some(std::span<char>(&byte, 1), 10ms), TimeoutError);
    });
  }
  ASSERT_GE(peer, 0);
  EXPECT_TRUE(survivor.is_open());
  survivor = TcpStream();  // closes it, after its loop: must not touch the loop (ASan)
  EXPECT_TRUE(closed_by_peer_within(peer, 2s)) << "the stream's socket was not closed";
  ::close(peer);
  EXPECT_EQ(open_fd_count(), fds_before) << "a descriptor leaked";
}

/// The peer of the HttpClient tests, on its own thread: the first connection's
/// request is never answered (a fetch stays in flight); the second one's is, with a
/// kept-alive response (its connection goes back to the client's pool). Then it
/// waits for the client to close both.
class SlowAndFastPeer {
 public:
  SlowAndFastPeer() : thread_([this] { serve(); }) {}
  ~SlowAndFastPeer() {
    if (thread_.joinable()) thread_.join();
  }
  std::uint16_t port() const { return listener_.port; }
  /// The request of the fetch that stays in flight has arrived.
  bool slow_request_arrived() const { return slow_arrived_.load(); }
  /// Waits for the peer to finish; true when the client closed both connections.
  bool client_closed_both() {
    thread_.join();
    return closed_both_;
  }

 private:
  void serve() {
    const int slow = listener_.accept();
    slow_arrived_ = receive_raw_until(slow, "\r\n\r\n", 10s).starts_with("GET /slow ");
    const int fast = listener_.accept();
    if (receive_raw_until(fast, "\r\n\r\n", 10s).starts_with("GET /fast "))
      send_raw(fast, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast");
    const bool slow_closed = closed_by_peer_within(slow, 10s);
    const bool fast_closed = closed_by_peer_within(fast, 10s);
    closed_both_ = slow_closed && fast_closed;
    ::close(slow);
    ::close(fast);
  }

  RawListener listener_;
  std::atomic<bool> slow_arrived_{false};
  bool closed_both_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

TEST(HttpClientLoopDestructionTest, DestroyedBeforeOrAfterItsLoopWithAPooledConnectionAndAFetchInFlight) {
  for (const bool client_outlives_the_loop : {true, false}) {
    SCOPED_TRACE(client_outlives_the_loop ? "client destroyed after the loop" : "client destroyed before the loop");
    const std::size_t fds_before = baseline_fd_count();
    std::optional<SlowAndFastPeer> peer;
    peer.emplace();
    std::optional<HttpClient> client;
    Future<HttpResponse> in_flight;
    {
      auto loop = std::make_unique<IOLoop>();
      client.emplace(HttpClientOptions{}, *loop);
      const std::string base = "http://127.0.0.1:" + std::to_string(peer->port());
      loop->run_sync(
          [&] {
            in_flight = client->fetch(base + "/slow");
            while (!peer->slow_request_arrived()) sleep_for(1ms);
            // The slow connection is busy: this one is new, and goes back to the pool.
            EXPECT_EQ(wait_for_future(client->fetch(base + "/fast"), 5s).body, "fast");
          },
          20s);
      EXPECT_FALSE(in_flight.done());
      if (!client_outlives_the_loop) client.reset();
    }
    ASSERT_TRUE(in_flight.done());
    EXPECT_THROW(in_flight.result(), LoopClosed);
    if (client) {
      Future<HttpResponse> too_late = client->fetch("http://127.0.0.1:" + std::to_string(peer->port()) + "/late");
      ASSERT_TRUE(too_late.done());
      EXPECT_THROW(too_late.result(), LoopClosed);
    }
    client.reset();  // after the loop: must not touch it (ASan)
    EXPECT_TRUE(peer->client_closed_both()) << "a connection of the client was left open";
    peer.reset();
    EXPECT_EQ(open_fd_count(), fds_before) << "a descriptor leaked";
  }
}

TEST(HttpServerLoopDestructionTest, DestroyedBeforeOrAfterItsLoopWithAnIdleConnectionAndARequestInItsHandler) {
  for (const bool server_outlives_the_loop : {true, false}) {
    SCOPED_TRACE(server_outlives_the_loop ? "server destroyed after the loop" : "server destroyed before the loop");
    const std::size_t fds_before = baseline_fd_count();
    int unwound = 0;
    bool handler_saw_loop_closed = false;
    bool slow_started = false;
    std::optional<HttpServer> server;
    std::uint16_t port = 0;
    int idle = -1, busy = -1;  // the client's sides, blocking sockets driven by hand
    {
      auto loop = std::make_unique<IOLoop>();
      server.emplace(
          [&](const HttpRequest& request) {
            HttpResponse response;
            if (request.path == "/slow") {
              Counted guard(unwound);
              slow_started = true;
              try {
                sleep_for(1h);
              } catch (const LoopClosed&) {
                handler_saw_loop_closed = true;
                throw;
              }
            }
            response.body = "fast";
            return response;
          },
          HttpServerOptions{}, *loop);
      port = server->listen(0);
      idle = connect_raw(port);
      busy = connect_raw(port);
      send_raw(idle, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
      send_raw(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
      std::string answer;
      loop->run_sync(
          [&] {
            // The idle connection has its answer (and waits for a next request), the
            // busy one's request is in its handler.
            while (!slow_started || answer.find("fast") == std::string::npos) {
              answer += receive_raw_until(idle, "fast", 0ms);
              sleep_for(1ms);
            }
          },
          20s);
      EXPECT_TRUE(answer.starts_with("HTTP/1.1 200 ")) << answer;
      if (!server_outlives_the_loop) server.reset();
    }
    EXPECT_TRUE(handler_saw_loop_closed) << "the handler's wait did not throw LoopClosed";
    EXPECT_EQ(unwound, 1) << "the handler's stack was not unwound";
    server.reset();  // after the loop: must not touch it (ASan)
    EXPECT_TRUE(closed_by_peer_within(idle, 2s)) << "the idle connection was left open";
    EXPECT_TRUE(closed_by_peer_within(busy, 2s)) << "the busy connection was left open";
    ::close(idle);
    ::close(busy);
    EXPECT_THROW(::close(connect_raw(port)), std::runtime_error) << "the server still listens";
    EXPECT_EQ(open_fd_count(), fds_before) << "a descriptor leaked";
  }
}

}  // namespace
}  // namespace fiberloop::testing
