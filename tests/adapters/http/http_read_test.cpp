// read_request() and read_response(), the whole server and client parsing paths,
// driven from memory as a fuzz target drives them: bytes, then StreamClosed.

#include <gtest/gtest.h>

#include "http/http_read.hpp"  // adapters/src: private to the adapters

namespace fiberloop {
namespace {

using namespace std::chrono_literals;
using detail::ResponseEnd;
using detail::WireBuffer;

/// Hands out `input` at most `step` bytes per read, then throws StreamClosed; keeps
/// what is written.
struct MemoryStream {
  explicit MemoryStream(std::string bytes, std::size_t most = 7) : input(std::move(bytes)), step(most) {}
  std::string input;
  std::size_t step;
  std::size_t at = 0;
  std::string written;
  std::size_t read_some(std::span<char> buffer, std::chrono::nanoseconds) {
    if (at == input.size()) throw StreamClosed("memory stream: end of input");
    const std::size_t n = std::min({buffer.size(), step, input.size() - at});
    std::copy_n(input.data() + at, n, buffer.data());
    at += n;
    return n;
  }
  void write_all(std::string_view data, std::chrono::nanoseconds) { written.append(data); }
};

const auto later = std::chrono::steady_clock::now() + std::chrono::hours(1);

TEST(HttpReadTest, ReadRequestReadsPipelinedRequestsAndAnswersExpectContinue) {
  const std::string head = "PUT /a?x=1 HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  // The first read brings exactly the head: the body is not there yet, so the server
  // asks for it with 100 Continue.
  MemoryStream stream{head + "abcGET /b HTTP/1.0\r\n\r\n", head.size()};
  WireBuffer buffer;
  HttpRequest request;
  const HttpServerOptions options;
  detail::RequestRead read = detail::read_request(buffer, stream, options, later, request);
  EXPECT_EQ(read.error_status, 0);
  EXPECT_TRUE(read.keep_alive);
  EXPECT_EQ(request.path, "/a");
  EXPECT_EQ(request.query, "x=1");
  EXPECT_EQ(request.body, "abc");
  EXPECT_EQ(stream.written, "HTTP/1.1 100 Continue\r\n\r\n");
  read = detail::read_request(buffer, stream, options, later, request);
  EXPECT_EQ(read.error_status, 0);
  EXPECT_FALSE(read.keep_alive);
  EXPECT_EQ(request.path, "/b");
  EXPECT_TRUE(request.body.empty()) << "cleared for the next request";
  EXPECT_THROW(detail::read_request(buffer, stream, options, later, request), StreamClosed);
}

TEST(HttpReadTest, ReadRequestGivesTheStatusToRefuseWith) {
  struct Case {
    std::string input;
    int status;
  };
  const std::vector<Case> cases = {
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;" + std::string(5000, 'e') + "\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(20000, 'x') + "\r\n\r\n", 431},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n", 413},
      {"GET / HTTP/2.0\r\n\r\n", 505},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.input.substr(0, 60));
    MemoryStream stream{c.input};
    WireBuffer buffer;
    HttpRequest request;
    EXPECT_EQ(detail::read_request(buffer, stream, HttpServerOptions{}, later, request).error_status, c.status);
  }
}

TEST(HttpReadTest, ReadResponseTellsHowTheConnectionEnds) {
  detail::ResponseExpectation get;
  get.method = "GET";
  get.where = "http://h/";
  {
    MemoryStream stream{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"};
    WireBuffer buffer;
    HttpResponse response;
    EXPECT_EQ(detail::read_response(buffer, stream, later, get, response), ResponseEnd::reusable);
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.body, "ok");
  }
  {
    MemoryStream stream{"HTTP/1.0 200 OK\r\n\r\nuntil the end"};
    WireBuffer buffer;
    HttpResponse response;
    EXPECT_EQ(detail::read_response(buffer, stream, later, get, response), ResponseEnd::close);
    EXPECT_EQ(response.body, "until the end");
  }
  {
    MemoryStream stream{""};
    WireBuffer buffer;
    HttpResponse response;
    EXPECT_EQ(detail::read_response(buffer, stream, later, get, response), ResponseEnd::no_response);
  }
  {
    MemoryStream stream{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nother protocol"};
    WireBuffer buffer;
    HttpResponse response;
    EXPECT_EQ(detail::read_response(buffer, stream, later, get, response), ResponseEnd::close);
    EXPECT_EQ(response.status, 101);
  }
  {
    MemoryStream stream{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"};
    WireBuffer buffer;
    HttpResponse response;
    EXPECT_THROW(detail::read_response(buffer, stream, later, get, response), StreamClosed);
  }
}

}  // namespace
}  // namespace fiberloop
