#pragma once
// Template bodies for wait.hpp.

#include <atomic>
#include <memory>

#include <fiberloop/wait.hpp>

namespace fiberloop {

template <class T, class Rep, class Per>
Future<T> with_timeout(Future<T> f, std::chrono::duration<Rep, Per> timeout) {
  if (f.done()) return f;
  struct Race {
    Promise<T> promise;
    std::atomic<bool> settled{false};
    TimeoutHandle timer;
  };
  const auto limit = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout);
  auto race = std::make_shared<Race>();
  Future<T> result = race->promise.get_future();
  IOLoop* loop = &IOLoop::current();
  race->timer = loop->call_later(limit, [race, limit] {
    if (race->settled.exchange(true)) return;
    try {
      detail::throw_timeout("with_timeout()", limit);
    } catch (...) {
      race->promise.set_exception(std::current_exception());
    }
  });
  f.add_done_callback([race, loop](const Future<T>& done) {
    if (race->settled.exchange(true)) return;
    if (done.exception()) {
      race->promise.set_exception(done.exception());
    } else if constexpr (std::is_void_v<T>) {
      race->promise.set_value();
    } else {
      race->promise.set_value(done.result());
    }
    detail::remove_timeout_if_here(loop, race->timer);
  });
  return result;
}

}  // namespace fiberloop
