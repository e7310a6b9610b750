// HttpServer and HttpClient against programs nobody here wrote: curl, wrk, nginx.
// Skipped only when the program is missing (tests/run.sh installs them).

#include <signal.h>
#include <spawn.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "adapters/http/http_test_support.hpp"
#include "support/loop_test.hpp"

extern char** environ;

namespace fiberloop::testing {
namespace {

namespace fs = std::filesystem;

class HttpToolsTest : public LoopTest {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fiberloop-http-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
    LoopTest::TearDown();
  }
  std::string write_file(const std::string& name, const std::string& content) {
    const fs::path path = dir_ / name;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
  }
  fs::path dir_;
};

/// Deterministic, non-repeating-looking content of `n` bytes.
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 12345;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>('a' + (x >> 16) % 26);
  }
  return s;
}

TEST_F(HttpToolsTest, CurlReusesOneConnectionForTwoUrls) {
  ASSERT_TRUE(have_program("/usr/bin/curl")) << missing_peer("curl");
  run_in_fiber([] {
    std::set<std::string> peers;
    HttpServer server([&](const HttpRequest& request) {
      peers.insert(request.remote_address);
      return text_response("body" + request.path + "\n");
    });
    const auto port = server.listen(0);
    const CommandResult curl = run_command("curl -sS -w 'connects=%{num_connects}\\n' " + url_of(port, "/a") + " " +
                                           url_of(port, "/b"));
    EXPECT_EQ(curl.status, 0) << curl.output;
    EXPECT_EQ(curl.output, "body/a\nconnects=1\nbody/b\nconnects=0\n");
    EXPECT_EQ(peers.size(), 1u);
    server.stop();
  }, std::chrono::seconds(30));
}

TEST_F(HttpToolsTest, CurlChunkedUpload) {
  ASSERT_TRUE(have_program("/usr/bin/curl")) << missing_peer("curl");
  const std::string content = pattern(300000);
  const std::string file = write_file("upload.bin", content);
  run_in_fiber([&] {
    std::string received;
    std::string transfer_encoding;
    HttpServer server([&](const HttpRequest& request) {
      received = request.body;
      transfer_encoding = request.headers.get("transfer-encoding");
      return text_response("got " + std::to_string(request.body.size()));
    });
    const auto port = server.listen(0);
    const CommandResult curl = run_command("curl -sS -H 'Transfer-Encoding: chunked' --data-binary @" + file + " " +
                                           url_of(port, "/up"));
    EXPECT_EQ(curl.status, 0) << curl.output;
    EXPECT_EQ(curl.output, "got 300000");
    EXPECT_EQ(transfer_encoding, "chunked");
    EXPECT_TRUE(received == content);
    server.stop();
  }, std::chrono::seconds(30));
}

TEST_F(HttpToolsTest, CurlLargeBodyUsesExpectContinue) {
  ASSERT_TRUE(have_program("/usr/bin/curl")) << missing_peer("curl");
  const std::string content = pattern(2 << 20);
  const std::string file = write_file("big.bin", content);
  run_in_fiber([&] {
    std::string expect;
    bool same = false;
    HttpServerOptions options;
    options.max_body_bytes = 4 << 20;
    HttpServer server(
        [&](const HttpRequest& request) {
          expect = request.headers.get("expect");
          same = request.body == content;
          return text_response("stored");
        },
        options);
    const auto port = server.listen(0);
    const CommandResult curl = run_command("curl -sS -v --data-binary @" + file + " " + url_of(port, "/big"));
    EXPECT_EQ(curl.status, 0) << curl.output;
    EXPECT_NE(curl.output.find("< HTTP/1.1 100 Continue"), std::string::npos) << curl.output;
    EXPECT_TRUE(curl.output.ends_with("stored")) << curl.output.substr(curl.output.size() - 200);
    EXPECT_EQ(expect, "100-continue");
    EXPECT_TRUE(same);
    server.stop();
  }, std::chrono::seconds(30));
}

TEST_F(HttpToolsTest, CurlSees413ForABodyOverTheLimit) {
  ASSERT_TRUE(have_program("/usr/bin/curl")) << missing_peer("curl");
  const std::string file = write_file("too-big.bin", pattern(3 << 20));
  run_in_fiber([&] {
    HttpServer server([&](const HttpRequest&) { return text_response("no"); });
    const auto port = server.listen(0);
    const CommandResult curl =
        run_command("curl -sS -o /dev/null -w '%{http_code}' --data-binary @" + file + " " + url_of(port, "/big"));
    EXPECT_EQ(curl.output, "413") << curl.output;
    server.stop();
  }, std::chrono::seconds(30));
}

TEST_F(HttpToolsTest, WrkSmokeLoadHasNoErrors) {
  ASSERT_TRUE(have_program("/usr/bin/wrk")) << missing_peer("wrk");
  run_in_fiber([] {
    HttpServer server([](const HttpRequest&) { return text_response("Hello, World!"); });
    const auto port = server.listen(0);
    const CommandResult wrk = run_command("wrk -t1 -c50 -d1s " + url_of(port, "/"));
    EXPECT_EQ(wrk.status, 0) << wrk.output;
    // wrk prints these lines only when there were any.
    EXPECT_EQ(wrk.output.find("Socket errors"), std::string::npos) << wrk.output;
    EXPECT_EQ(wrk.output.find("Non-2xx"), std::string::npos) << wrk.output;
    // "  12345 requests in 1.00s, ..." (no std::regex: GCC 12 warns inside it under ASan)
    const auto in = wrk.output.find(" requests in ");
    ASSERT_NE(in, std::string::npos) << wrk.output;
    const auto start = wrk.output.find_last_not_of("0123456789", in - 1) + 1;
    ASSERT_LT(start, in) << wrk.output;
    EXPECT_GT(std::stol(wrk.output.substr(start, in - start)), 100) << wrk.output;
    server.stop();
  }, std::chrono::seconds(30));
}

TEST_F(HttpToolsTest, ClientAgainstNginx) {
  ASSERT_TRUE(have_program("/usr/sbin/nginx")) << missing_peer("nginx-light");
  const std::uint16_t port = unused_port();
  const std::string d = dir_.string();
  const std::string page = pattern(50000);
  write_file("www/page.txt", page);
  write_file("www/filtered.html", "<p>alpha beta alpha</p>\n");
  for (const char* sub : {"body", "proxy", "fastcgi", "uwsgi", "scgi"}) fs::create_directories(dir_ / "tmp" / sub);
  const std::string conf = write_file(
      "nginx.conf",
      "worker_processes 1;\nerror_log " + d + "/error.log;\npid " + d + "/nginx.pid;\n"
      "events { worker_connections 64; }\n"
      "http {\n  access_log off;\n  client_body_temp_path " + d + "/tmp/body;\n  proxy_temp_path " + d +
      "/tmp/proxy;\n  fastcgi_temp_path " + d + "/tmp/fastcgi;\n  uwsgi_temp_path " + d + "/tmp/uwsgi;\n"
      "  scgi_temp_path " + d + "/tmp/scgi;\n  keepalive_timeout 30s;\n"
      "  server {\n    listen 127.0.0.1:" + std::to_string(port) + ";\n    root " + d + "/www;\n    gzip off;\n"
      "    location = /hello { return 200 \"hello from nginx\"; }\n"
      "    location = /moved { return 302 /hello; }\n"
      // sub_filter rewrites the body, so its length is unknown: nginx sends it chunked.
      "    location = /filtered.html { chunked_transfer_encoding on; sub_filter 'alpha' 'omega'; sub_filter_once off; }\n"
      "  }\n}\n");
  const std::string prefix = d + "/";
  std::vector<std::string> args = {"/usr/sbin/nginx", "-p", prefix, "-c", conf, "-g", "daemon off;"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t nginx = 0;
  ASSERT_EQ(::posix_spawn(&nginx, argv[0], nullptr, nullptr, argv.data(), environ), 0);
  struct Stop {
    pid_t pid;
    ~Stop() {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  } stop{nginx};

  run_in_fiber([&] {
    // nginx announces readiness nowhere we can wait on: poll until it accepts.
    for (int i = 0;; ++i) {
      try {
        TcpStream probe = TcpStream::connect("127.0.0.1", port, std::chrono::seconds(1));
        break;
      } catch (const std::system_error&) {
        ASSERT_LT(i, 200) << "nginx did not start listening; see " << d << "/error.log";
        sleep_for(std::chrono::milliseconds(25));
      }
    }
    HttpClient client;
    const HttpResponse hello = wait_for_future(client.fetch(url_of(port, "/hello")));
    EXPECT_EQ(hello.status, 200);
    EXPECT_EQ(hello.body, "hello from nginx");
    EXPECT_NE(hello.headers.get("server").find("nginx"), std::string::npos);

    const HttpResponse file = wait_for_future(client.fetch(url_of(port, "/page.txt")));
    EXPECT_EQ(file.headers.get("content-length"), "50000");
    EXPECT_TRUE(file.body == page);

    const HttpResponse chunked = wait_for_future(client.fetch(url_of(port, "/filtered.html")));
    EXPECT_EQ(chunked.headers.get("transfer-encoding"), "chunked");
    EXPECT_EQ(chunked.body, "<p>omega beta omega</p>\n");

    EXPECT_EQ(wait_for_future(client.fetch(url_of(port, "/missing"))).status, 404);
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port, "/moved"))).status, 302);
    FetchOptions follow;
    follow.follow_redirects = true;
    EXPECT_EQ(wait_for_future(client.fetch(url_of(port, "/moved"), follow)).body, "hello from nginx");
  }, std::chrono::seconds(30));
}

}  // namespace
}  // namespace fiberloop::testing
