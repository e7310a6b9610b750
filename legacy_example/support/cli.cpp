#include "cli.hpp"

#include <signal.h>
#include <sys/signalfd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "sql_url.hpp"

namespace legacy {
namespace {

[[noreturn]] void usage_error(const char* program, std::string_view problem, std::string_view usage) {
  std::fprintf(stderr, "%s: %.*s\nusage: %s %.*s\n", program, static_cast<int>(problem.size()), problem.data(),
               program, static_cast<int>(usage.size()), usage.data());
  std::exit(1);
}

bool parse_int(std::string_view text, long min, long max, long& out) {
  long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < min || value > max)
    return false;
  out = value;
  return true;
}

std::optional<HostPort> parse_host_port(std::string_view text) {
  const auto colon = text.rfind(':');
  long port = 0;
  if (colon == std::string_view::npos || colon == 0 || !parse_int(text.substr(colon + 1), 1, 65535, port))
    return std::nullopt;
  return HostPort{std::string(text.substr(0, colon)), static_cast<std::uint16_t>(port)};
}

}  // namespace

Flags parse_flags(int argc, char** argv, std::initializer_list<std::string_view> allowed, std::string_view usage) {
  const char* program = argc > 0 ? argv[0] : "legacy";
  const auto is_allowed = [&](std::string_view name) {
    return std::find(allowed.begin(), allowed.end(), name) != allowed.end();
  };
  Flags flags;
  bool have_backend = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("usage: %s %.*s\n", program, static_cast<int>(usage.size()), usage.data());
      std::exit(0);
    }
    if (arg.substr(0, 2) != "--") usage_error(program, "unexpected argument '" + std::string(arg) + "'", usage);
    arg.remove_prefix(2);
    std::string_view name = arg;
    std::string_view value;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      usage_error(program, "--" + std::string(name) + " needs a value", usage);
    }
    if (!is_allowed(name)) usage_error(program, "unknown flag --" + std::string(name), usage);
    const std::string bad = "bad value '" + std::string(value) + "' for --" + std::string(name);
    long number = 0;
    if (name == "host") {
      if (value.empty()) usage_error(program, bad, usage);
      flags.host = value;
    } else if (name == "port") {
      if (!parse_int(value, 0, 65535, number)) usage_error(program, bad + " (0-65535)", usage);
      flags.port = static_cast<std::uint16_t>(number);
    } else if (name == "backend") {
      const auto backend = parse_host_port(value);
      if (!backend) usage_error(program, bad + " (HOST:PORT)", usage);
      flags.backend_host = backend->host;
      flags.backend_port = backend->port;
      have_backend = true;
    } else if (name == "cache") {
      flags.cache.clear();
      for (std::string_view rest = value;;) {
        const auto comma = rest.find(',');
        const auto server = parse_host_port(rest.substr(0, comma));
        if (!server) usage_error(program, bad + " (HOST:PORT[,HOST:PORT...])", usage);
        flags.cache.push_back(*server);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
    } else if (name == "inventory") {
      try {
        (void)parse_sql_url(value);
      } catch (const std::invalid_argument& e) {
        usage_error(program, e.what(), usage);
      }
      flags.inventory = value;
    } else if (name == "threads") {
      if (!parse_int(value, 1, 100000, number)) usage_error(program, bad + " (1-100000)", usage);
      flags.threads = static_cast<int>(number);
    } else if (name == "delay-ms") {
      if (!parse_int(value, 0, 600000, number)) usage_error(program, bad + " (0-600000)", usage);
      flags.delay_ms = static_cast<int>(number);
    } else if (name == "deadline-ms") {
      if (!parse_int(value, 0, 600000, number)) usage_error(program, bad + " (0-600000)", usage);
      flags.deadline_ms = static_cast<int>(number);
    } else if (name == "watchdog-ms") {
      if (!parse_int(value, 0, 600000, number)) usage_error(program, bad + " (0-600000)", usage);
      flags.watchdog_ms = static_cast<int>(number);
    }
  }
  if (have_backend && !flags.inventory.empty())
    usage_error(program, "--backend and --inventory exclude each other: the inventory comes from one of them", usage);
  if (is_allowed("backend") && !have_backend && flags.inventory.empty())
    usage_error(program, "--backend HOST:PORT (or --inventory URL) is required", usage);
  return flags;
}

void announce_listening(const std::string& host, std::uint16_t port) {
  std::printf("listening on %s:%u\n", host.c_str(), static_cast<unsigned>(port));
  std::fflush(stdout);
}

int stop_signal_fd() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  // Blocked in every thread, so the signals are seen only through the signalfd.
  if (pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0) {
    std::fprintf(stderr, "cannot block SIGINT/SIGTERM\n");
    std::exit(1);
  }
  const int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) {
    std::fprintf(stderr, "signalfd: %s\n", std::strerror(errno));
    std::exit(1);
  }
  return fd;
}

}  // namespace legacy
