#include "stack_check.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "fiber_record.hpp"
#include "signal_chain.hpp"

namespace fiberloop::detail {

thread_local constinit const FiberRecord* tls_running_fiber = nullptr;

namespace {

// Read by the fault handler: set before it is installed.
std::size_t g_page_size = 4096;
struct sigaction g_previous_action[2];  // SIGSEGV's and SIGBUS's before ours

// ---- async-signal-safe output ----

void write_all(const char* text, std::size_t length) noexcept {
  while (length > 0) {
    const ssize_t written = ::write(STDERR_FILENO, text, length);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return;
    text += written;
    length -= static_cast<std::size_t>(written);
  }
}

void write_text(const char* text) noexcept { write_all(text, std::strlen(text)); }

void write_number(std::uint64_t value) noexcept {
  char digits[20];
  std::size_t at = sizeof digits;
  do {
    digits[--at] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0);
  write_all(digits + at, sizeof digits - at);
}

// ---- the fault handler ----

std::uintptr_t interrupted_stack_pointer(const void* context) noexcept {
  const auto* uc = static_cast<const ucontext_t*>(context);
#if defined(__x86_64__)
  return static_cast<std::uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
  return static_cast<std::uintptr_t>(uc->uc_mcontext.sp);
#else
  (void)uc;
  return 0;  // unknown: only faults on the page below the stack count
#endif
}

/// Whether a fault at `address`, with the stack pointer at `sp`, is `fiber`
/// overflowing its stack: it touched the page below the stack (its guard page, or
/// for an unguarded stack an unmapped one), or its stack pointer has left the stack
/// downwards (a frame larger than a page jumped over that page).
bool is_overflow(const FiberRecord& fiber, std::uintptr_t address, std::uintptr_t sp) noexcept {
  const auto bottom = reinterpret_cast<std::uintptr_t>(fiber.stack_bottom);
  if (bottom == 0 || address >= bottom) return false;
  if (bottom - address <= g_page_size) return true;
  constexpr std::uintptr_t kFarthestFrame = 1 << 20;  // past this, the code is on some other stack
  return sp < bottom && bottom - sp <= kFarthestFrame && bottom - address <= kFarthestFrame;
}

/// What would have happened without us: the handler installed before ours, or the
/// default action (restored, then the faulting instruction faults again on return;
/// a signal sent with kill(2) is raised again).
void pass_on(int signal, siginfo_t* info, void* context) noexcept {
  if (call_previous_handler(g_previous_action[signal == SIGBUS ? 1 : 0], signal, info, context)) return;
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  ::sigaction(signal, &default_action, nullptr);
  if (info->si_code <= 0) ::raise(signal);
}

void on_fault(int signal, siginfo_t* info, void* context) {
  const FiberRecord* running = tls_running_fiber;
  if (running && info->si_code > 0 &&
      is_overflow(*running, reinterpret_cast<std::uintptr_t>(info->si_addr), interrupted_stack_pointer(context)))
    report_stack_overflow(*running);
  pass_on(signal, info, context);
}

void install_fault_handler() noexcept {
  static const bool installed = [] {
    g_page_size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    struct sigaction action {};
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGSEGV, &action, &g_previous_action[0]);
    ::sigaction(SIGBUS, &action, &g_previous_action[1]);
    return true;
  }();
  (void)installed;
}

}  // namespace

void report_stack_overflow(const FiberRecord& record) noexcept {
  write_text("fiberloop: stack overflow in ");
  // The name goes with the task at the fiber's end; the id stays.
  if (record.task && !record.task->name.empty()) {
    write_text("fiber \"");
    write_all(record.task->name.data(), record.task->name.size());
    write_text("\"");
  } else {
    write_text("unnamed fiber #");
    write_number(record.id);
  }
  write_text(" (stack ");
  write_number(record.stack_size / 1024);
  write_text(" KiB; raise IOLoop::Options::stack_size)\n");
  std::abort();
}

ThreadFaultHandling::ThreadFaultHandling() noexcept {
  install_fault_handler();
  stack_t current{};
  if (::sigaltstack(nullptr, &current) != 0 || !(current.ss_flags & SS_DISABLE)) return;  // it has one
  // The handler writes a few lines and aborts; sanitizers' interceptors want more.
  const std::size_t size = std::max<std::size_t>(64 * 1024, 4 * static_cast<std::size_t>(::sysconf(_SC_MINSIGSTKSZ)));
  void* memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED) return;  // overflows then die by SIGSEGV, unreported
  stack_t ours{};
  ours.ss_sp = memory;
  ours.ss_size = size;
  if (::sigaltstack(&ours, nullptr) != 0) {
    ::munmap(memory, size);
    return;
  }
  signal_stack_ = memory;
  signal_stack_size_ = size;
}

ThreadFaultHandling::~ThreadFaultHandling() {
  if (!signal_stack_) return;
  stack_t current{};
  // Someone replaced it, or we are on it: leave it (and its memory) alone.
  if (::sigaltstack(nullptr, &current) != 0 || current.ss_sp != signal_stack_ || (current.ss_flags & SS_ONSTACK))
    return;
  stack_t off{};
  off.ss_flags = SS_DISABLE;
  if (::sigaltstack(&off, nullptr) == 0) ::munmap(signal_stack_, signal_stack_size_);
}

std::size_t touched_stack_bytes(const FiberRecord& record) noexcept {
  const std::size_t page = g_page_size;
  const std::size_t pages = record.stack_size / page;
  // The canary's page is resident whatever the fiber did: a fiber that reached it
  // counts as using all the pages above it.
  std::size_t at = record.stack_guarded ? 0 : 1;
  unsigned char resident[256];
  while (at < pages) {
    const std::size_t n = std::min(pages - at, sizeof resident);
    if (::mincore(record.stack_bottom + at * page, n * page, resident) != 0) return 0;
    for (std::size_t i = 0; i < n; ++i)
      if (resident[i] & 1) return (pages - at - i) * page;
    at += n;
  }
  return 0;
}

StackUseEntry* StackUseTable::sample(const std::string& name) {
  StackUseEntry* entry = &unnamed_;
  if (!name.empty()) {
    if (!last_named_ || last_named_->first != name) {
      // Names made per request ("GET /item/17") would grow the table without end:
      // past kMaxNames they share one entry.
      auto found = named_.find(name);
      if (found == named_.end())
        found = named_.size() < kMaxNames ? named_.try_emplace(name).first : named_.try_emplace(kMoreNames).first;
      last_named_ = &*found;
    }
    entry = &last_named_->second;
  }
  const std::uint64_t spawned = entry->spawned++;
  return spawned < kFirstMeasured || spawned % kSampleEvery == 0 ? entry : nullptr;
}

std::vector<IOLoopMetrics::StackUse> StackUseTable::report() const {
  std::vector<IOLoopMetrics::StackUse> out;
  if (unnamed_.measured > 0) out.push_back({"", unnamed_.high_water, unnamed_.measured});
  for (const auto& [name, entry] : named_)
    if (entry.measured > 0) out.push_back({name, entry.high_water, entry.measured});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.fiber_name < b.fiber_name; });
  return out;
}

}  // namespace fiberloop::detail
