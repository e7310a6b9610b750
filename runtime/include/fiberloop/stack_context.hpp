#pragma once
/// @file
/// Stack contexts: error handlers and context-local values that follow work as it is
/// handed over — callbacks, timeouts, fd handlers, futures' done callbacks, executor
/// jobs, fibers — as Tornado's StackContext and Python's contextvars do.
///
/// The active *chain* of contexts belongs to the running fiber (saved when it
/// suspends, restored when it resumes) or, outside fibers, to the thread. Every
/// place that hands work over — add_callback, call_later, call_at, add_future,
/// add_handler, Future::add_done_callback, ThreadPoolExecutor::submit, run_blocking,
/// spawn — captures the chain when the work is registered and re-enters it when the
/// work runs. With no context active that costs one thread-local load and a null
/// check; with contexts, a pointer copy and a reference count.

#include <cstdint>
#include <exception>
#include <chrono>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <fiberloop/detail/context_chain.hpp>

namespace fiberloop {

/// Ends the scope of a ContextLocal value (see ContextLocal::set) when destroyed.
/// Neither copyable nor movable: scopes end in the reverse order they began, on the
/// fiber (or thread) that began them.
class [[nodiscard]] ContextScope {
 public:
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;
  ~ContextScope() { detail::pop_context(node_); }

 private:
  template <class T>
  friend class ContextLocal;
  explicit ContextScope(detail::ContextNode* node) noexcept : node_(detail::push_context(node)) {}
  detail::ContextNode* node_;
};

/// Routes exceptions that escape work registered while it is active — callbacks,
/// timeouts, fd handlers, add_future and done callbacks, wrap()ped functions, run
/// later and on any thread — to `handler`, which returns true when it handled the
/// error. Returning false, or throwing, passes the error (or what the handler threw)
/// to the next outer ExceptionStackContext, and past the last to the loop's
/// unhandled-exception report. The handler runs under the contexts that were active
/// outside this one, and, if this object was made while a loop runs on this thread
/// (in a fiber or callback of it, which is where requests make them), on that loop's
/// thread (while the loop lives; once it is gone the error passes outward). One made
/// elsewhere — before start(), on a plain thread — runs its handler where the error arises.
///
/// An exception escaping a fiber fails the fiber's future instead, and an executor
/// job's exception fails the job's future: both have someone to receive them.
///
/// RAII: active from construction to destruction, which must be in reverse order of
/// construction and on the same fiber (or thread). **Thread:** any.
class ExceptionStackContext {
 public:
  explicit ExceptionStackContext(std::function<bool(std::exception_ptr)> handler);
  ~ExceptionStackContext();
  ExceptionStackContext(const ExceptionStackContext&) = delete;
  ExceptionStackContext& operator=(const ExceptionStackContext&) = delete;

 private:
  detail::ContextNode* node_;
};

/// Makes no stack context active until destroyed (Tornado's NullContext). For work
/// that belongs to no request — a connection pool's housekeeping timer, a server's
/// accept handler — which would otherwise keep the contexts of whichever request
/// happened to start it, and send its errors to that request's handler.
/// RAII, with the same ordering rules as ExceptionStackContext. **Thread:** any.
class NullContext {
 public:
  NullContext() noexcept : scope_(nullptr) {}

 private:
  detail::ChainScope scope_;
};

/// A value that follows the work it was set for, like Python's contextvars: each
/// fiber, and each callback run later, sees the value set where it was spawned or
/// registered. Two fibers never see each other's values. **Thread:** any.
///
/// Made with a report name (`ContextLocal<int> request_id("request_id")`), its values
/// also appear in watchdog reports and IOLoop::dump() as `request_id=42`; T must then
/// be printable with `operator<<` (formatted once, when set).
template <class T>
class ContextLocal {
 public:
  ContextLocal() noexcept : key_(detail::new_context_key()) {}
  explicit ContextLocal(std::string_view report_name)
      : key_(detail::new_context_key() | detail::ContextNode::kReportedBit), report_name_(report_name) {
    static_assert(kPrintable, "a ContextLocal with a report name needs `std::ostream << value` for its values");
  }
  ContextLocal(const ContextLocal&) = delete;
  ContextLocal& operator=(const ContextLocal&) = delete;

  /// The innermost value set, or nullptr where unset. Valid while the scope that
  /// set it lasts, and while the callback or fiber reading it runs. Costs a walk
  /// over the active contexts (usually a handful).
  const T* get() const noexcept {
    for (const detail::ContextNode* node = detail::tls_active_chain; node; node = node->parent()) {
      if (node->key() != key_) continue;
      if (report_name_.empty()) return &static_cast<const detail::ValueNode<T>*>(node)->value;
      return &static_cast<const detail::ReportedValueNode<T>*>(node)->value;
    }
    return nullptr;
  }

  /// Makes get() return `value` until the returned scope is destroyed — here, and in
  /// everything registered or spawned meanwhile, whenever and wherever it runs.
  [[nodiscard]] ContextScope set(T value) {
    if constexpr (kPrintable) {
      if (!report_name_.empty()) {
        std::ostringstream text;
        text << report_name_ << '=' << value;
        return ContextScope(new detail::ReportedValueNode<T>(key_, std::move(text).str(), std::move(value)));
      }
    }
    return ContextScope(new detail::ValueNode<T>(key_, std::move(value)));
  }

 private:
  static constexpr bool kPrintable = requires(std::ostream& out, const T& v) { out << v; };
  std::uint64_t key_;
  std::string report_name_;  // empty: not shown in reports
};

/// Bounds every wait of the calling fiber (or thread) — and of the work and fibers
/// it hands on, which capture the deadline like a stack context — in time: once it
/// has passed, wait_for_future, sleep_for, run_blocking, stream reads and writes,
/// HTTP fetches, memcached and SQL calls end with TimeoutError, whatever longer
/// timeout they were given. Nested deadlines take the earliest. RAII, with the
/// ordering rules of ExceptionStackContext. **Thread:** any.
class Deadline {
 public:
  using clock = std::chrono::steady_clock;
  explicit Deadline(std::chrono::nanoseconds from_now);
  explicit Deadline(clock::time_point at);
  ~Deadline();
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  /// When this deadline (or an earlier outer one) comes.
  clock::time_point when() const noexcept;
  /// The deadline active here, if any.
  static std::optional<clock::time_point> current() noexcept;

 private:
  detail::DeadlineNode* node_;
};

/// A copy of `fn` that, whenever and on whatever thread it is called, runs under the
/// contexts active now (Tornado's stack_context.wrap). The result is copyable when
/// `fn` is, and may be stored and called many times, from any thread. For `fn`
/// returning void, an exception escaping it goes to the captured
/// ExceptionStackContext handlers, then to the unhandled-exception report, and the
/// call returns normally; for `fn` returning a value it propagates to the caller.
template <class F>
auto wrap(F&& fn) {
  return detail::Wrapped<std::decay_t<F>>(detail::ChainRef::capture_shared(), std::forward<F>(fn));
}

}  // namespace fiberloop
