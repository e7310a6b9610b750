#pragma once
// Template bodies for future.hpp.

#include <fiberloop/future.hpp>

namespace fiberloop {

namespace detail {

template <class T>
void CallbackWaiter<T>::run(FutureState<T>& state, const std::function<void(const Future<T>&)>& cb,
                            ChainRef chain) noexcept {
  state.add_ref();
  const Future<T> handle(AdoptState{}, &state);
  auto call = [&] {
    DoneCallbackScope in_callback;
    cb(handle);
  };
  run_in_chain(std::move(chain), call, "a Future done callback");
}

}  // namespace detail

template <class T>
void Future<T>::add_done_callback(std::function<void(const Future<T>&)> cb) const {
  if (!state_) throw std::logic_error("Future::add_done_callback() on an invalid future");
  if (!state_->done()) {
    auto* w = new detail::CallbackWaiter<T>(std::move(cb));
    if (state_->link_waiter(*w)) return;
    w->run_and_dispose(*state_);
    return;
  }
  detail::CallbackWaiter<T>::run(*state_, cb, detail::ChainRef::capture());
}

}  // namespace fiberloop
