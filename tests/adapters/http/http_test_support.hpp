#pragma once
// Helpers shared by the HTTP tests: raw-socket reads, running external programs.

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

#include <fiberloop/fiberloop.hpp>
#include <fiberloop/net/tcp_server.hpp>
#include <fiberloop/net/tcp_stream.hpp>

#include "http/http_wire.hpp"  // adapters/src: private to the adapters

namespace fiberloop::testing {

inline std::string url_of(std::uint16_t port, const std::string& target = "/") {
  return "http://127.0.0.1:" + std::to_string(port) + target;
}

/// A text/plain response.
inline HttpResponse text_response(std::string body, int status = 200) {
  HttpResponse response;
  response.status = status;
  response.headers.add("Content-Type", "text/plain");
  response.body = std::move(body);
  return response;
}

/// Everything the peer sends until it closes (each read may wait 5 s).
inline std::string read_to_eof(TcpStream& stream) {
  std::string all;
  char buffer[4096];
  try {
    for (;;) all.append(buffer, stream.read_some(std::span<char>(buffer, sizeof buffer), std::chrono::seconds(5)));
  } catch (const StreamClosed&) {
  }
  return all;
}

/// One response parsed from `stream` (bytes after it stay in `buffer`).
inline HttpResponse read_response(TcpStream& stream, detail::WireBuffer& buffer) {
  HttpResponse response;
  detail::MessageParser<false> parser(response);
  const auto ec = detail::feed(parser, buffer, stream, std::chrono::steady_clock::now() + std::chrono::seconds(5),
                               detail::ParseUntil::message);
  if (ec) throw Error("bad response: " + ec.message());
  return response;
}

struct CommandResult {
  int status = -1;  // exit status, -1 if it did not exit normally
  std::string output;
};

/// Runs a shell command on the loop's blocking pool (the fiber waits), capturing
/// stdout and stderr.
inline CommandResult run_command(const std::string& command) {
  return run_blocking([command] {
    CommandResult result;
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    if (!pipe) return result;
    std::array<char, 4096> chunk;
    std::size_t n;
    while ((n = std::fread(chunk.data(), 1, chunk.size(), pipe)) > 0) result.output.append(chunk.data(), n);
    const int raw = ::pclose(pipe);
    result.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    return result;
  });
}

/// A loopback port free right now (bound to 0, then released): nothing listens on
/// it, or a program we start may take it.
inline std::uint16_t unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

inline bool have_program(const char* path) { return ::access(path, X_OK) == 0; }

/// Why a test that needs a real peer program fails without it (never a silent skip).
inline std::string missing_peer(const std::string& package) {
  return package + " is not installed; this test needs it as a real peer (tests/run.sh installs it: apt-get install " +
         package + ")";
}

}  // namespace fiberloop::testing
