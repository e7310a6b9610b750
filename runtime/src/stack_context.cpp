#include <cxxabi.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include <fiberloop/detail/clock_math.hpp>
#include <fiberloop/detail/future_state.hpp>
#include <fiberloop/stack_context.hpp>

#include "loop_internals.hpp"

namespace fiberloop {

namespace detail {

constinit thread_local ContextNode* tls_active_chain = nullptr;

namespace {

class HandlerNode final : public ContextNode {
 public:
  HandlerNode(std::function<bool(std::exception_ptr)> fn, std::shared_ptr<LoopAnchor> loop) noexcept
      : ContextNode(kHandlerKey), handler(std::move(fn)), home(std::move(loop)) {}
  const std::function<bool(std::exception_ptr)> handler;
  const std::shared_ptr<LoopAnchor> home;  // the loop whose thread made it, if any
};

class FiberNameNode final : public ContextNode {
 public:
  explicit FiberNameNode(std::string_view fiber) : ContextNode(kFiberNameKey), name(fiber) {}
  const std::string name;
};

void report_past_handlers(const ContextNode* chain, std::exception_ptr error, const char* where) noexcept {
  const char* fiber = fiber_name_of(chain);
  if (!fiber) {
    report_unhandled(std::move(error), where);
    return;
  }
  try {
    const std::string described = std::string(where) + " registered in fiber \"" + fiber + "\"";
    report_unhandled(error, described.c_str());
  } catch (...) {  // out of memory for the description: report without it
    report_unhandled(error, where);
  }
}

void route_from(ContextNode* chain, ContextNode* node, std::exception_ptr error, const char* where) noexcept;

/// The rest of a routing, handed to a handler's loop. If the loop drops it unrun (it
/// is being destroyed), the error is reported rather than lost.
class RoutingHandover {
 public:
  RoutingHandover(ContextNode* chain, ContextNode* node, std::exception_ptr error, const char* where) noexcept
      : whole_(ChainRef::adopt(chain)), from_(ChainRef::adopt(node)), error_(std::move(error)), where_(where) {}
  RoutingHandover(const RoutingHandover&) = delete;
  RoutingHandover& operator=(const RoutingHandover&) = delete;
  ~RoutingHandover() {
    if (error_) report_past_handlers(whole_.get(), std::move(error_), where_);
  }
  void run() noexcept { route_from(whole_.get(), from_.get(), std::exchange(error_, nullptr), where_); }

 private:
  ChainRef whole_, from_;
  std::exception_ptr error_;
  const char* where_;
};

/// route_exception, from handler `node` outward. `chain` is the whole chain the
/// work ran under (for the report); `where` a string literal.
void route_from(ContextNode* chain, ContextNode* node, std::exception_ptr error, const char* where) noexcept {
  for (; node; node = node->parent()) {
    if (node->key() != ContextNode::kHandlerKey) continue;
    auto* handler = static_cast<HandlerNode*>(node);
    if (handler->home) {
      std::unique_lock lock(handler->home->lock);
      IOLoop* loop = handler->home->loop;
      if (!loop) continue;  // its loop is gone: nobody there to handle it
      if (!LoopInternals::on_owner_thread(*loop)) {
        // Handlers run on the thread of the loop they were made on, like every other
        // piece of that request's code; the loop stays alive while we hold its anchor.
        std::shared_ptr<RoutingHandover> rest;
        try {
          chain->share();  // already shared: this chain reached another thread
          chain->add_ref();
          node->add_ref();
          rest = std::make_shared<RoutingHandover>(chain, node, error, where);
        } catch (...) {
          chain->release();
          node->release();
          continue;  // out of memory: treat the handler as gone
        }
        try {
          loop->add_callback([rest] { rest->run(); });
          return;
        } catch (...) {
          lock.unlock();
          rest.reset();  // reports the error
          return;
        }
      }
    }
    ChainScope scope(node->parent());
    try {
      if (handler->handler(error)) return;
    } catch (...) {
      if (handling_forced_unwind()) [[unlikely]]
        abort_on_forced_unwind("an ExceptionStackContext handler");
      error = std::current_exception();  // the handler's own error goes outward instead
    }
  }
  report_past_handlers(chain, std::move(error), where);
}

}  // namespace

ContextNode* push_context(ContextNode* node) noexcept {
  node->parent_ = tls_active_chain;  // takes over the active chain's reference
  tls_active_chain = node;
  return node;
}

void pop_context(ContextNode* node) noexcept {
  if (tls_active_chain != node) {
    std::fprintf(stderr,
                 "fiberloop: a stack context (ExceptionStackContext or ContextLocal scope) ended out of order or "
                 "on another fiber than the one that began it; the active contexts are left as they are. End "
                 "them in reverse order of creation, on the fiber that created them.\n");
    return;
  }
  ContextNode* parent = node->parent();
  if (parent) parent->add_ref();
  tls_active_chain = parent;
  node->release();
}

void adopt_parent(ContextNode* node, ContextNode* parent) noexcept { node->parent_ = parent; }

void ContextNode::destroy_chain(ContextNode* node) noexcept {
  while (node) {
    ContextNode* parent = node->parent_;
    delete node;
    if (!parent || !parent->drop_ref()) return;
    node = parent;
  }
}

void ContextNode::share_chain(ContextNode* node) noexcept {
  // A shared node's ancestors are all shared: stop at the first one.
  for (; node && !node->shared_.load(std::memory_order_relaxed); node = node->parent_)
    node->shared_.store(true, std::memory_order_relaxed);
}

std::uint64_t new_context_key() noexcept {
  static std::atomic<std::uint64_t> next{ContextNode::kDeadlineKey + 1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

ContextNode* new_fiber_name_node(std::string_view name) { return new FiberNameNode(name); }

const char* fiber_name_of(const ContextNode* chain) noexcept {
  for (; chain; chain = chain->parent()) {
    if (chain->key() != ContextNode::kFiberNameKey) continue;
    const std::string& name = static_cast<const FiberNameNode*>(chain)->name;
    return name.empty() ? nullptr : name.c_str();
  }
  return nullptr;
}

std::string report_values_of(const ContextNode* chain) {
  std::string out;
  for_each_report_value(chain, [&out](const std::string& text) {
    if (!out.empty()) out += ", ";
    out += text;
  });
  return out;
}

void route_exception(ContextNode* chain, std::exception_ptr error, const char* where) noexcept {
  route_from(chain, chain, std::move(error), where);
}

void abort_on_forced_unwind(const char* where) noexcept {
  std::fprintf(stderr,
               "fiberloop: a fiber was destroyed while suspended inside %s; its stack cannot be unwound through "
               "the code that ran it. Callbacks and handlers must not suspend their fiber (Boost.Fiber waits "
               "included). Aborting.\n",
               where);
  std::abort();
}

bool handling_forced_unwind() noexcept {
  // By its mangled name: runtime/ does not depend on Boost.Context. Type names are
  // unique per type in the Itanium ABI.
  const std::type_info* type = abi::__cxa_current_exception_type();
  return type && std::strcmp(type->name(), "N5boost7context6detail13forced_unwindE") == 0;
}

}  // namespace detail

ExceptionStackContext::ExceptionStackContext(std::function<bool(std::exception_ptr)> handler) {
  if (!handler) throw std::invalid_argument("ExceptionStackContext needs a handler (got an empty std::function)");
  std::shared_ptr<detail::LoopAnchor> home;
  if (IOLoop* loop = detail::LoopInternals::running_here()) home = detail::LoopInternals::anchor(*loop);
  node_ = detail::push_context(new detail::HandlerNode(std::move(handler), std::move(home)));
}

ExceptionStackContext::~ExceptionStackContext() { detail::pop_context(node_); }

Deadline::Deadline(std::chrono::nanoseconds from_now) : Deadline(detail::deadline_after(from_now)) {}

Deadline::Deadline(clock::time_point at) {
  // Nested deadlines take the earliest: the node holds it, so a wait reads one node.
  if (const detail::DeadlineNode* outer = detail::deadline_of(detail::tls_active_chain)) at = std::min(at, outer->when);
  node_ = static_cast<detail::DeadlineNode*>(detail::push_context(new detail::DeadlineNode(at)));
}

Deadline::~Deadline() { detail::pop_context(node_); }

Deadline::clock::time_point Deadline::when() const noexcept { return node_->when; }

std::optional<Deadline::clock::time_point> Deadline::current() noexcept {
  if (const detail::DeadlineNode* node = detail::deadline_of(detail::tls_active_chain)) return node->when;
  return std::nullopt;
}

}  // namespace fiberloop
