// The README's example, built against the installed package by check_install.sh.
#include <cstdio>
#include <vector>

#include <fiberloop/fiberloop.hpp>
using namespace std::chrono_literals;

// The bottom: looks blocking, suspends only the calling fiber.
long fetch(long item) {
  fiberloop::Promise<long> reply;
  auto future = reply.get_future();
  fiberloop::IOLoop::current().call_later(10ms, [&reply, item] { reply.set_value(item * 100); });  // "network I/O"
  return fiberloop::wait_for_future(future, 1s);  // TimeoutError after 1 s
}

// The middle: plain synchronous code, no coroutine, no callback.
long lookup_price(long item) { return fetch(item) + 1; }
long checkout(long item) { return lookup_price(item) * 2; }

int main() {
  fiberloop::IOLoop loop;
  long total = loop.run_sync([&] {  // the top: a fiber per request
    std::vector<fiberloop::Future<long>> requests;
    for (long i = 0; i < 1000; ++i) requests.push_back(loop.spawn([i] { return checkout(i); }));
    long sum = 0;
    for (auto& r : requests) sum += fiberloop::wait_for_future(r);
    return sum;  // 1000 requests, ~10 ms in all
  });
  std::printf("total %ld\n", total);
  return total == 2 * (100 * 999 * 1000 / 2 + 1000) ? 0 : 1;
}
