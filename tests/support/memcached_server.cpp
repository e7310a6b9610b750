#include "support/memcached_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <system_error>

namespace fiberloop::testing {

namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr auto kStartTimeout = std::chrono::seconds(5);
constexpr int kFreePortAttempts = 5;      // another process may take the port we picked
constexpr int kRestartAttempts = 5;       // ... or take it while it was down
constexpr auto kRestartRetryDelay = milliseconds(100);
// A memcached that listens answers `stats` within a millisecond; a short probe keeps a
// port thief that accepts but never answers from costing much per attempt.
constexpr auto kProbeTimeout = milliseconds(100);
constexpr std::size_t kOutputInMessages = 2000;

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

std::string loopback_address(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

std::uint16_t bound_port(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) throw_errno("getsockname");
  return ntohs(address.sin_port);
}

/// A socket of 127.0.0.1 listening on a port the kernel picks (-1 backlog: bound only).
int bind_loopback(int backlog) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw_errno("socket");
  const sockaddr_in address = loopback(0);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      (backlog >= 0 && ::listen(fd, backlog) != 0)) {
    const int error = errno;
    ::close(fd);
    throw std::system_error(error, std::generic_category(), "bind/listen on 127.0.0.1");
  }
  return fd;
}

/// Sends `request` to 127.0.0.1:`port` and reads until `end` arrives; "" when nothing
/// listens or the answer does not come within `timeout`.
std::string ask(std::uint16_t port, std::string_view request, std::string_view end, milliseconds timeout) {
  const auto give_up = Clock::now() + timeout;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw_errno("socket");
  const std::unique_ptr<const int, void (*)(const int*)> closer(&fd, [](const int* f) { ::close(*f); });
  const auto wait_for = [&](short events) {
    const auto left = std::chrono::duration_cast<milliseconds>(give_up - Clock::now()).count();
    pollfd ready{fd, events, 0};
    return left > 0 && ::poll(&ready, 1, static_cast<int>(left)) == 1 && (ready.revents & events);
  };
  const sockaddr_in address = loopback(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    int error = 0;
    socklen_t size = sizeof error;
    if (errno != EINPROGRESS || !wait_for(POLLOUT) || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) != 0 ||
        error != 0)
      return "";
  }
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) return "";
  std::string answer;
  char chunk[4096];
  while (answer.find(end) == std::string::npos && wait_for(POLLIN)) {
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return "";
    answer.append(chunk, static_cast<std::size_t>(n));
  }
  return answer.find(end) == std::string::npos ? "" : answer;
}

/// True when the memcached answering on `port` is process `pid`: it answers, and it is
/// ours, not another test's that took the port between free_loopback_port() and its bind.
bool answers_as(std::uint16_t port, pid_t pid) {
  const std::string stats = ask(port, "stats\r\n", "\r\nEND\r\n", kProbeTimeout);
  return stats.find("STAT pid " + std::to_string(pid) + "\r\n") != std::string::npos;
}

}  // namespace

// ---- MemcachedServer ---------------------------------------------------------------

MemcachedServer::MemcachedServer(std::vector<std::string> extra_args)
    : extra_args_(std::move(extra_args)), binary_(find_in_path("memcached")) {
  if (binary_.empty())
    throw std::runtime_error(
        "MemcachedServer: no memcached in PATH: install Debian's memcached (apt-get install memcached)");
  for (int attempt = 0; attempt < kFreePortAttempts; ++attempt) {
    port_ = free_loopback_port();
    if (launch() == Launch::ready) return;
  }
  const std::string output = this->output();
  throw std::runtime_error("MemcachedServer: " + std::to_string(kFreePortAttempts) +
                           " free ports were taken before memcached could listen; its output: " + output);
}

MemcachedServer::~MemcachedServer() = default;

std::string MemcachedServer::address() const { return loopback_address(port_); }

MemcacheServer MemcachedServer::server(std::uint32_t weight) const { return {"127.0.0.1", port_, weight}; }

std::string MemcachedServer::output() const { return process_.output(); }

void MemcachedServer::restart() {
  kill();
  for (int attempt = 0; attempt < kRestartAttempts; ++attempt) {
    if (launch() == Launch::ready) return;
    std::this_thread::sleep_for(kRestartRetryDelay);
  }
  throw std::runtime_error("MemcachedServer::restart: port " + std::to_string(port_) +
                           " stayed in use (another process took it); memcached's output: " +
                           output().substr(0, kOutputInMessages));
}

MemcachedServer::Launch MemcachedServer::launch() {
  std::vector<std::string> args = {binary_, "-u", "root", "-l", "127.0.0.1", "-p", std::to_string(port_),
                                   "-U", "0", "-t", "1", "-m", "64"};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  process_.start(std::move(args));
  const auto give_up = Clock::now() + kStartTimeout;
  for (;;) {
    if (const auto how = process_.ended()) {
      const std::string output = this->output();
      if (output.find("Address already in use") != std::string::npos) return Launch::port_in_use;
      throw std::runtime_error("MemcachedServer: memcached " + *how + " before answering on " + address() +
                               "; its output: " + output.substr(0, kOutputInMessages));
    }
    if (answers_as(port_, process_.pid())) return Launch::ready;
    if (Clock::now() > give_up) {
      kill();
      throw std::runtime_error("MemcachedServer: memcached did not answer on " + address() + " within 5 s; its output: " +
                               output().substr(0, kOutputInMessages));
    }
    std::this_thread::sleep_for(milliseconds(2));
  }
}

void MemcachedServer::kill() noexcept { process_.kill(); }

// ---- ScriptedMemcached -------------------------------------------------------------

struct ScriptedMemcached::Connection {
  int fd = -1;
  std::string in;
  std::string out;
  bool closing = false;  // close once `out` is sent
  bool gone = false;
};

namespace {

/// The length of the data block that follows a storage command's line, or nullopt for
/// other commands (and for a length too absurd to wait for).
std::optional<std::size_t> data_block_length(std::string_view line) {
  std::vector<std::string_view> words;
  for (std::size_t at = 0; at < line.size();) {
    const std::size_t space = std::min(line.find(' ', at), line.size());
    if (space > at) words.push_back(line.substr(at, space - at));
    at = space + 1;
  }
  static constexpr std::string_view storage[] = {"set", "add", "replace", "append", "prepend", "cas"};
  if (words.size() < 5 || std::find(std::begin(storage), std::end(storage), words[0]) == std::end(storage))
    return std::nullopt;
  std::size_t length = 0;
  const auto [end, error] = std::from_chars(words[4].data(), words[4].data() + words[4].size(), length);
  if (error != std::errc() || end != words[4].data() + words[4].size() || length > (std::size_t{1} << 30))
    return std::nullopt;
  return length;
}

}  // namespace

ScriptedMemcached::ScriptedMemcached(Script script) : script_(std::move(script)) {
  listen_fd_ = bind_loopback(64);
  port_ = bound_port(listen_fd_);
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    const int error = errno;
    ::close(listen_fd_);
    throw std::system_error(error, std::generic_category(), "eventfd");
  }
  thread_ = std::thread([this] { serve(); });
}

ScriptedMemcached::~ScriptedMemcached() { stop(); }

std::string ScriptedMemcached::address() const { return loopback_address(port_); }

MemcacheServer ScriptedMemcached::server(std::uint32_t weight) const { return {"127.0.0.1", port_, weight}; }

std::vector<std::string> ScriptedMemcached::command_lines() const {
  std::lock_guard lock(lines_mutex_);
  return command_lines_;
}

void ScriptedMemcached::stop() {
  if (!thread_.joinable()) return;
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_fd_);
}

void ScriptedMemcached::serve() {
  std::vector<Connection> connections;
  std::vector<pollfd> watched;
  for (;;) {
    watched.assign({{wake_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}});
    for (const Connection& c : connections)
      // Read even while closing (and drop it): closing with unread input sends a reset.
      watched.push_back({c.fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
    if (::poll(watched.data(), watched.size(), -1) < 0) {
      if (errno == EINTR) continue;
      ADD_FAILURE() << "ScriptedMemcached: poll: " << std::strerror(errno);
      break;
    }
    if (watched[0].revents) break;  // stop()

    for (std::size_t i = 0; i < connections.size(); ++i) {
      Connection& c = connections[i];
      if (watched[i + 2].revents & (POLLIN | POLLHUP | POLLERR)) {
        char chunk[16384];
        for (;;) {
          const ssize_t n = ::recv(c.fd, chunk, sizeof chunk, MSG_DONTWAIT);
          if (n > 0) {
            bytes_received_ += static_cast<std::size_t>(n);
            if (!c.closing) c.in.append(chunk, static_cast<std::size_t>(n));
            continue;
          }
          if (n == 0 || (errno != EAGAIN && errno != EINTR)) c.gone = true;
          if (n == 0 || errno != EINTR) break;
        }
        if (!handle_input(c)) c.gone = true;
      }
      while (!c.gone && !c.out.empty()) {
        const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) c.out.erase(0, static_cast<std::size_t>(n));
        else if (errno != EINTR) {
          c.gone = errno != EAGAIN;
          break;
        }
      }
      if (c.closing && c.out.empty()) c.gone = true;
    }
    std::erase_if(connections, [this](const Connection& c) {
      if (c.gone) {
        ::close(c.fd);
        --open_connections_;
      }
      return c.gone;
    });

    if (watched[1].revents & POLLIN) {
      for (int fd; (fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0;) {
        connections.push_back({fd, {}, {}, false, false});
        ++connections_;
        ++open_connections_;
      }
    }
  }
  for (const Connection& c : connections) {
    ::close(c.fd);
    --open_connections_;
  }
}

bool ScriptedMemcached::handle_input(Connection& c) {
  while (!c.closing) {
    const std::size_t line_end = c.in.find('\n');
    if (line_end == std::string::npos) return true;
    std::string_view line(c.in.data(), line_end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::size_t command_size = line_end + 1;
    if (const auto block = data_block_length(line)) {
      if (c.in.size() < command_size + *block + 2) return true;  // the data block is still coming
      command_size += *block + 2;
    }
    std::string command(line);
    c.in.erase(0, command_size);
    {
      std::lock_guard lock(lines_mutex_);
      command_lines_.push_back(command);
    }
    ++commands_;
    try {
      ScriptedReply reply = script_(command);
      c.out += reply.bytes;
      c.closing = reply.close;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "ScriptedMemcached: the script threw on \"" << command << "\": " << e.what();
      return false;
    }
  }
  c.in.clear();
  return true;
}

}  // namespace fiberloop::testing
