// The main job until legacy_example/ lands: seed 004 in miniature.
//
// Each "request" runs handle_request -> func1 -> ... -> func10 -> do_stuff, where
// do_stuff waits 10 ms for "I/O". The middle is compiled once and is the same for
// both tops; only the top (who runs a request) and the bottom (how do_stuff waits)
// differ:
//   threads: a std::thread per request, do_stuff blocks the thread;
//   fibers:  a fiber per request on one IOLoop, do_stuff waits on a future that a
//            loop timer completes, with wait_for_future().
// Every (variant, concurrency) point runs in a forked child so its peak RSS is its own.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fiberloop/fiberloop.hpp>

namespace {

using namespace std::chrono_literals;
constexpr auto kIoLatency = 10ms;

// ---- the bottom: how do_stuff waits ------------------------------------------
using WaitForIo = long (*)(long request);
WaitForIo g_wait_for_io = nullptr;

long blocking_io(long request) {
  std::this_thread::sleep_for(kIoLatency);
  return request * 7;
}

long fiber_io(long request) {
  fiberloop::IOLoop& loop = fiberloop::IOLoop::current();
  fiberloop::Promise<long> reply;
  auto future = reply.get_future();
  loop.call_later(kIoLatency, [&reply, request] { reply.set_value(request * 7); });
  return fiberloop::wait_for_future(future);
}

// ---- the middle: plain synchronous code, identical for both tops ---------------
long do_stuff(long request) { return g_wait_for_io(request); }

template <int N>
long func(long request) {
  std::array<char, 256> scratch{};  // real locals on every frame
  std::snprintf(scratch.data(), scratch.size(), "func%d(%ld)", N, request);
  long result;
  if constexpr (N == 10) {
    result = do_stuff(request);
  } else {
    result = func<N + 1>(request);
  }
  return result + static_cast<long>(std::strlen(scratch.data()));
}

long handle_request(long request) { return func<1>(request); }

// ---- the tops --------------------------------------------------------------------
struct Outcome {
  double seconds = 0;
  long checksum = 0;
  std::string error;
};

Outcome run_threads(int requests) {
  g_wait_for_io = blocking_io;
  Outcome out;
  std::atomic<long> checksum{0};
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(requests));
  const auto start = std::chrono::steady_clock::now();
  try {
    for (int i = 0; i < requests; ++i)
      threads.emplace_back([i, &checksum] { checksum += handle_request(i); });
  } catch (const std::system_error& e) {
    out.error = "thread " + std::to_string(threads.size()) + " refused: " + e.what();
  }
  for (auto& t : threads) t.join();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.checksum = checksum;
  return out;
}

Outcome run_fibers(int requests) {
  g_wait_for_io = fiber_io;
  Outcome out;
  fiberloop::IOLoop::Options options;
  options.stack_size = 64 * 1024;
  fiberloop::IOLoop loop(options);
  const auto start = std::chrono::steady_clock::now();
  out.checksum = loop.run_sync([&] {
    std::vector<fiberloop::Future<long>> replies;
    replies.reserve(static_cast<std::size_t>(requests));
    for (int i = 0; i < requests; ++i) replies.push_back(loop.spawn([i] { return handle_request(i); }));
    long sum = 0;
    for (auto& r : replies) sum += fiberloop::wait_for_future(r);
    return sum;
  });
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

long expected_checksum(int requests) {
  g_wait_for_io = [](long request) { return request * 7; };
  long sum = 0;
  for (int i = 0; i < requests; ++i) sum += handle_request(i);
  return sum;
}

// Runs one point in a child process; prints one table row. False when the point
// failed or computed a wrong answer.
bool measure(const char* variant, int requests) {
  std::fflush(stdout);
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) std::exit(1);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(pipe_fds[0]);
    Outcome out = std::strcmp(variant, "threads") == 0 ? run_threads(requests) : run_fibers(requests);
    const bool correct = out.error.empty() && out.checksum == expected_checksum(requests);
    char line[512];
    std::snprintf(line, sizeof line, "%.3f %d %s", out.seconds, correct ? 1 : 0, out.error.c_str());
    [[maybe_unused]] auto n = ::write(pipe_fds[1], line, std::strlen(line));
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  char buffer[512] = {};
  [[maybe_unused]] auto n = ::read(pipe_fds[0], buffer, sizeof buffer - 1);
  ::close(pipe_fds[0]);
  int status = 0;
  rusage usage{};
  ::wait4(child, &status, 0, &usage);
  double seconds = 0;
  int correct = 0;
  char error[400] = {};
  std::sscanf(buffer, "%lf %d %399[^\n]", &seconds, &correct, error);
  const double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                     static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  const bool ok = WIFEXITED(status) && correct;
  std::printf("| %-7s | %6d | %9.1f | %12.1f | %10.0f | %8s |%s\n", variant, requests, seconds * 1000,
              static_cast<double>(usage.ru_maxrss) / 1024.0, cpu * 1e6 / requests, ok ? "yes" : "NO",
              error[0] ? (std::string(" ") + error).c_str() : "");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> points = {100, 1000, 10000};
  if (argc > 1) {
    points.clear();
    for (int i = 1; i < argc; ++i) points.push_back(std::atoi(argv[i]));
  }
  std::printf("Each request: handle_request -> func1..func10 -> do_stuff -> waits %lld ms for I/O.\n",
              static_cast<long long>(kIoLatency.count()));
  std::printf("All requests start at once; the ideal time is %lld ms whatever the count.\n\n",
              static_cast<long long>(kIoLatency.count()));
  std::printf("| variant | requests | wall (ms) | peak RSS (MiB) | CPU µs/req | correct |\n");
  std::printf("|---------|---------:|----------:|---------------:|-----------:|:-------:|\n");
  bool all_correct = true;
  for (int requests : points) {
    all_correct = measure("threads", requests) && all_correct;
    all_correct = measure("fibers", requests) && all_correct;
  }
  return all_correct ? 0 : 1;  // the test command runs a small point as a smoke test
}
