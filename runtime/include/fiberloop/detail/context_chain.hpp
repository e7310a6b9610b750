#pragma once
// The chain of stack contexts behind stack_context.hpp, and what the loop, futures,
// executors and fibers use to capture and re-enter it. Internal.
//
// A chain is an immutable, reference-counted singly linked list of nodes, innermost
// first. The active chain belongs to the running fiber (the fibers layer saves and
// restores it on every switch) or, outside fibers, to the thread. Capturing it is a
// pointer copy plus a reference; with no context active, one thread-local load and a
// null check.

#include <atomic>
#include <cstdint>
#include <exception>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace fiberloop::detail {

/// One link of a chain: an error handler, a ContextLocal's value, or a fiber's name.
/// A node owns a reference to its parent (the next outer context).
///
/// The count is plain (no atomic read-modify-write) while the node is *confined* to
/// the thread that made it; a capture that may hand the chain to another thread
/// (share()) switches the node and its ancestors to atomic counting first. Loop-thread
/// work (callbacks, timeouts, handlers, fibers) thus never pays for atomics. A
/// confined node is reachable only from its own thread, which alone may share it.
class ContextNode {
 public:
  /// key_: one of these, or a ContextLocal's key (from new_context_key()).
  static constexpr std::uint64_t kHandlerKey = 0;
  static constexpr std::uint64_t kFiberNameKey = 1;
  static constexpr std::uint64_t kDeadlineKey = 2;
  /// Set in the key of a ContextLocal's value that reports show (ReportedNode).
  static constexpr std::uint64_t kReportedBit = std::uint64_t{1} << 63;

  explicit ContextNode(std::uint64_t key) noexcept : key_(key) {}
  ContextNode(const ContextNode&) = delete;
  ContextNode& operator=(const ContextNode&) = delete;
  virtual ~ContextNode() = default;

  std::uint64_t key() const noexcept { return key_; }
  ContextNode* parent() const noexcept { return parent_; }

  void add_ref() noexcept {
    if (shared_.load(std::memory_order_relaxed)) {
      refs_.fetch_add(1, std::memory_order_relaxed);
    } else {
      refs_.store(refs_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
  }
  void release() noexcept {
    if (drop_ref()) destroy_chain(this);
  }
  /// Before the chain may be touched by another thread. Thread: the node's own
  /// (an unshared node is reachable from no other).
  void share() noexcept {
    if (!shared_.load(std::memory_order_relaxed)) share_chain(this);
  }

 private:
  friend ContextNode* push_context(ContextNode* node) noexcept;
  friend void adopt_parent(ContextNode* node, ContextNode* parent) noexcept;

  /// True when that was the last reference.
  bool drop_ref() noexcept {
    if (shared_.load(std::memory_order_relaxed)) return refs_.fetch_sub(1, std::memory_order_acq_rel) == 1;
    const std::uint32_t left = refs_.load(std::memory_order_relaxed) - 1;
    refs_.store(left, std::memory_order_relaxed);
    return left == 0;
  }
  /// Deletes `node` and the ancestors it held the last reference to (iteratively:
  /// chains may be long).
  static void destroy_chain(ContextNode* node) noexcept;
  static void share_chain(ContextNode* node) noexcept;

  std::atomic<std::uint32_t> refs_{1};
  std::atomic<bool> shared_{false};
  std::uint64_t key_;
  ContextNode* parent_ = nullptr;  // owned reference
};

/// A ContextLocal<T>'s value.
template <class T>
class ValueNode final : public ContextNode {
 public:
  ValueNode(std::uint64_t key, T v) : ContextNode(key), value(std::move(v)) {}
  const T value;
};

/// A value of a ContextLocal made with a report name: shown, as `text`
/// ("request_id=42"), in watchdog reports and IOLoop::dump().
class ReportedNode : public ContextNode {
 public:
  /// `key` has kReportedBit set (ContextLocal's named constructor sets it).
  ReportedNode(std::uint64_t key, std::string report) : ContextNode(key), text(std::move(report)) {}
  const std::string text;
};

template <class T>
class ReportedValueNode final : public ReportedNode {
 public:
  ReportedValueNode(std::uint64_t key, std::string report, T v)
      : ReportedNode(key, std::move(report)), value(std::move(v)) {}
  const T value;
};

/// A Deadline's link: `when` is already the earliest of it and the ones outside it.
class DeadlineNode final : public ContextNode {
 public:
  explicit DeadlineNode(std::chrono::steady_clock::time_point at) noexcept : ContextNode(kDeadlineKey), when(at) {}
  const std::chrono::steady_clock::time_point when;
};

/// The innermost (so earliest) deadline in `chain`, or null.
inline const DeadlineNode* deadline_of(const ContextNode* chain) noexcept {
  for (; chain; chain = chain->parent())
    if (chain->key() == ContextNode::kDeadlineKey) return static_cast<const DeadlineNode*>(chain);
  return nullptr;
}

/// Calls `fn(text)` (text: "name=value") for each reported ContextLocal value in
/// `chain`, innermost first, each key once (an inner value hides an outer one).
/// Allocates nothing: the watchdog's signal handler uses it.
template <class F>
void for_each_report_value(const ContextNode* chain, F&& fn) {
  for (const ContextNode* node = chain; node; node = node->parent()) {
    if (!(node->key() & ContextNode::kReportedBit)) continue;
    bool shadowed = false;  // an inner value of the same ContextLocal was shown already
    for (const ContextNode* inner = chain; inner != node; inner = inner->parent())
      if (inner->key() == node->key()) shadowed = true;
    if (!shadowed) fn(static_cast<const ReportedNode*>(node)->text);
  }
}

/// "name=value, name=value" for the reported ContextLocal values in `chain`,
/// innermost first, each key once.
std::string report_values_of(const ContextNode* chain);

/// The running fiber's (or, outside fibers, the thread's) chain; owns one reference.
/// constinit: no dynamic initialisation, so reading it needs no TLS wrapper call.
extern constinit thread_local ContextNode* tls_active_chain;

/// Makes `node` (fresh, one reference) the active chain's head; the chain active
/// before becomes its parent. Returns node.
ContextNode* push_context(ContextNode* node) noexcept;
/// Ends a context pushed by push_context. Out of order (another context pushed
/// after it is still active, or it was pushed on another fiber) it reports the
/// misuse on stderr and leaves the active chain alone.
void pop_context(ContextNode* node) noexcept;
/// Makes `parent` (a reference the caller gives) the parent of a fresh `node`.
void adopt_parent(ContextNode* node, ContextNode* parent) noexcept;
/// A fresh key for a ContextLocal (never reused, so a stale node cannot be misread).
std::uint64_t new_context_key() noexcept;
/// A node naming a fiber ("" for an unnamed fiber, which hides its spawner's name).
ContextNode* new_fiber_name_node(std::string_view name);
/// The name of the innermost fiber in `chain`, or null when it has none.
const char* fiber_name_of(const ContextNode* chain) noexcept;

/// An owning handle to a chain, kept beside a registered callback.
class ChainRef {
 public:
  ChainRef() noexcept = default;
  /// Takes over a reference the caller holds.
  static ChainRef adopt(ContextNode* node) noexcept { return ChainRef(node); }
  /// The active chain, for work that runs and is dropped on this thread.
  static ChainRef capture() noexcept {
    ContextNode* node = tls_active_chain;
    if (node) node->add_ref();
    return ChainRef(node);
  }
  /// The active chain, for work that may run or be dropped on another thread.
  static ChainRef capture_shared() noexcept {
    ContextNode* node = tls_active_chain;
    if (node) {
      node->share();
      node->add_ref();
    }
    return ChainRef(node);
  }
  /// capture() when `same_thread`, else capture_shared(); `same_thread` is only
  /// evaluated when a chain is active.
  template <class SameThread>
  static ChainRef capture_for(SameThread&& same_thread) noexcept {
    ContextNode* node = tls_active_chain;
    if (node) {
      if (!same_thread()) node->share();
      node->add_ref();
    }
    return ChainRef(node);
  }

  ChainRef(const ChainRef& other) noexcept : node_(other.node_) {
    if (node_) node_->add_ref();
  }
  ChainRef(ChainRef&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {}
  ChainRef& operator=(ChainRef other) noexcept {
    std::swap(node_, other.node_);
    return *this;
  }
  ~ChainRef() {
    if (node_) node_->release();
  }

  ContextNode* get() const noexcept { return node_; }
  explicit operator bool() const noexcept { return node_ != nullptr; }
  /// Gives up ownership of the reference.
  ContextNode* release() noexcept { return std::exchange(node_, nullptr); }

 private:
  explicit ChainRef(ContextNode* node) noexcept : node_(node) {}
  ContextNode* node_ = nullptr;
};

/// Makes a chain active until destroyed, then restores the one active before.
class ChainScope {
 public:
  /// Borrows `chain` (adds a reference for as long as it is active).
  explicit ChainScope(ContextNode* chain) noexcept : saved_(tls_active_chain) {
    if (chain) chain->add_ref();
    tls_active_chain = chain;
  }
  /// Takes over the reference `chain` holds (for work that runs once).
  explicit ChainScope(ChainRef&& chain) noexcept : saved_(tls_active_chain) { tls_active_chain = chain.release(); }
  ChainScope(const ChainScope&) = delete;
  ChainScope& operator=(const ChainScope&) = delete;
  ~ChainScope() {
    // Whatever is active now goes: a context the work pushed and never popped too.
    ContextNode* leaving = std::exchange(tls_active_chain, saved_);
    if (leaving) leaving->release();
  }

 private:
  ContextNode* saved_;
};

/// Gives an exception that escaped work run under `chain` to the chain's handlers,
/// innermost first, each run under the chain outside it (on its loop's thread when
/// it was made on one); a handler returning false or throwing passes the error (or
/// what it threw) outward. Past the last handler, the unhandled-exception report
/// (the loop running on this thread, else stderr), naming `where` and the fiber the
/// work came from.
void route_exception(ContextNode* chain, std::exception_ptr error, const char* where) noexcept;

/// Whether the exception being handled is Boost.Context's forced_unwind (a fiber's
/// stack being unwound), which no catch-all may swallow.
bool handling_forced_unwind() noexcept;

/// For a noexcept catch-all that caught forced_unwind: work run by the loop (`where`)
/// suspended its fiber, and the fiber is being destroyed. The unwinding cannot pass
/// the loop's noexcept dispatch and must not be swallowed: says so on stderr and
/// aborts. (Callbacks may not wait; fiberloop's waits refuse, see future.hpp.)
[[noreturn]] void abort_on_forced_unwind(const char* where) noexcept;

/// Runs `fn()` under `chain` (taking over its reference) and routes what escapes it.
template <class F>
void run_in_chain(ChainRef chain, F& fn, const char* where) noexcept {
  ContextNode* node = chain.get();
  ChainScope scope(std::move(chain));
  try {
    fn();
  } catch (...) {
    if (handling_forced_unwind()) [[unlikely]]
      abort_on_forced_unwind(where);
    route_exception(node, std::current_exception(), where);
  }
}

/// Runs `fn()` captured with no context, where none is active (the loop's own
/// phases); routes what escapes it and drops any context it left active.
template <class F>
void run_without_chain(F& fn, const char* where) noexcept {
  try {
    fn();
  } catch (...) {
    if (handling_forced_unwind()) [[unlikely]]
      abort_on_forced_unwind(where);
    route_exception(nullptr, std::current_exception(), where);
  }
  if (tls_active_chain) [[unlikely]] {
    std::exchange(tls_active_chain, nullptr)->release();
  }
}

/// wrap()'s callable.
template <class F>
class Wrapped {
 public:
  Wrapped(ChainRef chain, F fn) : chain_(std::move(chain)), fn_(std::move(fn)) {}

  template <class... Args>
    requires std::is_invocable_v<F&, Args...>
  std::invoke_result_t<F&, Args...> operator()(Args&&... args) {
    return call(chain_.get(), fn_, std::forward<Args>(args)...);
  }
  template <class... Args>
    requires std::is_invocable_v<const F&, Args...>
  std::invoke_result_t<const F&, Args...> operator()(Args&&... args) const {
    return call(chain_.get(), fn_, std::forward<Args>(args)...);
  }

 private:
  template <class G, class... Args>
  static std::invoke_result_t<G&, Args...> call(ContextNode* chain, G& fn, Args&&... args) {
    // Borrows (adds a reference): `fn` may destroy this wrapper while it runs.
    ChainScope scope(chain);
    if constexpr (std::is_void_v<std::invoke_result_t<G&, Args...>>) {
      try {
        std::invoke(fn, std::forward<Args>(args)...);
      } catch (...) {
        if (handling_forced_unwind()) throw;
        route_exception(chain, std::current_exception(), "a wrapped function");
      }
    } else {
      return std::invoke(fn, std::forward<Args>(args)...);
    }
  }

  ChainRef chain_;
  F fn_;
};

}  // namespace fiberloop::detail
