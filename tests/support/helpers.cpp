#include "support/helpers.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <system_error>

#include "support/loop_test.hpp"

namespace fiberloop::testing {

Pipe::Pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  read_fd = fds[0];
  write_fd = fds[1];
}

Pipe::~Pipe() {
  ::close(read_fd);
  ::close(write_fd);
}

void Pipe::write_byte() const { ASSERT_EQ(::write(write_fd, "x", 1), 1); }

void Pipe::read_byte() const {
  char c;
  ASSERT_EQ(::read(read_fd, &c, 1), 1);
}

namespace {

/// Calls `each(fd)` for every open descriptor of this process (but the one listing them).
template <class F>
void for_each_open_fd(F each) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) throw std::system_error(errno, std::generic_category(), "opendir(/proc/self/fd)");
  const int own = ::dirfd(dir);
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd != own) each(fd);
  }
  ::closedir(dir);
}

}  // namespace

std::size_t open_fd_count() {
  std::size_t count = 0;
  for_each_open_fd([&](int) { ++count; });
  return count;
}

int highest_fd() {
  int highest = 2;
  for_each_open_fd([&](int fd) { highest = std::max(highest, fd); });
  return highest;
}

std::size_t memory_mappings() {
  std::ifstream maps("/proc/self/maps");
  std::size_t lines = 0;
  for (std::string line; std::getline(maps, line);) ++lines;
  return lines;
}

std::string run_in_child(const std::function<std::string()>& body) {
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return std::string("pipe2: ") + std::strerror(errno);
  const pid_t child = ::fork();
  if (child < 0) return std::string("fork: ") + std::strerror(errno);
  if (child == 0) {
    ::close(report[0]);
    std::string failure;
    try {
      failure = body();
    } catch (const std::exception& e) {
      failure = std::string("the child threw: ") + e.what();
    } catch (...) {
      failure = "the child threw a non-std exception";
    }
    for (std::size_t done = 0; done < failure.size();) {
      const ssize_t n = ::write(report[1], failure.data() + done, failure.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    ::_exit(0);  // no atexit handlers, no gtest teardown in the child
  }
  ::close(report[1]);
  std::string failure;
  char chunk[1024];
  for (ssize_t n; (n = ::read(report[0], chunk, sizeof chunk)) != 0;) {
    if (n > 0) failure.append(chunk, static_cast<std::size_t>(n));
    else if (errno != EINTR) break;
  }
  ::close(report[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status))
    return "the child was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) +
           ") " + failure;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "the child exited with status " + std::to_string(WEXITSTATUS(status)) + " " + failure;
  return failure;
}

std::string capture_stderr(const std::function<void()>& fn) {
  ::testing::internal::CaptureStderr();
  struct Release {  // if `fn` throws: stop capturing, or gtest's own output vanishes
    bool capturing = true;
    ~Release() {
      if (capturing) (void)::testing::internal::GetCapturedStderr();
    }
  } release;
  fn();
  release.capturing = false;
  return ::testing::internal::GetCapturedStderr();
}

Ticker::Ticker(IOLoop& loop)
    : fiber_(loop.spawn([this] {
        while (!stopping_) {
          ticks_.push_back(std::chrono::steady_clock::now());
          sleep_for(std::chrono::milliseconds(1));
        }
      })) {}

Ticker::~Ticker() { EXPECT_TRUE(fiber_.done()) << "a Ticker went without stop(): its fiber still refers to it"; }

void Ticker::stop() {
  stopping_ = true;
  wait_for_future(fiber_);
}

bool Ticker::ran_between(time_point from, time_point to) const {
  return std::any_of(ticks_.begin(), ticks_.end(), [&](time_point t) { return from < t && t < to; });
}

ReportLog::ReportLog(IOLoop& loop) : loop_(loop) {
  loop.set_unhandled_exception_handler([this](std::exception_ptr error, const std::string& where) {
    std::lock_guard lock(mutex_);
    entries_.emplace_back(what_of(error), where);
  });
}

ReportLog::~ReportLog() { loop_.set_unhandled_exception_handler(nullptr); }

std::vector<ReportLog::Entry> ReportLog::entries() const {
  std::lock_guard lock(mutex_);
  return entries_;
}

}  // namespace fiberloop::testing
