#pragma once
// Fiber stacks: mmap'd, guard-paged up to a process-wide budget, pooled per thread.

#include <cstddef>

#include <boost/context/stack_context.hpp>

namespace fiberloop::detail {

/// A Boost.Context StackAllocator. Boost keeps the copy that allocated a stack and
/// deallocates through it, so the copy remembers whether its stack has a guard page.
class StackAllocator {
 public:
  /// `measured`: the stack is handed out with only its top page (which every fiber
  /// uses) and its canary's resident (a pooled one is emptied with madvise), so the
  /// pages resident when the fiber ends are the ones it touched
  /// (touched_stack_bytes() in stack_check.hpp).
  StackAllocator(std::size_t size, std::size_t guarded_limit, std::size_t pool_limit, bool measured = false) noexcept
      : size_(size), guarded_limit_(guarded_limit), pool_limit_(pool_limit), measured_(measured) {}

  boost::context::stack_context allocate();
  void deallocate(boost::context::stack_context& stack) noexcept;

  /// Live guard-paged stacks in this process (pooled ones included).
  static std::size_t guarded_stacks_alive() noexcept;
  /// The guard budget used when the loop's option is 0.
  static std::size_t default_guarded_limit() noexcept;

  /// A stack as the fiber that runs on it knows it.
  struct Allocated {
    boost::context::stack_context stack;
    bool guarded = false;  // a guard page lies below it; else a canary guards its far end
  };
  /// The stack most recently handed out on this thread (Boost allocates inside the
  /// fiber's constructor): its bounds go in the fiber's record.
  static Allocated last_allocated() noexcept;

 private:
  boost::context::stack_context allocate_stack();
  std::size_t size_;
  std::size_t guarded_limit_;
  std::size_t pool_limit_;
  bool measured_;
  bool guarded_ = false;
};

}  // namespace fiberloop::detail
