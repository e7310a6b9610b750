// (b) The legacy top with a fixed pool: N worker threads, blocking sockets.
//
//   legacy_pool --port P (--backend HOST:PORT | --inventory URL) [--threads 200]
//               [--host 127.0.0.1] [--cache HOST:PORT[,HOST:PORT...]]
//
// The acceptor queues connections; a worker serves one connection until it closes,
// then takes the next, as classic pooled servers do. With more kept-alive
// connections than workers the rest wait in the queue. Stops on SIGINT/SIGTERM.
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "../bottom/backend_client.hpp"
#include "../support/cli.hpp"
#include "blocking_server.hpp"

namespace {

class ConnectionQueue {
 public:
  void push(int fd) {
    {
      std::lock_guard lock(mutex_);
      fds_.push_back(fd);
    }
    ready_.notify_one();
  }
  /// The next connection; nullopt once closed.
  std::optional<int> pop() {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return closed_ || !fds_.empty(); });
    if (closed_) return std::nullopt;
    const int fd = fds_.front();
    fds_.pop_front();
    return fd;
  }
  /// Wakes every worker; returns the connections nobody took.
  std::deque<int> close() {
    std::deque<int> left;
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      left.swap(fds_);
    }
    ready_.notify_all();
    return left;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<int> fds_;
  bool closed_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  const legacy::Flags flags = legacy::parse_flags(
      argc, argv, {"host", "port", "backend", "threads", "cache", "inventory"},
      "--port P (--backend HOST:PORT | --inventory URL) [--threads 200] [--host 127.0.0.1] "
      "[--cache HOST:PORT[,HOST:PORT...]]");
  const int signal_fd = legacy::stop_signal_fd();
  try {
    legacy::BackendConfig backend;
    backend.host = flags.backend_host;
    backend.port = flags.backend_port;
    backend.cache = flags.cache;
    backend.inventory_url = flags.inventory;
    legacy::backend_start(backend);

    const int listen_fd = legacy::listen_tcp(flags.host, flags.port);
    legacy::Connections connections;
    ConnectionQueue queue;
    std::vector<std::thread> workers;
    for (int i = 0; i < flags.threads; ++i) {
      workers.emplace_back([&] {
        while (const auto fd = queue.pop()) connections.serve(*fd);
      });
    }
    legacy::announce_listening(flags.host, legacy::bound_port(listen_fd));

    for (;;) {
      const int fd = legacy::accept_or_stop(listen_fd, signal_fd);
      if (fd < 0) break;  // SIGINT/SIGTERM
      if (connections.add(fd)) queue.push(fd);
    }

    ::close(listen_fd);
    for (const int fd : queue.close()) connections.drop(fd);
    connections.shut_down_all();
    for (auto& worker : workers) worker.join();
    legacy::backend_stop();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "legacy_pool: %s\n", e.what());
    return 1;
  }
  return 0;
}
