// (a) The legacy top: a thread per connection, blocking sockets.
//
//   legacy_threads --port P (--backend HOST:PORT | --inventory URL) [--host 127.0.0.1]
//                  [--cache HOST:PORT[,HOST:PORT...]]
//
// Each accepted connection gets its own thread, which reads requests and calls the
// middle's handle_request(); deep inside, do_stuff() blocks that thread on the
// backend (bottom/blocking_backend.cpp). Stops on SIGINT/SIGTERM.
#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "../bottom/backend_client.hpp"
#include "../support/cli.hpp"
#include "blocking_server.hpp"

namespace {

// 10 000 threads must fit in memory and in vm.max_map_count: legacy servers shrink
// the default 8 MiB stack too.
constexpr std::size_t thread_stack_size = 256 * 1024;

struct Job {
  legacy::Connections* connections;
  int fd;
};

void* serve_in_thread(void* arg) {
  const std::unique_ptr<Job> job(static_cast<Job*>(arg));
  job->connections->serve(job->fd);
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  const legacy::Flags flags =
      legacy::parse_flags(argc, argv, {"host", "port", "backend", "cache", "inventory"},
                          "--port P (--backend HOST:PORT | --inventory URL) [--host 127.0.0.1] "
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
    legacy::announce_listening(flags.host, legacy::bound_port(listen_fd));

    legacy::Connections connections;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, thread_stack_size);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
      const int fd = legacy::accept_or_stop(listen_fd, signal_fd);
      if (fd < 0) break;  // SIGINT/SIGTERM
      if (!connections.add(fd)) continue;
      pthread_t thread;
      auto* job = new Job{&connections, fd};
      if (pthread_create(&thread, &attr, serve_in_thread, job) != 0) {
        delete job;  // out of threads or memory: tell this client, serve the others
        connections.refuse(fd);
      }
    }

    ::close(listen_fd);
    connections.shut_down_all();
    if (!connections.wait_idle(std::chrono::seconds(2))) {
      // A thread still waits on the backend (its own timeout is longer): do not
      // run static destructors under it.
      std::fprintf(stderr, "legacy_threads: connections still busy 2 s after the stop signal; exiting\n");
      std::fflush(nullptr);
      std::_Exit(0);
    }
    legacy::backend_stop();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "legacy_threads: %s\n", e.what());
    return 1;
  }
  return 0;
}
