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
    detail::LoopTimeout timer;
  };
  const std::chrono::nanoseconds limit = detail::saturating_nanoseconds(timeout);
  auto race = std::make_shared<Race>();
  Future<T> result = race->promise.get_future();
  race->timer.start(limit, [race, limit] {
    if (race->settled.exchange(true)) return;
    try {
      detail::throw_timeout("with_timeout()", limit);
    } catch (const TimeoutError&) {
      race->promise.set_exception(std::current_exception());
    }
  });
  f.add_done_callback([race](const Future<T>& done) {
    if (race->settled.exchange(true)) return;
    if (done.exception()) {
      race->promise.set_exception(done.exception());
    } else if constexpr (std::is_void_v<T>) {
      race->promise.set_value();
    } else {
      race->promise.set_value(done.result());
    }
    race->timer.cancel();
  });
  return result;
}

}  // namespace fiberloop
