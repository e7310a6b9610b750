#include "stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <fstream>
#include <new>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "stack_check.hpp"

namespace fiberloop::detail {

namespace {

std::atomic<std::size_t> g_guarded_alive{0};

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

struct PooledStack {
  boost::context::stack_context stack;
  bool guarded;
};

// Stacks of finished fibers, per thread, per size. Warm pages make the next spawn
// cheap; the cap bounds the memory they hold.
class StackPool {
 public:
  ~StackPool() {
    destroyed = true;
    for (auto& bucket : buckets_)
      for (auto* list : {&bucket.guarded, &bucket.unguarded})
        for (auto& s : *list) release(s);
  }
  bool take(std::size_t size, PooledStack& out) noexcept {
    Bucket* bucket = find(size);
    if (!bucket) return false;
    // Prefer a guarded stack; any stack of the right size beats a fresh mapping.
    auto& list = !bucket->guarded.empty() ? bucket->guarded : bucket->unguarded;
    if (list.empty()) return false;
    out = list.back();
    list.pop_back();
    --pooled_;
    return true;
  }
  void give(const PooledStack& s, std::size_t limit) noexcept {
    try {
      if (pooled_ < limit) {
        Bucket* bucket = find(s.stack.size);
        if (!bucket) bucket = &buckets_.emplace_back(Bucket{s.stack.size, {}, {}});
        (s.guarded ? bucket->guarded : bucket->unguarded).push_back(s);
        ++pooled_;
        return;
      }
    } catch (...) {
    }
    release(s);
  }
  static void release(const PooledStack& s) noexcept {
    const std::size_t guard = s.guarded ? page_size() : 0;
    auto* top = static_cast<char*>(s.stack.sp);
    ::munmap(top - s.stack.size - guard, s.stack.size + guard);
    if (s.guarded) g_guarded_alive.fetch_sub(1, std::memory_order_relaxed);
  }
  static inline thread_local bool destroyed = false;

 private:
  struct Bucket {
    std::size_t size;
    std::vector<PooledStack> guarded, unguarded;
  };
  Bucket* find(std::size_t size) noexcept {
    for (auto& b : buckets_)
      if (b.size == size) return &b;
    return nullptr;
  }
  std::vector<Bucket> buckets_;  // one per stack size in use: a handful at most
  std::size_t pooled_ = 0;
};

StackPool& this_thread_pool() {
  thread_local StackPool pool;
  return pool;
}

}  // namespace

std::size_t StackAllocator::guarded_stacks_alive() noexcept { return g_guarded_alive.load(std::memory_order_relaxed); }

std::size_t StackAllocator::default_guarded_limit() noexcept {
  static const std::size_t limit = [] {
    std::size_t max_map_count = 65530;
    std::ifstream in("/proc/sys/vm/max_map_count");
    in >> max_map_count;
    // Two mappings per guarded stack; leave half the mappings to everything else.
    return std::max<std::size_t>(max_map_count / 4, 64);
  }();
  return limit;
}

namespace {
thread_local StackAllocator::Allocated tls_last_allocated{};
}  // namespace

StackAllocator::Allocated StackAllocator::last_allocated() noexcept { return tls_last_allocated; }

boost::context::stack_context StackAllocator::allocate() {
  const boost::context::stack_context stack = allocate_stack();
  tls_last_allocated = {stack, guarded_};
  // Written on every handout: a measured stack was emptied, and a pooled one is
  // rewritten at the cost of one store to a resident page.
  if (!guarded_) write_stack_canary(static_cast<char*>(stack.sp) - stack.size);
  return stack;
}

boost::context::stack_context StackAllocator::allocate_stack() {
  const std::size_t page = page_size();
  const std::size_t size = (std::max<std::size_t>(size_, 4 * page) + page - 1) / page * page;
  PooledStack pooled{};
  if (!StackPool::destroyed && this_thread_pool().take(size, pooled)) {
    guarded_ = pooled.guarded;
    // Nothing of the stack is in use yet (Boost builds the fiber on it after this).
    // The top page stays: every fiber touches it, and a page fault costs more than
    // the precision it would buy. So does an unguarded stack's canary page.
    if (measured_) {
      const std::size_t canary_page = pooled.guarded ? 0 : page;
      ::madvise(static_cast<char*>(pooled.stack.sp) - size + canary_page, size - page - canary_page, MADV_DONTNEED);
    }
    return pooled.stack;
  }
  const std::size_t limit = guarded_limit_ ? guarded_limit_ : default_guarded_limit();
  bool guarded = g_guarded_alive.fetch_add(1, std::memory_order_relaxed) < limit;
  if (!guarded) g_guarded_alive.fetch_sub(1, std::memory_order_relaxed);
  const std::size_t guard = guarded ? page : 0;
  void* base = ::mmap(nullptr, size + guard, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (base == MAP_FAILED) {
    if (guarded) g_guarded_alive.fetch_sub(1, std::memory_order_relaxed);
    throw std::bad_alloc();
  }
  if (guarded && ::mprotect(base, page, PROT_NONE) != 0) {
    // Out of mappings (vm.max_map_count): keep the stack, without a guard.
    g_guarded_alive.fetch_sub(1, std::memory_order_relaxed);
    ::munmap(base, page);
    base = static_cast<char*>(base) + page;
    guarded = false;
  }
  guarded_ = guarded;
  boost::context::stack_context stack;
  stack.size = size;
  stack.sp = static_cast<char*>(base) + (guarded ? page : 0) + size;  // stacks grow down
  return stack;
}

void StackAllocator::deallocate(boost::context::stack_context& stack) noexcept {
  const PooledStack s{stack, guarded_};
#if defined(__SANITIZE_ADDRESS__)
  // ASan does not know fiber stacks: frames left by exceptions keep their poison,
  // which the next fiber on this pooled stack would trip over.
  __asan_unpoison_memory_region(static_cast<char*>(stack.sp) - stack.size, stack.size);
#endif
  if (StackPool::destroyed) {
    StackPool::release(s);
    return;
  }
  this_thread_pool().give(s, pool_limit_);
}

}  // namespace fiberloop::detail
