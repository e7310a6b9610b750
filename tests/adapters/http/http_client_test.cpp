// HttpClient against our HttpServer and hand-made TcpServer peers: timeouts,
// refused connections, redirects, pooling and its retry, callers on any thread.

#include <set>
#include <thread>

#include "adapters/http/http_test_support.hpp"
#include "support/loop_test.hpp"

namespace fiberloop::testing {
namespace {

class HttpClientTest : public LoopTest {};

TEST_F(HttpClientTest, RequestTimeoutThrowsTimeoutError) {
  run_in_fiber([] {
    Promise<void> release;
    Future<void> released = release.get_future();
    HttpServer server([&](const HttpRequest&) {
      wait_for_future(released, std::chrono::seconds(5));
      return text_response("late");
    });
    const auto port = server.listen(0);
    HttpClient client;
    FetchOptions options;
    options.request_timeout = std::chrono::milliseconds(100);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(wait_for_future(client.fetch(url_of(port), options)), TimeoutError);
    EXPECT_LT(elapsed_ms(start), 2000);
    release.set_value();
    server.stop();
  });
}

TEST_F(HttpClientTest, ARequestDeadlineCutsTheFetchAndItsHalfUsedConnectionIsNotPooled) {
  run_in_fiber([] {
    Promise<void> release;
    Future<void> released = release.get_future();
    std::string slow_peer;
    HttpServer server([&](const HttpRequest& request) {
      if (request.path == "/slow") {
        slow_peer = request.remote_address;
        wait_for_future(released, std::chrono::seconds(5));
      }
      return text_response(request.remote_address);
    });
    const auto port = server.listen(0);
    HttpClient client;
    const auto start = std::chrono::steady_clock::now();
    {
      Deadline deadline(std::chrono::milliseconds(200));  // the fetch's fiber captures it
      EXPECT_THROW(wait_for_future(client.fetch(url_of(port, "/slow"))), TimeoutError);
    }
    EXPECT_LT(elapsed_ms(start), 2000);
    const std::string first = wait_for_future(client.fetch(url_of(port, "/fast"))).body;
    const std::string again = wait_for_future(client.fetch(url_of(port, "/fast"))).body;
    EXPECT_FALSE(slow_peer.empty());
    EXPECT_NE(first, slow_peer) << "the connection cut mid-response was reused";
    EXPECT_EQ(again, first) << "pooling works otherwise";
    release.set_value();
    server.stop();
  });
}

TEST_F(HttpClientTest, ConnectTimeoutThrowsTimeoutError) {
  run_in_fiber([] {
    // A listener that never accepts, with its backlog full: the kernel drops further
    // SYNs, so connecting hangs until our timeout.
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    socklen_t length = sizeof address;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
    ASSERT_EQ(::listen(listener, 0), 0);
    const std::uint16_t port = ntohs(address.sin_port);
    std::vector<TcpStream> fillers;
    bool full = false;
    for (int i = 0; i < 16 && !full; ++i) {
      try {
        fillers.push_back(TcpStream::connect("127.0.0.1", port, std::chrono::milliseconds(100)));
      } catch (const TimeoutError&) {
        full = true;
      }
    }
    if (!full) {
      ::close(listener);
      GTEST_SKIP() << "this kernel accepts connections past a full backlog";
    }
    HttpClient client;
    FetchOptions options;
    options.connect_timeout = std::chrono::milliseconds(150);
    options.request_timeout = std::chrono::seconds(5);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THROW(wait_for_future(client.fetch(url_of(port), options)), TimeoutError);
    EXPECT_LT(elapsed_ms(start), 1000);
    ::close(listener);
  });
}

TEST_F(HttpClientTest, ConnectionRefusedIsASystemError) {
  run_in_fiber([] {
    HttpClient client;
    EXPECT_THROW(wait_for_future(client.fetch(url_of(unused_port()))), std::system_error);
  });
}

TEST_F(HttpClientTest, BadAndHttpsUrlsFailWithAClearError) {
  run_in_fiber([] {
    HttpClient client;
    try {
      wait_for_future(client.fetch("https://example.com/"));
      ADD_FAILURE() << "https did not fail";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("https is not supported"), std::string::npos) << e.what();
    }
    EXPECT_THROW(wait_for_future(client.fetch("ftp://host/")), Error);
    EXPECT_THROW(wait_for_future(client.fetch("http://host:99999/")), Error);
    EXPECT_THROW(wait_for_future(client.fetch("no-scheme")), Error);
  });
}

TEST_F(HttpClientTest, RedirectsAreOffByDefaultAndFollowedOnRequest) {
  run_in_fiber([] {
    HttpServer server([](const HttpRequest& request) {
      HttpResponse response = text_response("at " + request.path + " by " + request.method);
      if (request.path == "/start") {
        response.status = 302;
        response.headers.add("Location", "/middle?q=1");
      } else if (request.path == "/middle") {
        response.status = 303;
        response.headers.add("Location", "end#top");  // relative to /middle; the fragment stays here
      } else if (request.path == "/spaced") {
        response.status = 302;
        response.headers.add("Location", "/a b HTTP/1.0");  // legal in a field, not on a request line
      } else if (request.path == "/loop") {
        response.status = 307;
        response.headers.add("Location", "/loop");
      }
      return response;
    });
    const auto port = server.listen(0);
    HttpClient client;
    const HttpResponse plain = wait_for_future(client.fetch(url_of(port, "/start")));
    EXPECT_EQ(plain.status, 302);
    EXPECT_EQ(plain.headers.get("location"), "/middle?q=1");

    FetchOptions follow;
    follow.follow_redirects = true;
    follow.method = "POST";
    follow.body = "x";
    const HttpResponse followed = wait_for_future(client.fetch(url_of(port, "/start"), follow));
    EXPECT_EQ(followed.status, 200);
    EXPECT_EQ(followed.body, "at /end by GET");

    follow.max_redirects = 3;
    try {
      wait_for_future(client.fetch(url_of(port, "/loop"), follow));
      ADD_FAILURE() << "a redirect loop did not fail";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("more than 3 redirects"), std::string::npos) << e.what();
    }
    try {
      wait_for_future(client.fetch(url_of(port, "/spaced"), follow));
      ADD_FAILURE() << "a Location with spaces was followed";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("percent-encode"), std::string::npos) << e.what();
    }
    server.stop();
  });
}

TEST_F(HttpClientTest, StalePooledConnectionIsRetriedOnceForGet) {
  run_in_fiber([] {
    // Serves one request per connection but claims keep-alive, then closes: the
    // client pools a connection that is dead by the time it is reused.
    int connections = 0;
    Promise<void> first_closed;
    TcpServer server([&](TcpStream& stream) {
      const int number = ++connections;
      stream.read_until("\r\n\r\n", 8192, std::chrono::seconds(5));
      stream.write_all("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + std::to_string(number));
      stream.close();
      if (number == 1) first_closed.set_value();
    });
    const auto port = server.listen(0);
    HttpClient client;
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port))).body, "1");
    wait_for_future(first_closed.get_future(), std::chrono::seconds(5));
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port))).body, "2");
    EXPECT_EQ(connections, 2);
    // A POST is not retried; the client checks the pooled connection first instead.
    FetchOptions post;
    post.method = "POST";
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port), post)).body, "3");
    server.stop();
  });
}

TEST_F(HttpClientTest, IdlePooledConnectionsAreClosedAfterIdleTimeout) {
  run_in_fiber([] {
    Promise<void> client_closed;
    TcpServer server([&](TcpStream& stream) {
      stream.read_until("\r\n\r\n", 8192, std::chrono::seconds(5));
      stream.write_all("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      try {
        stream.read_until("\r\n\r\n", 8192, std::chrono::seconds(5));
      } catch (const StreamClosed&) {
        client_closed.set_value();  // the client's idle sweep closed it
      }
    });
    const auto port = server.listen(0);
    HttpClientOptions options;
    options.idle_timeout = std::chrono::milliseconds(50);
    HttpClient client(options);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port))).body, "ok");
    wait_for_future(client_closed.get_future(), std::chrono::seconds(3));
    EXPECT_GE(elapsed_ms(start), 45);
    server.stop();
  });
}

TEST_F(HttpClientTest, ReusesConnectionsPerHost) {
  run_in_fiber([] {
    std::set<std::string> peers;
    HttpServer server([&](const HttpRequest& request) {
      peers.insert(request.remote_address);
      return text_response("ok");
    });
    const auto port = server.listen(0);
    HttpClient client;
    // Three at once need three connections; afterwards they are reused.
    std::vector<Future<HttpResponse>> batch;
    for (int i = 0; i < 3; ++i) batch.push_back(client.fetch(url_of(port)));
    for (auto& f : batch) EXPECT_EQ(wait_for_future(f).status, 200);
    for (int i = 0; i < 6; ++i) EXPECT_EQ(wait_for_future(client.fetch(url_of(port))).status, 200);
    EXPECT_EQ(peers.size(), 3u);
    server.stop();
  });
}

TEST_F(HttpClientTest, FetchWorksFromALoopCallbackAndFromAnotherThread) {
  run_in_fiber([&] {
    HttpServer server([](const HttpRequest& request) { return text_response("hi " + request.path); });
    const auto port = server.listen(0);
    HttpClient client;

    Promise<std::string> from_callback;
    loop_.add_callback([&] {
      client.fetch(url_of(port, "/cb")).add_done_callback([&](const Future<HttpResponse>& f) {
        from_callback.set_value(f.result().body);
      });
    });
    EXPECT_EQ(wait_for_future(from_callback.get_future(), std::chrono::seconds(5)), "hi /cb");

    Promise<std::string> from_thread;
    std::thread thread([&] {
      try {
        // A plain thread: wait_for_future blocks it while the loop serves both ends.
        from_thread.set_value(wait_for_future(client.fetch(url_of(port, "/thread"))).body);
      } catch (...) {
        from_thread.set_exception(std::current_exception());
      }
    });
    EXPECT_EQ(wait_for_future(from_thread.get_future(), std::chrono::seconds(5)), "hi /thread");
    thread.join();
    server.stop();
  });
}

TEST_F(HttpClientTest, HeadAndLargeResponses) {
  run_in_fiber([] {
    const std::string big(3 << 20, 'x');
    HttpServer server([&](const HttpRequest&) { return text_response(big); });
    const auto port = server.listen(0);
    HttpClient client;
    FetchOptions head;
    head.method = "HEAD";
    const HttpResponse headers_only = wait_for_future(client.fetch(url_of(port), head));
    EXPECT_EQ(headers_only.headers.get("content-length"), std::to_string(big.size()));
    EXPECT_TRUE(headers_only.body.empty());
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port))).body.size(), big.size());
    FetchOptions small;
    small.max_body_bytes = 1000;
    EXPECT_THROW(wait_for_future(client.fetch(url_of(port), small)), Error);
    server.stop();
  });
}

TEST_F(HttpClientTest, ReadsCloseDelimitedAndChunkedResponses) {
  run_in_fiber([] {
    TcpServer server([&](TcpStream& stream) {
      const std::string request = stream.read_until("\r\n\r\n", 8192, std::chrono::seconds(5));
      if (request.starts_with("GET /old ")) {
        // HTTP/1.0 style: no length, the body ends when the connection does.
        stream.write_all("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end");
        stream.close();
        return;
      }
      stream.write_all("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nchunky\r\n");
      stream.write_all("7\r\n bacon!\r\n0\r\n\r\n");
      stream.read_until("\r\n\r\n", 8192, std::chrono::seconds(5));  // the next request reuses it
      stream.write_all("HTTP/1.1 204 No Content\r\n\r\n");
    });
    const auto port = server.listen(0);
    HttpClient client;
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port, "/old"))).body, "until the end");
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port, "/chunked"))).body, "chunky bacon!");
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port, "/again"))).status, 204);
    server.stop();
  });
}


// A client may outlive its loop (a pooled connection and the sweep timer pending):
// destroying it then touches nothing of the loop, and a fetch fails with LoopClosed.
// (Before: remove_timeout, remove_handler and spawn on the destroyed loop,
// heap-use-after-free under ASan.)
TEST(HttpClientLoopTest, ClientDestroyedAfterItsLoopClosesItsConnectionsOnly) {
  auto loop = std::make_unique<IOLoop>();
  auto client = std::make_unique<HttpClient>(HttpClient::Options{}, *loop);
  HttpServer server([](const HttpRequest&) { return text_response("ok"); }, {}, *loop);
  const auto port = server.listen(0);
  loop->run_sync([&] {
    EXPECT_EQ(wait_for_future(client->fetch(url_of(port))).status, 200);  // pooled afterwards
    server.stop();
  });
  loop.reset();
  const Future<HttpResponse> late = client->fetch(url_of(port));
  ASSERT_TRUE(late.done());
  EXPECT_THROW(late.result(), LoopClosed);
  client.reset();
}

}  // namespace
}  // namespace fiberloop::testing
