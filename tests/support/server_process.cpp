#include "support/server_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>

namespace fiberloop::testing {

namespace {

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

std::uint16_t free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int error = errno;
    ::close(fd);
    throw std::system_error(error, std::generic_category(), "binding a free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string directories = path ? path : "/usr/local/bin:/usr/bin:/bin";
  directories += ":/usr/sbin:/sbin";
  std::string_view rest = directories;
  while (!rest.empty()) {
    const std::size_t colon = std::min(rest.find(':'), rest.size());
    std::string candidate = std::string(rest.substr(0, colon)) + "/" + name;
    if (colon > 0 && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    rest.remove_prefix(std::min(colon + 1, rest.size()));
  }
  return "";
}

ServerProcess::~ServerProcess() {
  kill();
  if (output_fd_ >= 0) ::close(output_fd_);
}

void ServerProcess::start(std::vector<std::string> args) {
  if (running()) throw std::logic_error("ServerProcess::start: " + args.at(0) + " still runs");
  // Everything the child needs is prepared here: between fork and exec it may only
  // make async-signal-safe calls (other threads may hold malloc's locks).
  if (output_fd_ >= 0) ::close(output_fd_);
  output_fd_ = ::memfd_create("server-output", MFD_CLOEXEC);
  if (output_fd_ < 0) throw_errno("memfd_create");
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) throw_errno("open /dev/null");
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  // PR_SET_PDEATHSIG fires when the forking *thread* ends: only the main thread is
  // sure to last as long as the process (a pool thread of run_blocking may not).
  const bool on_main_thread = ::gettid() == parent;

  const pid_t child = ::fork();
  if (child < 0) {
    const int error = errno;
    ::close(null_fd);
    throw std::system_error(error, std::generic_category(), "fork");
  }
  if (child == 0) {
    ::setpgid(0, 0);  // its own group: signals to the test's group miss it
    if (on_main_thread) ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no orphan if the test process dies first
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the test thread's blocked signals are not the server's
    ::dup2(null_fd, 0);
    ::dup2(output_fd_, 1);
    ::dup2(output_fd_, 2);
    ::close_range(3, ~0U, 0);  // descriptors the test left inheritable stay with the test
    ::execv(argv[0], argv.data());
    static constexpr char failed[] = "ServerProcess: execv failed\n";
    (void)!::write(2, failed, sizeof failed - 1);
    ::_exit(127);
  }
  ::setpgid(child, child);  // in both: whichever runs first, the group exists before kill(-pid)
  ::close(null_fd);
  pid_ = child;
  ended_.reset();
}

std::optional<std::string> ServerProcess::ended() {
  if (pid_ > 0) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
    pid_ = -1;
    ended_ = describe_exit(status);
  }
  return ended_ ? ended_ : std::optional<std::string>("was never started");
}

bool ServerProcess::stop(int signal, std::chrono::milliseconds grace) noexcept {
  if (pid_ <= 0) return true;
  if (::kill(-pid_, signal) != 0) ::kill(pid_, signal);  // the group, should the server fork
  const auto give_up = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < give_up) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      ended_ = describe_exit(status);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill();
  return false;
}

void ServerProcess::kill() noexcept {
  if (pid_ <= 0) return;
  if (::kill(-pid_, SIGKILL) != 0) ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  ended_ = describe_exit(status);
}

std::string ServerProcess::output() const {
  std::string text;
  if (output_fd_ < 0) return text;
  char chunk[4096];
  for (off_t offset = 0;;) {
    const ssize_t n = ::pread(output_fd_, chunk, sizeof chunk, offset);
    if (n <= 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
    offset += n;
  }
  return text;
}

std::string ServerProcess::output_tail(std::size_t max_bytes) const {
  std::string text = output();
  if (text.size() <= max_bytes) return text;
  std::size_t from = text.size() - max_bytes;
  const std::size_t line = text.find('\n', from);
  if (line != std::string::npos && line - from < 200) from = line + 1;
  return "[...]\n" + text.substr(from);
}

}  // namespace fiberloop::testing
