// TcpStream over real loopback sockets (IPv4 and IPv6).

#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fiberloop/fiberloop.hpp>

#include "adapters/net/tcp_test_support.hpp"
#include "loop_internals.hpp"  // runtime/src: LoopInternals::watches
#include "support/helpers.hpp"
#include "support/loop_test.hpp"

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using testing::elapsed_ms;
using testing::open_fd_count;
using testing::RawListener;
using testing::run_in_child;

class TcpStreamTest : public testing::LoopTest {
 protected:
  /// A connected pair: `client` from TcpStream::connect, `server` accepted by hand.
  struct Pair {
    TcpStream client;
    TcpStream server;
  };
  Pair connect_pair(RawListener& listener, const std::string& host = "127.0.0.1") {
    TcpStream client = TcpStream::connect(host, listener.port, 5s);
    TcpStream server(listener.accept(), loop_);
    return {std::move(client), std::move(server)};
  }
};

TEST_F(TcpStreamTest, ARequestDeadlineCutsALongReadAndTheDumpNamesTheStreamWait) {
  run_in_fiber([&] {
    RawListener listener("127.0.0.1");
    Pair p = connect_pair(listener);
    Future<std::string> dump = loop_.spawn([&] {
      sleep_for(50ms);
      return loop_.dump();
    });
    const auto start = std::chrono::steady_clock::now();
    {
      Deadline deadline(200ms);
      EXPECT_THROW(p.client.read_until("\n", 1024, 10s), TimeoutError);  // the peer never writes
    }
    EXPECT_LT(elapsed_ms(start), 2000.0);
    const std::string listed = wait_for_future(dump);
    EXPECT_NE(listed.find("TcpStream::read_until() fd " + std::to_string(p.client.fd())), std::string::npos)
        << listed;
    EXPECT_NE(listed.find("deadline +"), std::string::npos) << listed;
  });
}

int int_option(int fd, int level, int name) {
  int value = -1;
  socklen_t len = sizeof value;
  ::getsockopt(fd, level, name, &value, &len);
  return value;
}

/// A port nothing listens on: bound (so nobody else takes it mid-test) but not listening.
struct ClosedPort {
  RawListener holder;
  explicit ClosedPort(const std::string& host) : holder(host, -1) {}
};

TEST_F(TcpStreamTest, EchoesOverIpv4AndIpv6WithAddresses) {
  for (std::string host : {"127.0.0.1", "::1"}) {
    RawListener listener(host);
    run_in_fiber([&] {
      Pair p = connect_pair(listener, host);
      p.client.write_all("ping\n");
      EXPECT_EQ(p.server.read_until("\n", 100), "ping\n");
      p.server.write_all("pong");
      EXPECT_EQ(p.client.read_exactly(4), "pong");
      const std::string want_prefix = host == "::1" ? "[::1]:" : "127.0.0.1:";
      EXPECT_EQ(p.client.peer_address(), want_prefix + std::to_string(listener.port));
      EXPECT_EQ(p.server.local_address(), want_prefix + std::to_string(listener.port));
      EXPECT_EQ(p.server.peer_address(), p.client.local_address());
    });
  }
}

TEST_F(TcpStreamTest, ConnectRefusedThrowsSystemErrorWithErrno) {
  for (std::string host : {"127.0.0.1", "::1"}) {
    ClosedPort closed(host);
    run_in_fiber([&] {
      try {
        TcpStream::connect(host, closed.holder.port, 2s);
        ADD_FAILURE() << "connect to a closed port succeeded";
      } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ECONNREFUSED) << e.what();
      }
    });
  }
}

TEST_F(TcpStreamTest, ConnectTimesOutWhenTheBacklogIsFull) {
  // A listener that never accepts, with backlog 0: once its queue is full the
  // kernel drops further SYNs, so the next connect stays pending.
  RawListener listener("127.0.0.1", 0);
  std::vector<int> fillers;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(listener.port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < 16; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    fillers.push_back(fd);
    ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 200) == 0) break;  // this one is stuck: the queue is full
  }
  run_in_fiber([&] {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(TcpStream::connect("127.0.0.1", listener.port, 150ms), TimeoutError);
    EXPECT_GE(elapsed_ms(start), 140);
    EXPECT_LT(elapsed_ms(start), 2000);
  });
  for (int fd : fillers) ::close(fd);
}

TEST_F(TcpStreamTest, ResolvesLocalhost) {
  RawListener v4("127.0.0.1");
  run_in_fiber([&] {
    TcpStream s = TcpStream::connect("localhost", v4.port, 5s);  // tries ::1 first if listed, then 127.0.0.1
    EXPECT_TRUE(s.is_open());
    EXPECT_EQ(s.peer_address(), "127.0.0.1:" + std::to_string(v4.port));
  });
}

TEST_F(TcpStreamTest, UnknownHostGivesAnError) {
  run_in_fiber([&] { EXPECT_THROW(TcpStream::connect("no-such-host.invalid", 80, 5s), Error); });
}

TEST_F(TcpStreamTest, ReadExactlyGivesPartialDataWhenThePeerCloses) {
  RawListener listener;
  run_in_fiber([&] {
    Pair p = connect_pair(listener);
    p.server.write_all("hello");
    p.server.close();
    try {
      p.client.read_exactly(10, 2s);
      ADD_FAILURE() << "read_exactly returned after EOF";
    } catch (const StreamClosed& e) {
      EXPECT_EQ(e.partial(), "hello");
    }
    EXPECT_THROW(p.client.read_some(std::span<char>(std::vector<char>(4).data(), 4)), StreamClosed);
  });
}

TEST_F(TcpStreamTest, ReadUntilBeyondMaxBytesIsAnErrorAndKeepsTheBytes) {
  RawListener listener;
  run_in_fiber([&] {
    Pair p = connect_pair(listener);
    p.server.write_all(std::string(100, 'x'));
    try {
      p.client.read_until("\n", 50, 2s);
      ADD_FAILURE() << "read_until returned without a delimiter";
    } catch (const StreamClosed&) {
      ADD_FAILURE() << "expected Error, got StreamClosed";
    } catch (const TimeoutError&) {
      ADD_FAILURE() << "expected Error, got TimeoutError";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("max_bytes"), std::string::npos) << e.what();
    }
    EXPECT_GE(p.client.buffered(), 50u);
    EXPECT_EQ(p.client.read_exactly(100, 2s), std::string(100, 'x'));
  });
}

TEST_F(TcpStreamTest, ReadUntilFindsADelimiterSplitAcrossWrites) {
  RawListener listener;
  run_in_fiber([&] {
    Pair p = connect_pair(listener);
    auto writer = loop_.spawn([&] {
      p.server.write_all("abc\r");
      sleep_for(20ms);  // lets the reader see the first half alone
      p.server.write_all("\nrest\r\ntail");
      p.server.close();
    });
    EXPECT_EQ(p.client.read_until("\r\n", 100, 2s), "abc\r\n");
    EXPECT_EQ(p.client.read_until("\r\n", 100, 2s), "rest\r\n");
    try {
      p.client.read_until("\r\n", 100, 2s);
      ADD_FAILURE() << "read_until returned after EOF";
    } catch (const StreamClosed& e) {
      EXPECT_EQ(e.partial(), "tail");
    }
    wait_for_future(writer);
  });
}

TEST_F(TcpStreamTest, PerCallAndDefaultTimeoutsThrowTimeoutError) {
  RawListener listener;
  run_in_fiber([&] {
    Pair p = connect_pair(listener);
    auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(p.client.read_exactly(1, 50ms), TimeoutError);
    EXPECT_GE(elapsed_ms(start), 45);
    p.client.set_timeout(60ms);
    EXPECT_EQ(p.client.timeout(), 60ms);
    start = std::chrono::steady_clock::now();
    EXPECT_THROW(p.client.read_until("\n", 10), TimeoutError);
    EXPECT_GE(elapsed_ms(start), 55);
    EXPECT_LT(elapsed_ms(start), 5000);
    // The stream still works after a timeout.
    p.server.write_all("x\n");
    EXPECT_EQ(p.client.read_until("\n", 10), "x\n");
  });
}

TEST_F(TcpStreamTest, CloseFromAnotherFiberWakesABlockedReader) {
  RawListener listener;
  run_in_fiber([&] {
    Pair p = connect_pair(listener);
    Promise<void> reading;
    auto reader = loop_.spawn([&] {
      reading.set_value();
      p.client.read_exactly(10, 10s);
    });
    wait_for_future(reading.get_future());
    sleep_for(0ms);  // the reader is suspended in its wait by now (it ran up to its recv)
    ASSERT_FALSE(reader.done());
    const auto start = std::chrono::steady_clock::now();
    p.client.close();
    EXPECT_THROW(wait_for_future(reader), StreamClosed);
    EXPECT_LT(elapsed_ms(start), 1000);
    EXPECT_FALSE(p.client.is_open());
  });
}

TEST_F(TcpStreamTest, WaitingOnTheLoopThreadOutsideAFiberIsABlockingCallError) {
  RawListener listener;
  run_in_fiber([&] {
    Pair p = connect_pair(listener);
    Promise<std::string> outcome;
    loop_.add_callback([&] {
      char buf[4];
      try {
        p.client.read_some(buf);
        outcome.set_value("returned");
      } catch (const BlockingCallError&) {
        outcome.set_value("BlockingCallError");
      } catch (const std::exception& e) {
        outcome.set_value(e.what());
      }
    });
    EXPECT_EQ(wait_for_future(outcome.get_future()), "BlockingCallError");
  });
}

TEST_F(TcpStreamTest, NodelayIsOnByDefaultAndKeepaliveIsSettable) {
  RawListener listener("::1");
  run_in_fiber([&] {
    Pair p = connect_pair(listener, "::1");
    EXPECT_EQ(int_option(p.client.fd(), IPPROTO_TCP, TCP_NODELAY), 1);
    EXPECT_EQ(int_option(p.client.fd(), SOL_SOCKET, SO_KEEPALIVE), 0);
    p.client.set_keepalive(true);
    EXPECT_EQ(int_option(p.client.fd(), SOL_SOCKET, SO_KEEPALIVE), 1);
    p.client.set_nodelay(false);
    EXPECT_EQ(int_option(p.client.fd(), IPPROTO_TCP, TCP_NODELAY), 0);
  });
}

TEST_F(TcpStreamTest, LargeWritesWaitForTheReader) {
  RawListener listener;
  run_in_fiber([&] {
    Pair p = connect_pair(listener);
    const std::string big(8 * 1024 * 1024, 'z');
    auto writer = loop_.spawn([&] { p.server.write_all(big, 10s); });
    std::string got = p.client.read_exactly(big.size(), 10s);
    EXPECT_EQ(got.size(), big.size());
    EXPECT_EQ(got, big);
    wait_for_future(writer);
  });
}

TEST_F(TcpStreamTest, WriteToAClosedPeerThrowsStreamClosed) {
  RawListener listener;
  run_in_fiber([&] {
    Pair p = connect_pair(listener);
    p.server.close();
    EXPECT_THROW(
        {
          for (int i = 0; i < 100; ++i) {  // the first writes may land before the RST arrives
            p.client.write_all(std::string(64 * 1024, 'a'), 2s);
            sleep_for(1ms);
          }
        },
        StreamClosed);
  });
}

TEST_F(TcpStreamTest, WorksOffTheLoopByBlockingTheCaller) {
  RawListener listener;
  int accepted = -1;
  run_in_fiber([&] {
    TcpStream client = TcpStream::connect("127.0.0.1", listener.port, 5s);
    accepted = listener.accept();
    client.write_all("from the loop\n");
    std::string got;
    std::thread plain([&] {
      TcpStream server(accepted, loop_);  // never touches the loop off its thread: waits in poll()
      got = server.read_until("\n", 100, 5s);
      try {
        server.read_exactly(1, 30ms);
      } catch (const TimeoutError&) {
        got += "timeout";
      }
    });
    plain.join();  // blocks the loop briefly; fine in a test
    EXPECT_EQ(got, "from the loop\ntimeout");
  });
}

TEST_F(TcpStreamTest, DefaultConstructedStreamIsClosed) {
  TcpStream s;
  EXPECT_FALSE(s.is_open());
  EXPECT_EQ(s.fd(), -1);
  EXPECT_EQ(s.buffered(), 0u);
  EXPECT_EQ(s.peer_address(), "");
  run_in_fiber([&] { EXPECT_THROW(s.read_exactly(1), StreamClosed); });
}


// ---- huge and negative timeouts (issue 16, item 3) -------------------------------

TEST_F(TcpStreamTest, HugeTimeoutsWaitAndNegativeOnesTimeOutAtOnce) {
  RawListener listener;
  run_in_fiber([&] {
    auto pair = connect_pair(listener);
    TcpStream& client = pair.client;
    TcpStream& server = pair.server;
    char byte = 0;
    loop_.call_later(10ms, [fd = server.fd()] { ::send(fd, "a", 1, MSG_NOSIGNAL); });
    EXPECT_EQ(client.read_some({&byte, 1}, std::chrono::nanoseconds::max()), 1u);
    client.set_timeout(std::chrono::nanoseconds::max());
    loop_.call_later(10ms, [fd = server.fd()] { ::send(fd, "b", 1, MSG_NOSIGNAL); });
    EXPECT_EQ(client.read_exactly(1), "b");
    for (const auto timeout : {std::chrono::nanoseconds::min(), std::chrono::nanoseconds(-1), std::chrono::nanoseconds(0)}) {
      const auto start = std::chrono::steady_clock::now();
      EXPECT_THROW(client.read_some({&byte, 1}, timeout), TimeoutError);
      EXPECT_THROW(client.read_until("\n", 10, timeout), TimeoutError);
      EXPECT_LT(elapsed_ms(start), 1000.0);  // generous: "at once" is the next iteration
    }
    TcpStream again = TcpStream::connect("127.0.0.1", listener.port, std::chrono::nanoseconds::max());
    EXPECT_TRUE(again.is_open());
    ::close(listener.accept());
    std::string got;
    std::thread plain([&, fd = client.fd()] {  // a thread with no loop waits in poll()
      TcpStream other(::dup(fd), loop_);
      char c = 0;
      try {
        other.read_some({&c, 1}, std::chrono::nanoseconds::min());
      } catch (const TimeoutError&) {
        got += "timeout ";
      }
      ::send(server.fd(), "c", 1, MSG_NOSIGNAL);
      got += other.read_exactly(1, std::chrono::nanoseconds::max());
    });
    plain.join();
    EXPECT_EQ(got, "timeout c");
  });
}

// ---- a stream closed off its loop's thread (issue 16, item 4) ---------------------

// A stream registered with its loop and destroyed on another thread hands its close
// to the loop, which removes the handler: the fd number is usable by the next socket.
// (Before: remove_handler threw, was swallowed, the fd was closed and its slot stayed
// taken: the next stream on that number failed with EEXIST for good.)
TEST_F(TcpStreamTest, DestroyedOnAnotherThreadLeavesItsFdNumberUsableOnTheLoop) {
  RawListener listener;
  run_in_fiber([&] {
    auto pair = connect_pair(listener);
    char byte = 0;
    EXPECT_THROW(pair.client.read_some({&byte, 1}, 1ms), TimeoutError);  // registers its fd
    const int fd = pair.client.fd();
    std::thread([doomed = std::move(pair.client)] {}).join();
    for (int i = 0; i < 2000 && ::fcntl(fd, F_GETFD) != -1; ++i) sleep_for(1ms);  // closed on the loop
    ASSERT_EQ(::fcntl(fd, F_GETFD), -1) << "the socket was never closed";
    EXPECT_FALSE(detail::LoopInternals::watches(loop_, fd)) << "the loop kept the closed stream's handler";
    EXPECT_THROW(pair.server.read_exactly(1, 5s), StreamClosed);  // the peer saw the close

    // The next socket with that fd number works on the loop.
    const int raw = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(listener.port);
    ASSERT_EQ(::connect(raw, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
    if (raw != fd) {
      ASSERT_EQ(::dup2(raw, fd), fd);
      ::close(raw);
    }
    TcpStream reused(fd, loop_);
    TcpStream peer(listener.accept(), loop_);
    loop_.call_later(10ms, [fd = peer.fd()] { ::send(fd, "x", 1, MSG_NOSIGNAL); });
    EXPECT_EQ(reused.read_exactly(1, 5s), "x");
  });
}

// A stream a fiber uses but that never had to wait has no handler yet; closed on
// another thread meanwhile, its close still goes to the loop: closing the fd there
// and then would let the next accepted socket take its number while the fiber's
// next send() still uses it (writing to a stranger). The other thread's close
// returns with the socket still open; the loop closes it in its next iteration.
TEST_F(TcpStreamTest, ClosedOnAnotherThreadBeforeItEverWaitedStillClosesOnTheLoop) {
  run_in_fiber([&] {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    TcpStream stream(fds[0], loop_);
    stream.write_all("hello", 5s);  // used by this fiber, never waited: no handler
    ASSERT_FALSE(detail::LoopInternals::watches(loop_, fds[0]));
    std::thread([&] { stream.close(); }).join();  // the loop cannot run meanwhile
    EXPECT_NE(::fcntl(fds[0], F_GETFD), -1) << "closed on the other thread, under the loop's feet";
    for (int i = 0; i < 2000 && ::fcntl(fds[0], F_GETFD) != -1; ++i) sleep_for(1ms);
    EXPECT_EQ(::fcntl(fds[0], F_GETFD), -1) << "the loop never closed the socket";
    EXPECT_FALSE(stream.is_open());
    EXPECT_THROW(stream.write_all("more", 1s), StreamClosed);
    ::close(fds[1]);
  });
}


// A stream may outlive its loop: closing it then only closes the socket.
// (Before: remove_handler on the destroyed loop, a heap-use-after-free under ASan.)
TEST(TcpStreamLoopTest, StreamRegisteredWithADestroyedLoopClosesItsSocketOnly) {
  RawListener listener;
  std::optional<TcpStream> client;
  int peer = -1;
  auto loop = std::make_unique<IOLoop>();
  loop->run_sync([&] {
    client.emplace(TcpStream::connect("127.0.0.1", listener.port, 5s));
    peer = listener.accept();
    char byte = 0;
    EXPECT_THROW(client->read_some({&byte, 1}, 1ms), TimeoutError);  // registers its fd
  });
  loop.reset();
  client.reset();
  char byte = 0;
  EXPECT_EQ(::recv(peer, &byte, 1, 0), 0) << "the peer should see the connection closed";
  ::close(peer);
}

/// In a child process whose descriptors are all taken: connect() fails with a
/// std::system_error that names EMFILE and the call, by address and by name, leaks
/// nothing, and works again once descriptors are free.
std::string connect_out_of_descriptors(std::uint16_t port) {
  IOLoop loop;
  return loop.run_sync(
      [&]() -> std::string {
        const std::vector<std::string> hosts = {"127.0.0.1", "localhost"};
        // Both work while descriptors are free; this also starts the blocking pool's
        // threads, and lets UBSan's vptr check meet every type on the way (the first
        // time it meets one, it needs a pipe: it cannot while no descriptor is free).
        for (const std::string& host : hosts) (void)TcpStream::connect(host, port, 5s);
        const std::size_t fds_before = open_fd_count();
        rlimit limit{};
        ::getrlimit(RLIMIT_NOFILE, &limit);
        limit.rlim_cur = static_cast<rlim_t>(testing::highest_fd() + 16);
        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return "setrlimit failed";
        std::vector<int> hogs;
        for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) hogs.push_back(fd);
        if (errno != EMFILE) return std::string("exhausting descriptors ended with ") + std::strerror(errno);
        // Only kept while no descriptor is free (UBSan again: the errors' types are
        // new to it), and looked at afterwards.
        std::vector<std::exception_ptr> errors;
        for (const std::string& host : hosts) {
          try {
            (void)TcpStream::connect(host, port, 5s);
            errors.push_back(nullptr);
          } catch (...) {
            errors.push_back(std::current_exception());
          }
        }
        for (int fd : hogs) ::close(fd);
        std::string failures;
        for (std::size_t i = 0; i < hosts.size(); ++i) {
          const std::string& host = hosts[i];
          try {
            if (errors[i]) std::rethrow_exception(errors[i]);
            failures += "connect(" + host + ") succeeded with no descriptor free; ";
          } catch (const std::system_error& e) {
            const std::string what = e.what();
            if (e.code() != std::errc::too_many_files_open)
              failures += "connect(" + host + "): " + e.code().message() + " instead of EMFILE; ";
            if (what.find("TcpStream::connect") == std::string::npos ||
                what.find(std::strerror(EMFILE)) == std::string::npos)
              failures += "the message does not name the call and EMFILE: " + what + "; ";
          } catch (const std::exception& e) {
            failures += "connect(" + host + ") threw something other than std::system_error: " + e.what() + "; ";
          }
        }
        if (open_fd_count() != fds_before) failures += "a descriptor leaked; ";
        try {
          TcpStream again = TcpStream::connect("127.0.0.1", port, 5s);
        } catch (const std::exception& e) {
          failures += std::string("connect failed once descriptors were free: ") + e.what();
        }
        return failures;
      },
      20s);
}

TEST(TcpStreamEmfileTest, ConnectOutOfDescriptorsIsASystemErrorNamingEmfileAndLeaksNothing) {
  RawListener listener;
  EXPECT_EQ(run_in_child([&] { return connect_out_of_descriptors(listener.port); }), "");
}

}  // namespace
}  // namespace fiberloop
