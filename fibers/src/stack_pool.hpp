#pragma once
// Fiber stacks: mmap'd, guard-paged up to a process-wide budget, pooled per thread.

#include <cstddef>

#include <boost/context/stack_context.hpp>

namespace fiberloop::detail {

/// A Boost.Context StackAllocator. Boost keeps the copy that allocated a stack and
/// deallocates through it, so the copy remembers whether its stack has a guard page.
class StackAllocator {
 public:
  StackAllocator(std::size_t size, std::size_t guarded_limit, std::size_t pool_limit) noexcept
      : size_(size), guarded_limit_(guarded_limit), pool_limit_(pool_limit) {}

  boost::context::stack_context allocate();
  void deallocate(boost::context::stack_context& stack) noexcept;

  /// Live guard-paged stacks in this process (pooled ones included).
  static std::size_t guarded_stacks_alive() noexcept;
  /// The guard budget used when the loop's option is 0.
  static std::size_t default_guarded_limit() noexcept;

#if defined(__SANITIZE_ADDRESS__)
  /// The stack most recently handed out on this thread, for AddressSanitizer's
  /// fiber-switch annotations (Boost allocates inside the fiber's constructor).
  static boost::context::stack_context last_allocated() noexcept;
#endif

 private:
#if defined(__SANITIZE_ADDRESS__)
  boost::context::stack_context allocate_stack();
#endif
  std::size_t size_;
  std::size_t guarded_limit_;
  std::size_t pool_limit_;
  bool guarded_ = false;
};

}  // namespace fiberloop::detail
