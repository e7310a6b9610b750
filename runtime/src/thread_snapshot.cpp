// Snapshots of a running thread, taken by a signal (thread_snapshot.hpp).

#include "thread_snapshot.hpp"

#include <execinfo.h>
#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

#include <fiberloop/detail/context_chain.hpp>

#include "loop_internals.hpp"

namespace fiberloop::detail {

namespace {

constexpr int kSlots = 64;  // watchdogs alive at once that can capture stacks
constexpr int kMaxFrames = 64;
constexpr std::size_t kNameBytes = 128;
constexpr std::size_t kValuesBytes = 512;

/// Where one snapshotter's requests and the handler's answers meet.
struct Slot {
  std::atomic<bool> claimed{false};
  // The token of the request the handler may answer (0: none). The handler takes it
  // (exchanging it for 0) before writing; the asker withdraws it the same way when
  // it stops waiting, so a late signal finds nothing to write into.
  std::atomic<std::uint64_t> wanted{0};
  std::atomic<std::uint64_t> done{0};  // the token last answered (release: the fields below)
  // Set by the owner on the captured thread, read by the handler on that thread.
  const std::atomic<std::uint64_t>* serial = nullptr;
  std::uintptr_t stack_low = 0;
  std::uintptr_t stack_high = 0;
  // Written by the handler.
  void* frames[kMaxFrames];
  int frame_count = 0;
  std::uintptr_t interrupted_pc = 0;
  std::uint64_t serial_seen = 0;
  bool on_fiber = false;
  bool named = false;
  char name[kNameBytes];
  char values[kValuesBytes];
};

Slot g_slots[kSlots];
std::atomic<std::uint64_t> g_next_token{1};

int snapshot_signal() noexcept { return SIGRTMIN + kSnapshotSignalOffset; }

/// Appends `text` to the NUL-terminated `buffer` of `capacity` bytes, cutting it
/// short if it does not fit. Async-signal-safe.
void append_bounded(char* buffer, std::size_t capacity, std::size_t& used, const char* text, std::size_t length) noexcept {
  const std::size_t room = capacity - 1 - used;
  const std::size_t n = length < room ? length : room;
  std::memcpy(buffer + used, text, n);
  used += n;
  buffer[used] = '\0';
}

std::uintptr_t interrupted_pc_of(void* ucontext) noexcept {
  if (!ucontext) return 0;
  const auto* uc = static_cast<const ucontext_t*>(ucontext);
#if defined(__x86_64__)
  return static_cast<std::uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
  return static_cast<std::uintptr_t>(uc->uc_mcontext.pc);
#else
  (void)uc;
  return 0;
#endif
}

// Runs on the captured thread, interrupting whatever it did: touches nothing but the
// slot, the thread's own active contexts (which it keeps alive) and async-signal-safe
// calls. backtrace() was called once before any signal, so it does not load libgcc.
void on_snapshot_signal(int, siginfo_t* info, void* ucontext) {
  // Ours only: sent by this process with pthread_sigqueue().
  if (!info || info->si_code != SI_QUEUE || info->si_pid != ::getpid()) return;
  const auto value = reinterpret_cast<std::uintptr_t>(info->si_value.sival_ptr);
  Slot& slot = g_slots[value % kSlots];
  const std::uint64_t token = value / kSlots;
  std::uint64_t expected = token;
  if (!slot.wanted.compare_exchange_strong(expected, 0, std::memory_order_acquire)) return;  // withdrawn
  const int saved_errno = errno;
  slot.frame_count = ::backtrace(slot.frames, kMaxFrames);
  slot.interrupted_pc = interrupted_pc_of(ucontext);
  slot.serial_seen = slot.serial->load(std::memory_order_relaxed);
  const auto frame = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  slot.on_fiber = frame < slot.stack_low || frame >= slot.stack_high;
  const ContextNode* chain = tls_active_chain;
  const char* name = fiber_name_of(chain);
  slot.named = name != nullptr;
  std::size_t used = 0;
  slot.name[0] = '\0';
  if (name) append_bounded(slot.name, kNameBytes, used, name, std::strlen(name));
  used = 0;
  slot.values[0] = '\0';
  for_each_report_value(chain, [&slot, &used](const std::string& text) {
    if (used > 0) append_bounded(slot.values, kValuesBytes, used, ", ", 2);
    append_bounded(slot.values, kValuesBytes, used, text.data(), text.size());
  });
  errno = saved_errno;
  slot.done.store(token, std::memory_order_release);
}

/// Installs the handler once per process. Returns "" when it is ours, else why not.
const std::string& install_handler() {
  static const std::string why_not = [] {
    void* warm[2];
    ::backtrace(warm, 2);  // loads libgcc's unwinder now: the handler must not
    const int sig = snapshot_signal();
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0) return std::string("sigaction() failed: ") + std::strerror(errno);
    const bool ours = (old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_snapshot_signal;
    if (!ours && ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL))
      return "signal SIGRTMIN+" + std::to_string(kSnapshotSignalOffset) +
             " already has a handler in this program, so the watchdog leaves it alone";
    struct sigaction action {};
    action.sa_sigaction = on_snapshot_signal;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (!ours && ::sigaction(sig, &action, nullptr) != 0)
      return std::string("sigaction() failed: ") + std::strerror(errno);
    return std::string();
  }();
  return why_not;
}

}  // namespace

ThreadSnapshotter::ThreadSnapshotter(const std::atomic<std::uint64_t>& slice_serial) : thread_(::pthread_self()) {
  why_unavailable_ = install_handler();
  if (!why_unavailable_.empty()) return;
  std::uintptr_t low = 0;
  std::uintptr_t high = 0;
  pthread_attr_t attr;
  if (::pthread_getattr_np(thread_, &attr) == 0) {
    void* base = nullptr;
    std::size_t size = 0;
    if (::pthread_attr_getstack(&attr, &base, &size) == 0) {
      low = reinterpret_cast<std::uintptr_t>(base);
      high = low + size;
    }
    ::pthread_attr_destroy(&attr);
  }
  for (int i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (!g_slots[i].claimed.compare_exchange_strong(expected, true, std::memory_order_acquire)) continue;
    g_slots[i].serial = &slice_serial;
    g_slots[i].stack_low = low;
    g_slots[i].stack_high = high;
    slot_ = i;
    return;
  }
  why_unavailable_ = "more than " + std::to_string(kSlots) + " loops have a watchdog";
}

ThreadSnapshotter::~ThreadSnapshotter() {
  // capture() never returns with a request the handler may still answer.
  if (slot_ >= 0) g_slots[slot_].claimed.store(false, std::memory_order_release);
}

bool ThreadSnapshotter::capture(ThreadSnapshot& out, std::string& why_not, std::chrono::milliseconds patience,
                                const std::atomic<bool>& cancelled) {
  if (slot_ < 0) {
    why_not = why_unavailable_;
    return false;
  }
  Slot& slot = g_slots[slot_];
  const std::uint64_t token = g_next_token.fetch_add(1, std::memory_order_relaxed);
  slot.wanted.store(token, std::memory_order_release);
  sigval value{};
  value.sival_ptr = reinterpret_cast<void*>(static_cast<std::uintptr_t>(token * kSlots + static_cast<std::uint64_t>(slot_)));
  const auto withdraw = [&slot, token] {
    std::uint64_t expected = token;
    return slot.wanted.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
  };
  if (const int err = ::pthread_sigqueue(thread_, snapshot_signal(), value); err != 0) {
    withdraw();
    why_not = std::string("pthread_sigqueue() failed: ") + std::strerror(err);
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (slot.done.load(std::memory_order_acquire) != token) {
    if (cancelled.load(std::memory_order_relaxed) || std::chrono::steady_clock::now() >= deadline) {
      if (withdraw()) {
        if (cancelled.load(std::memory_order_relaxed)) {
          why_not = "the watchdog stopped before the loop's thread answered its signal";
          return false;
        }
        why_not = "the loop's thread did not answer the watchdog's signal (SIGRTMIN+" +
                  std::to_string(kSnapshotSignalOffset) + ") within " + std::to_string(patience.count()) +
                  " ms: it may block that signal, or (under ThreadSanitizer) run without calling into the C library";
        return false;
      }
      // The handler took the request: it answers within microseconds. Should it not
      // (the thread descheduled for long), the slot is given up for good.
      const auto last_chance = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      while (slot.done.load(std::memory_order_acquire) != token && std::chrono::steady_clock::now() < last_chance)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      if (slot.done.load(std::memory_order_acquire) != token) {
        slot_ = -1;
        why_unavailable_ = why_not = "the loop's thread did not finish answering the watchdog's signal";
        return false;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Drop the handler's own frames (and, under sanitizers, theirs): the stack starts
  // where the thread was interrupted, when the unwinder found that frame.
  int first = slot.frame_count > 0 ? 1 : 0;
  for (int i = 0; i < slot.frame_count; ++i) {
    if (reinterpret_cast<std::uintptr_t>(slot.frames[i]) == slot.interrupted_pc && slot.interrupted_pc != 0) {
      first = i;
      break;
    }
  }
  out.frames.clear();
  for (int i = first; i < slot.frame_count; ++i) out.frames.push_back(reinterpret_cast<std::uintptr_t>(slot.frames[i]));
  out.on_fiber = slot.on_fiber;
  out.has_fiber_name = slot.named;
  out.fiber_name = slot.name;
  out.report_values = slot.values;
  out.slice_serial = slot.serial_seen;
  return true;
}

}  // namespace fiberloop::detail
