// IOLoop's diagnostics: metrics(), dump(), and where reports go.

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <string>
#include <system_error>

#include <fiberloop/io_loop.hpp>
#include <fiberloop/thread_pool_executor.hpp>

#include "loop_internals.hpp"
#include "signal_chain.hpp"

namespace fiberloop {

namespace {
int g_dump_signal_fd = -1;
std::atomic<std::uint64_t> g_dump_signals{0};  // lock-free: bumped in the handler
struct sigaction g_previous_sigusr1 {};

void on_sigusr1(int signal, siginfo_t* info, void* context) {
  const int saved_errno = errno;  // a handler must leave errno as it found it
  g_dump_signals.fetch_add(1, std::memory_order_relaxed);
  const std::uint64_t one = 1;
  (void)!::write(g_dump_signal_fd, &one, sizeof one);
  errno = saved_errno;
  (void)detail::call_previous_handler(g_previous_sigusr1, signal, info, context);
}
}  // namespace

std::uint64_t detail::dump_signals_received() noexcept { return g_dump_signals.load(std::memory_order_relaxed); }

int detail::dump_signal_fd() {
  static std::once_flag once;
  std::call_once(once, [] {
    const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "fiberloop: eventfd for SIGUSR1 dumps");
    g_dump_signal_fd = fd;
    struct sigaction action {};
    action.sa_sigaction = on_sigusr1;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (::sigaction(SIGUSR1, &action, &g_previous_sigusr1) != 0)
      throw std::system_error(errno, std::generic_category(), "fiberloop: installing the SIGUSR1 handler");
  });
  return g_dump_signal_fd;
}

IOLoopMetrics IOLoop::metrics() const {
  check_owner("metrics");
  IOLoopMetrics m;
  m.fibers_alive = live_fibers();
  m.fibers_created = counters_.fibers_created;
  m.context_switches = counters_.context_switches;
  m.callbacks_run = counters_.callbacks_run;
  m.timers_pending = detail::LoopInternals::live_timers(*this);
  m.loop_iterations = counters_.loop_iterations;
  m.watchdog_reports = counters_.watchdog_reports.load(std::memory_order_relaxed);
  m.longest_slice = std::chrono::nanoseconds(counters_.longest_slice_ns.load(std::memory_order_relaxed));
  m.stuck_reports = counters_.stuck_reports;
  m.blocking_queue_depth = blocking_executor_ ? blocking_executor_->queued() : 0;
  if (fibers_) m.stack_high_water = fibers_->stack_high_water();
  return m;
}

std::string IOLoop::dump() const {
  check_owner("dump");
  std::string out = "fiberloop: IOLoop dump: " + std::to_string(live_fibers()) + " live fiber(s), " +
                    std::to_string(detail::LoopInternals::live_timers(*this)) + " timer(s) pending\n";
  if (fibers_) fibers_->dump(out, clock::now());
  return out;
}

void IOLoop::set_report_handler(ReportHandler handler) {
  check_owner("set_report_handler");
  std::shared_ptr<const ReportHandler> installed;
  if (handler) installed = std::make_shared<const ReportHandler>(std::move(handler));
  std::lock_guard lock(report_lock_);
  report_handler_ = std::move(installed);
}

void detail::LoopInternals::emit_report(const IOLoop& loop, std::string_view report) noexcept {
  std::shared_ptr<const IOLoop::ReportHandler> handler;
  {
    std::lock_guard lock(loop.report_lock_);
    handler = loop.report_handler_;
  }
  if (handler) {
    try {
      (*handler)(report);
      return;
    } catch (...) {
      std::fputs("fiberloop: the report handler threw; the report follows on stderr\n", stderr);
    }
  }
  std::fwrite(report.data(), 1, report.size(), stderr);
  if (!report.empty() && report.back() != '\n') std::fputc('\n', stderr);
}

}  // namespace fiberloop
