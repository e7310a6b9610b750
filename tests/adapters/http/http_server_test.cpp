// HttpServer against raw sockets and our own client: routing, keep-alive,
// pipelining, chunked bodies, 100-continue, every error status, handler failures.

#include "support/loop_test.hpp"
#include "adapters/http/http_test_support.hpp"

namespace fiberloop::testing {
namespace {

using namespace std::chrono_literals;

class HttpServerTest : public LoopTest {};

/// Echoes what the handler saw, one item per line.
HttpResponse echo(const HttpRequest& request) {
  return text_response(request.method + "\n" + request.path + "\n" + request.query + "\n" +
              request.headers.get("x-test", "-") + "\n" + request.body);
}

TEST_F(HttpServerTest, GetAndPostWithBodiesAndPathQuerySplit) {
  run_in_fiber([] {
    HttpServer server(echo);
    const auto port = server.listen(0);
    HttpClient client;
    FetchOptions post;
    post.method = "POST";
    post.body = std::string(100000, 'b');
    post.headers.add("X-Test", "yes");
    const HttpResponse got = wait_for_future(client.fetch(url_of(port, "/a/b?x=1&y=2")));
    EXPECT_EQ(got.status, 200);
    EXPECT_EQ(got.body, "GET\n/a/b\nx=1&y=2\n-\n");
    EXPECT_EQ(got.headers.get("server"), "fiberloop");
    const HttpResponse posted = wait_for_future(client.fetch(url_of(port, "/p"), post));
    EXPECT_EQ(posted.body, "POST\n/p\n\nyes\n" + post.body);
    server.stop();
  });
}

TEST_F(HttpServerTest, ARequestDeadlineBoundsTheHandlerAndAnswers504) {
  run_in_fiber([&] {
    int reported = 0;
    loop_.set_unhandled_exception_handler([&reported](std::exception_ptr, const std::string&) { ++reported; });
    HttpServerOptions options;
    options.request_deadline = 200ms;
    HttpServer server(
        [](const HttpRequest& request) {
          if (request.path == "/slow") sleep_for(10s);  // the deadline cuts it
          return text_response(Deadline::current() ? "bounded\n" : "unbounded\n");
        },
        options);
    const auto port = server.listen(0);
    HttpClient client;
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port, "/fast"))).body, "bounded\n");
    const auto start = std::chrono::steady_clock::now();
    const HttpResponse cut = wait_for_future(client.fetch(url_of(port, "/slow")));
    EXPECT_EQ(cut.status, 504);
    EXPECT_LT(elapsed_ms(start), 3000.0);
    EXPECT_EQ(reported, 1);
    server.stop();
  });
}

TEST_F(HttpServerTest, TheDumpPathListsTheFibersOfRequestsInProgress) {
  run_in_fiber([&] {
    HttpServerOptions options;
    options.dump_path = "/debug/fibers";
    options.request_deadline = 20s;
    int sleep_line = 0;
    HttpServer server(
        [&sleep_line](const HttpRequest&) {
          sleep_line = __LINE__ + 1;
          sleep_for(300ms);
          return text_response("slept\n");
        },
        options);
    const auto port = server.listen(0);
    HttpClient client;
    Future<HttpResponse> slow = client.fetch(url_of(port, "/slow"));
    sleep_for(100ms);
    const HttpResponse dump = wait_for_future(client.fetch(url_of(port, "/debug/fibers")));
    EXPECT_EQ(dump.status, 200);
    EXPECT_EQ(dump.headers.get("content-type"), "text/plain; charset=utf-8");
    EXPECT_NE(dump.body.find("sleep_for() at "), std::string::npos) << dump.body;
    EXPECT_NE(dump.body.find("http_server_test.cpp:" + std::to_string(sleep_line)), std::string::npos) << dump.body;
    EXPECT_NE(dump.body.find("deadline +"), std::string::npos) << dump.body;
    EXPECT_EQ(wait_for_future(slow).body, "slept\n");
    FetchOptions post;
    post.method = "POST";
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port, "/debug/fibers"), post)).body, "slept\n")
        << "only a GET of the path is the dump";
    server.stop();
  });
}

TEST_F(HttpServerTest, HeaderLookupIgnoresCase) {
  run_in_fiber([] {
    HttpServer server(echo);
    TcpStream stream = TcpStream::connect("127.0.0.1", server.listen(0));
    stream.write_all("GET / HTTP/1.1\r\nhOsT: x\r\nx-TEST: MiXed\r\n\r\n");
    detail::WireBuffer buffer;
    EXPECT_EQ(read_response(stream, buffer).body, "GET\n/\n\nMiXed\n");
    stream.close();
    server.stop();
  });
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  run_in_fiber([] {
    HttpServer server([](const HttpRequest& request) {
      if (request.path == "/slow") sleep_for(std::chrono::milliseconds(30));  // finishing first would not help
      return text_response(request.path);
    });
    TcpStream stream = TcpStream::connect("127.0.0.1", server.listen(0));
    stream.write_all(
        "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        "POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    detail::WireBuffer buffer;
    EXPECT_EQ(read_response(stream, buffer).body, "/slow");
    EXPECT_EQ(read_response(stream, buffer).body, "/fast");
    const HttpResponse last = read_response(stream, buffer);
    EXPECT_EQ(last.body, "/last");
    EXPECT_EQ(last.headers.get("connection"), "close");
    EXPECT_EQ(read_to_eof(stream), "");
    stream.close();  // else the server's lingering close waits for us
    server.stop();
  });
}

TEST_F(HttpServerTest, ChunkedRequestBodyIsDechunked) {
  run_in_fiber([] {
    HttpServer server(echo);
    TcpStream stream = TcpStream::connect("127.0.0.1", server.listen(0));
    stream.write_all("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n");
    stream.write_all("5\r\npedia\r\n0\r\n\r\n");
    detail::WireBuffer buffer;
    EXPECT_EQ(read_response(stream, buffer).body, "POST\n/c\n\n-\nWikipedia");
    stream.close();
    server.stop();
  });
}

TEST_F(HttpServerTest, ExpectContinueGets100BeforeTheBodyIsSent) {
  run_in_fiber([] {
    HttpServer server(echo);
    TcpStream stream = TcpStream::connect("127.0.0.1", server.listen(0));
    stream.write_all("PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    EXPECT_EQ(stream.read_until("\r\n\r\n", 1000, std::chrono::seconds(5)), "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all("data");
    detail::WireBuffer buffer;
    const HttpResponse response = read_response(stream, buffer);
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.body, "PUT\n/e\n\n-\ndata");
    stream.close();
    server.stop();
  });
}

struct BadInput {
  const char* name;
  std::string request;
  int status;
};

TEST_F(HttpServerTest, BadInputGetsItsStatusAndAClosedConnection) {
  const std::vector<BadInput> cases = {
      {"garbage request line", "GARBAGE\r\n\r\n", 400},
      {"space in the target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"header without colon", "GET / HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n", 400},
      {"1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400},
      {"bad content length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n", 400},
      {"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {"headers too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(3000, 'a') + "\r\n\r\n", 431},
      {"declared body too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413},
      {"chunked body too large",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + std::string(2048, 'z') + "\r\n",
       413},
      {"HTTP/2 prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
      {"HTTP/3.0", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505},
      {"garbage version", "GET / HTTP/1.x\r\nHost: x\r\n\r\n", 505},
      {"HTTP/2 without minor", "GET / HTTP/2\r\nHost: x\r\n\r\n", 505},
      {"not HTTP at all", "GET / HTXP/1.1\r\nHost: x\r\n\r\n", 400},
  };
  run_in_fiber([&] {
    int handled = 0;
    HttpServerOptions options;
    options.max_header_bytes = 2048;
    options.max_body_bytes = 1024;
    HttpServer server(
        [&](const HttpRequest&) {
          ++handled;
          return text_response("should not run");
        },
        options);
    const auto port = server.listen(0);
    for (const BadInput& bad : cases) {
      SCOPED_TRACE(bad.name);
      TcpStream stream = TcpStream::connect("127.0.0.1", port);
      stream.write_all(bad.request);
      const std::string reply = read_to_eof(stream);  // ends: the server closed
      EXPECT_TRUE(reply.starts_with("HTTP/1.1 " + std::to_string(bad.status) + " ")) << reply;
      EXPECT_NE(reply.find("Connection: close\r\n"), std::string::npos) << reply;
    }
    EXPECT_EQ(handled, 0);
    server.stop();
  });
}

TEST_F(HttpServerTest, RandomBytesNeverCrashAndTheServerGoesOn) {
  run_in_fiber([] {
    HttpServerOptions options;
    options.header_timeout = std::chrono::milliseconds(200);
    HttpServer server([](const HttpRequest& request) { return text_response(request.path); }, options);
    const auto port = server.listen(0);
    std::uint32_t x = 7;
    const std::string alphabet = "GET/ HTTP1.0\r\n:;chunked0123456789abcdefContent-Length\x00\xff";
    for (int round = 0; round < 40; ++round) {
      std::string junk = round % 2 ? "POST / HTTP/1.1\r\nHost: x\r\n" : "";
      for (int i = 0; i < 200; ++i) {
        x = x * 1664525u + 1013904223u;
        junk.push_back(alphabet[(x >> 8) % alphabet.size()]);
      }
      junk.append("\r\n\r\n");
      TcpStream stream = TcpStream::connect("127.0.0.1", port);
      stream.write_all(junk);
      const std::string reply = read_to_eof(stream);  // a 4xx/5xx, or a plain close
      EXPECT_TRUE(reply.empty() || reply.starts_with("HTTP/1.1 4") || reply.starts_with("HTTP/1.1 5") ||
                  reply.starts_with("HTTP/1.1 200"))
          << reply;
    }
    TcpStream stream = TcpStream::connect("127.0.0.1", port);
    stream.write_all("GET /still-up HTTP/1.1\r\nHost: x\r\n\r\n");
    detail::WireBuffer buffer;
    EXPECT_EQ(read_response(stream, buffer).body, "/still-up");
    stream.close();
    server.stop();
  });
}

TEST_F(HttpServerTest, SlowHeadersOrBodyGet408) {
  run_in_fiber([] {
    HttpServerOptions options;
    options.header_timeout = std::chrono::milliseconds(150);
    options.body_timeout = std::chrono::milliseconds(150);
    HttpServer server(echo, options);
    const auto port = server.listen(0);
    for (const std::string& partial :
         {std::string("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "), std::string("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"),
          std::string()}) {
      SCOPED_TRACE(partial);
      const auto start = std::chrono::steady_clock::now();
      TcpStream stream = TcpStream::connect("127.0.0.1", port);
      if (!partial.empty()) stream.write_all(partial);
      const std::string reply = read_to_eof(stream);
      EXPECT_TRUE(reply.starts_with("HTTP/1.1 408 ")) << reply;
      EXPECT_GE(elapsed_ms(start), 140);
    }
    server.stop();
  });
}

TEST_F(HttpServerTest, HandlerExceptionGives500WithoutDetailAndTheConnectionGoesOn) {
  std::vector<std::string> reports;
  loop_.set_unhandled_exception_handler([&](std::exception_ptr error, const std::string& where) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      reports.push_back(where + ": " + e.what());
    }
  });
  run_in_fiber([&] {
    HttpServer server([](const HttpRequest& request) {
      if (request.path == "/boom") throw std::runtime_error("secret database password");
      return text_response("fine");
    });
    TcpStream stream = TcpStream::connect("127.0.0.1", server.listen(0));
    detail::WireBuffer buffer;
    stream.write_all("GET /boom HTTP/1.1\r\nHost: x\r\n\r\n");
    const HttpResponse failed = read_response(stream, buffer);
    EXPECT_EQ(failed.status, 500);
    EXPECT_EQ(failed.body.find("secret"), std::string::npos);
    stream.write_all("GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(read_response(stream, buffer).body, "fine");
    stream.close();
    server.stop();
  });
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("secret database password"), std::string::npos) << reports[0];
  EXPECT_NE(reports[0].find("/boom"), std::string::npos) << reports[0];
}

TEST_F(HttpServerTest, HandlersWaitOnFuturesWithoutBlockingOtherConnections) {
  run_in_fiber([&] {
    Promise<std::string> gate;
    Future<std::string> opened = gate.get_future();
    HttpServer server([&](const HttpRequest& request) {
      if (request.path == "/wait") return text_response(wait_for_future(opened, std::chrono::seconds(5)));
      gate.set_value("opened by /open");
      return text_response("opening");
    });
    const auto port = server.listen(0);
    HttpClient client;
    Future<HttpResponse> waiting = client.fetch(url_of(port, "/wait"));
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port, "/open"))).body, "opening");
    EXPECT_EQ(wait_for_future(waiting).body, "opened by /open");
    server.stop();
  });
}

TEST_F(HttpServerTest, Http10WithoutKeepAliveClosesAfterTheResponse) {
  run_in_fiber([] {
    HttpServer server(echo);
    const auto port = server.listen(0);
    TcpStream plain = TcpStream::connect("127.0.0.1", port);
    plain.write_all("GET /old HTTP/1.0\r\n\r\n");
    const std::string reply = read_to_eof(plain);
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 200 OK\r\n")) << reply;
    EXPECT_NE(reply.find("Content-Length: 12\r\n"), std::string::npos) << reply;
    EXPECT_NE(reply.find("Connection: close\r\n"), std::string::npos) << reply;
    EXPECT_TRUE(reply.ends_with("\r\n\r\nGET\n/old\n\n-\n")) << reply;

    TcpStream kept = TcpStream::connect("127.0.0.1", port);
    kept.write_all("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n");
    detail::WireBuffer buffer;
    const HttpResponse first = read_response(kept, buffer);
    EXPECT_EQ(first.headers.get("connection"), "keep-alive");
    EXPECT_EQ(read_response(kept, buffer).body, "GET\n/b\n\n-\n");
    EXPECT_EQ(read_to_eof(kept), "");
    plain.close();  // else the server's lingering close waits for us
    kept.close();
    server.stop();
  });
}

TEST_F(HttpServerTest, StopClosesIdleKeptAliveConnectionsAtOnce) {
  run_in_fiber([] {
    HttpServer server(echo);
    TcpStream stream = TcpStream::connect("127.0.0.1", server.listen(0));
    stream.write_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    detail::WireBuffer buffer;
    EXPECT_EQ(read_response(stream, buffer).status, 200);
    const auto start = std::chrono::steady_clock::now();
    server.stop(std::chrono::seconds(5));
    EXPECT_LT(elapsed_ms(start), 1000);
    EXPECT_EQ(read_to_eof(stream), "");
  });
}

TEST_F(HttpServerTest, StopLetsARequestInProgressFinishWithConnectionClose) {
  run_in_fiber([&] {
    Promise<void> entered;
    HttpServer server([&](const HttpRequest&) {
      entered.set_value();
      sleep_for(std::chrono::milliseconds(50));  // still running when stop() begins
      return text_response("finished");
    });
    TcpStream stream = TcpStream::connect("127.0.0.1", server.listen(0));
    stream.write_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_for_future(entered.get_future(), std::chrono::seconds(5));
    Promise<void> stopped;
    loop_.add_callback([&] {  // stop_async works from a plain loop callback
      server.stop_async(std::chrono::seconds(5)).add_done_callback([&](const Future<void>&) { stopped.set_value(); });
    });
    detail::WireBuffer buffer;
    const HttpResponse response = read_response(stream, buffer);
    EXPECT_EQ(response.body, "finished");
    EXPECT_EQ(response.headers.get("connection"), "close");
    EXPECT_EQ(read_to_eof(stream), "");
    stream.close();
    wait_for_future(stopped.get_future(), std::chrono::seconds(5));
  });
}

TEST_F(HttpServerTest, DestroyedWithoutStopWhileConnectionsLiveIsSafe) {
  run_in_fiber([&] {
    Promise<void> entered;
    Promise<void> release;
    Future<void> released = release.get_future();
    TcpStream busy;
    TcpStream idle;
    {
      HttpServer server([&](const HttpRequest& request) {
        if (request.path == "/busy") {
          entered.set_value();
          wait_for_future(released, std::chrono::seconds(5));
        }
        return text_response("ok");
      });
      const auto port = server.listen(0);
      idle = TcpStream::connect("127.0.0.1", port);
      idle.write_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      detail::WireBuffer buffer;
      EXPECT_EQ(read_response(idle, buffer).body, "ok");
      busy = TcpStream::connect("127.0.0.1", port);
      busy.write_all("GET /busy HTTP/1.1\r\nHost: x\r\n\r\n");
      wait_for_future(entered.get_future(), std::chrono::seconds(5));
    }  // ~HttpServer: the handler is still waiting
    release.set_value();
    EXPECT_EQ(read_to_eof(idle), "");
    read_to_eof(busy);  // the response or nothing, then the close
    busy.close();
    idle.close();
    // The connection fibers end on their own (no event to wait on): poll, bounded.
    for (int i = 0; i < 2000 && loop_.live_fibers() > 1; ++i) sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(loop_.live_fibers(), 1u) << "connection fibers outlived the closed sockets";
  });
}

}  // namespace
}  // namespace fiberloop::testing
