// The attacker of bench/http/attack.sh: hostile connections against an HTTP server
// while a normal client sends ordinary requests, and the server's memory watched.
//
//   fiberloop_http_attack --port P --server-pid PID [options]
//     --per-kind N          hostile connections of each kind, open at once (250)
//     --seconds S           how long the attack lasts (40)
//     --drip-bytes B        what an endless connection sends at a time (1024)
//     --drip-ms T           ... and how often (50)
//     --rss-limit-mib M     target: the server's peak RSS (VmHWM) stays under M (64)
//     --latency-limit-ms L  target: every normal request is answered within L (100)
//     --json FILE           also write the results there
//
// Four kinds of hostile connection, each replaced by a new one as soon as the server
// drops it, so N of each are open throughout:
//   endless header     a header line that never ends, B bytes every T ms
//   endless chunk ext  a chunked body whose first chunk-size line never ends ("1;a=aaa...")
//   endless trailers   a chunked body whose trailer section never ends
//   slow body          Content-Length: 1000000, then one byte a second
// The normal client (its own thread) sends a GET every 10 ms on one kept-alive
// connection and every 100 ms on a new one, and times each answer (a 503 refusal at
// max_connections is an answer, counted apart).
// Prints a table; exits 1 when a target is missed (or the attack could not run).

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct Config {
  int port = 0;
  int server_pid = 0;
  int per_kind = 250;
  double seconds = 40;
  std::size_t drip_bytes = 1024;
  int drip_ms = 50;
  double rss_limit_mib = 64;
  double latency_limit_ms = 100;
  std::string json;
};

// ---- the server's memory ---------------------------------------------------------

/// A "VmRSS:"-style line of /proc/<pid>/status in KiB, or -1.
long status_kib(int pid, std::string_view key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with(key)) return std::strtol(line.c_str() + key.size(), nullptr, 10);
  return -1;
}

/// utime + stime of every thread of `pid`, in clock ticks.
long cpu_ticks(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));  // after "pid (comm) "
  std::string field;
  long ticks = 0;
  for (int i = 3; fields >> field && i <= 15; ++i)
    if (i == 14 || i == 15) ticks += std::strtol(field.c_str(), nullptr, 10);
  return ticks;
}

double load_average() {
  std::ifstream in("/proc/loadavg");
  double one_minute = 0;
  in >> one_minute;
  return one_minute;
}

// ---- sockets ---------------------------------------------------------------------

sockaddr_in server_address(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

/// Sends all of `data` on a blocking socket; false when the peer is gone.
bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// ---- the normal client -----------------------------------------------------------

struct Latencies {
  std::vector<double> ms;
  std::vector<Clock::time_point> when;  // each request's start
  int failed = 0;  // no complete answer within the wait (counted at the wait)
  void add(Clock::time_point start) {
    ms.push_back(seconds_between(start, Clock::now()) * 1000);
    when.push_back(start);
  }
  int over(double limit_ms) const {
    return static_cast<int>(std::count_if(ms.begin(), ms.end(), [&](double v) { return v >= limit_ms; }));
  }
  /// When the slowest request started, in seconds after `origin`.
  double worst_at(Clock::time_point origin) const {
    if (ms.empty()) return 0;
    return seconds_between(origin, when[static_cast<std::size_t>(std::max_element(ms.begin(), ms.end()) - ms.begin())]);
  }
  double percentile(double p) const {
    if (ms.empty()) return 0;
    std::vector<double> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    const auto index = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
    return sorted[std::min(index, sorted.size() - 1)];
  }
  double max() const { return ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end()); }
};

class NormalClient {
 public:
  explicit NormalClient(const Config& config) : config_(config) {}

  void run(const std::atomic<bool>& stop) {
    auto next = Clock::now();
    for (int round = 0; !stop.load(); ++round) {
      kept_alive_request();
      if (round % 10 == 0) new_connection_request();
      next += 10ms;
      std::this_thread::sleep_until(next);
    }
    if (kept_fd_ >= 0) ::close(kept_fd_);
  }

  Latencies kept_alive, fresh;
  int reconnects = 0;  // the kept-alive connection was closed by the server
  int refused = 0;     // new connections answered 503 (the server at max_connections)

 private:
  static constexpr auto answer_wait = 2s;  // longer counts as failed, at this value

  int connect_blocking() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const sockaddr_in address = server_address(config_.port);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  /// Reads one response (headers, then Content-Length bytes) before `deadline`; returns
  /// its status, or 0 for none.
  static int read_response(int fd, Clock::time_point deadline) {
    std::string in;
    std::size_t header_end = std::string::npos, need = 0;
    char chunk[4096];
    for (;;) {
      if (header_end == std::string::npos) {
        header_end = in.find("\r\n\r\n");
        if (header_end != std::string::npos) {
          const auto at = in.find("Content-Length: ");
          const std::size_t length = at < header_end ? std::strtoul(in.c_str() + at + 16, nullptr, 10) : 0;
          need = header_end + 4 + length;
        }
      }
      if (header_end != std::string::npos && in.size() >= need)
        return in.starts_with("HTTP/1.1 ") ? std::atoi(in.c_str() + 9) : 0;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return 0;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return 0;
      in.append(chunk, static_cast<std::size_t>(n));
    }
  }

  void kept_alive_request() {
    const auto start = Clock::now();
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (kept_fd_ < 0) {
        kept_fd_ = connect_blocking();
        if (kept_fd_ < 0) break;
      }
      if (send_all(kept_fd_, "GET /normal HTTP/1.1\r\nHost: bench\r\n\r\n") &&
          read_response(kept_fd_, start + answer_wait) == 200) {
        kept_alive.add(start);
        return;
      }
      ::close(kept_fd_);  // closed under us (or too slow): one retry on a new connection
      kept_fd_ = -1;
      ++reconnects;
      if (Clock::now() - start >= answer_wait) break;
    }
    ++kept_alive.failed;
    kept_alive.add(start);
  }

  /// A new visitor: 200, or a 503 when the server is at max_connections (a refusal is
  /// an answer: counted apart, not failed); anything else fails.
  void new_connection_request() {
    const auto start = Clock::now();
    const int fd = connect_blocking();
    // The server may refuse (503) before reading the request: a failed send is fine then.
    if (fd >= 0) (void)send_all(fd, "GET /fresh HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    const int status = fd >= 0 ? read_response(fd, start + answer_wait) : 0;
    if (fd >= 0) ::close(fd);
    if (status == 503) ++refused;
    if (status != 200 && status != 503) ++fresh.failed;
    fresh.add(start);
  }

  const Config& config_;
  int kept_fd_ = -1;
};

// ---- the attackers ---------------------------------------------------------------

enum Kind { endless_header, endless_chunk_ext, endless_trailers, slow_body, kind_count };
constexpr std::array<const char*, kind_count> kind_names = {"endless header", "endless chunk ext", "endless trailers",
                                                            "slow body"};
constexpr std::array<const char*, kind_count> kind_keys = {"endless_header", "endless_chunk_extension",
                                                           "endless_trailers", "slow_body"};

std::string_view prefix_of(Kind kind) {
  switch (kind) {
    case endless_header: return "GET / HTTP/1.1\r\nHost: bench\r\nX-Endless: ";
    case endless_chunk_ext:
      return "POST / HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n1;a=";
    case endless_trailers:
      return "POST / HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n";
    case slow_body: return "POST / HTTP/1.1\r\nHost: bench\r\nContent-Length: 1000000\r\n\r\n";
    default: return {};
  }
}

/// What became of hostile connections: "431", "408", "closed" (no response), "reset".
struct Outcome {
  int count = 0;
  std::vector<double> seconds;  // from the connection to the response (or the close)
  std::vector<double> closed;   // from the connection to the server's close
};

struct KindStats {
  int opened = 0;
  int connect_failures = 0;
  long long bytes_sent = 0;
  std::map<std::string, Outcome> outcomes;
  std::vector<double> open_at_end;  // ages of connections the server still held at the end
};

struct Hostile {
  Kind kind;
  int fd = -1;
  std::uint32_t index = 0;       // in Attack::hostiles_
  std::uint32_t generation = 0;  // tells this connection's events from its predecessor's
  bool connected = false;
  bool server_sent_fin = false;  // the server shut its side; we go on sending, as attackers do
  Clock::time_point opened, next_send, answered;
  std::string answer;  // the first bytes of the server's response
};

class Attack {
 public:
  explicit Attack(const Config& config)
      : config_(config), epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)), address_(server_address(config.port)) {
    for (int k = 0; k < kind_count; ++k) drip_[k] = drip_for(static_cast<Kind>(k));
  }
  ~Attack() {
    for (auto& h : hostiles_)
      if (h->fd >= 0) ::close(h->fd);
    ::close(epoll_fd_);
  }

  /// Opens every connection and keeps the attack up until `end` (or until the server's
  /// RSS passes `rss_abort_kib`). Returns false if it had to stop early.
  bool run(Clock::time_point end, long rss_abort_kib) {
    for (int k = 0; k < kind_count; ++k)
      for (int i = 0; i < config_.per_kind; ++i) {
        hostiles_.push_back(std::make_unique<Hostile>());
        hostiles_.back()->kind = static_cast<Kind>(k);
        hostiles_.back()->index = static_cast<std::uint32_t>(hostiles_.size() - 1);
        open(*hostiles_.back());
      }
    std::vector<epoll_event> events(1024);
    auto next_sample = Clock::now();
    while (Clock::now() < end) {
      const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 5);
      for (int i = 0; i < n; ++i) {
        const epoll_event& event = events[static_cast<std::size_t>(i)];
        Hostile& h = *hostiles_[event.data.u64 >> 32];
        if (static_cast<std::uint32_t>(event.data.u64) == h.generation) handle(h, event.events);
      }
      const auto now = Clock::now();
      for (auto& h : hostiles_) {
        if (h->fd < 0 && now >= h->next_send) open(*h);  // reconnect after a failed connect
        if (h->fd >= 0 && h->connected && now >= h->next_send) drip(*h, now);
      }
      if (now >= next_sample) {
        next_sample = now + 20ms;
        const long rss = status_kib(config_.server_pid, "VmRSS:");
        peak_sampled_kib = std::max(peak_sampled_kib, rss);
        if (rss < 0) {
          stopped_because = "the server exited";
          return false;
        }
        if (rss > rss_abort_kib) {
          stopped_because = "the server's RSS passed " + std::to_string(rss_abort_kib / 1024) + " MiB";
          aborted_after_s = seconds_between(started_, now);
          return false;
        }
      }
    }
    const auto now = Clock::now();
    for (auto& h : hostiles_) {
      if (h->fd < 0) continue;
      if (h->answer.empty())
        stats[h->kind].open_at_end.push_back(seconds_between(h->opened, now));
      else
        record(*h, "", false);  // answered, and the server still holds it
    }
    return true;
  }

  std::array<KindStats, kind_count> stats;
  long peak_sampled_kib = 0;
  std::string stopped_because;
  double aborted_after_s = 0;

 private:
  std::string drip_for(Kind kind) const {
    switch (kind) {
      case endless_header:
      case endless_chunk_ext: return std::string(config_.drip_bytes, 'a');
      case endless_trailers: {
        std::string lines;
        for (int i = 0; lines.size() < config_.drip_bytes; ++i) lines += "X-Trailer-" + std::to_string(i) + ": vvvvvvvvvvvvvvvv\r\n";
        return lines;
      }
      case slow_body: return "b";
      default: return {};
    }
  }

  void open(Hostile& h) {
    const auto now = Clock::now();
    h.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    h.connected = false;
    h.server_sent_fin = false;
    h.answer.clear();
    h.opened = now;
    if (h.fd >= 0 && ::connect(h.fd, reinterpret_cast<const sockaddr*>(&address_), sizeof address_) != 0 &&
        errno != EINPROGRESS) {
      ::close(h.fd);
      h.fd = -1;
    }
    if (h.fd < 0) {
      ++stats[h.kind].connect_failures;
      h.next_send = now + 10ms;  // try again soon
      return;
    }
    ++stats[h.kind].opened;
    ++h.generation;
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    event.data.u64 = key_of(h);
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, h.fd, &event);
  }

  static std::uint64_t key_of(const Hostile& h) { return std::uint64_t{h.index} << 32 | h.generation; }

  void handle(Hostile& h, std::uint32_t events) {
    if (h.fd < 0) return;
    if (!h.connected && (events & EPOLLOUT)) {
      int error = 0;
      socklen_t size = sizeof error;
      ::getsockopt(h.fd, SOL_SOCKET, SO_ERROR, &error, &size);
      if (error != 0) {
        finish(h, "connect failed");
        return;
      }
      h.connected = true;
      epoll_event event{};
      event.events = EPOLLIN | EPOLLRDHUP;
      event.data.u64 = key_of(h);
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, h.fd, &event);
      send_some(h, prefix_of(h.kind));
      h.next_send = Clock::now();
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_answer(h);
  }

  void read_answer(Hostile& h) {
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::recv(h.fd, buffer, sizeof buffer, 0);
      if (n > 0) {
        if (h.answer.empty()) h.answered = Clock::now();
        if (h.answer.size() < 64) h.answer.append(buffer, std::min<std::size_t>(static_cast<std::size_t>(n), 64));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n == 0 && !h.server_sent_fin) {
        // Half closed: keep sending until the server closes for good (a reset, or
        // EPIPE on a send); stop watching for input, which would now always be ready.
        h.server_sent_fin = true;
        epoll_event event{};
        event.data.u64 = key_of(h);
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, h.fd, &event);
        return;
      }
      finish(h, n == 0 ? "closed" : "reset");
      return;
    }
  }

  void drip(Hostile& h, Clock::time_point now) {
    send_some(h, drip_[h.kind]);
    h.next_send = now + (h.kind == slow_body ? std::chrono::milliseconds(1000)
                                             : std::chrono::milliseconds(config_.drip_ms));
  }

  void send_some(Hostile& h, std::string_view data) {
    const ssize_t n = ::send(h.fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) stats[h.kind].bytes_sent += n;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) finish(h, "closed");  // the server left
  }

  /// Records what the server did with `h`: its status ("431") or, without a response,
  /// `how` it ended.
  void record(const Hostile& h, const std::string& how, bool closed = true) {
    const auto now = Clock::now();
    std::string key = how;
    double at = seconds_between(h.opened, now);
    if (h.answer.starts_with("HTTP/1.1 ") && h.answer.size() >= 12) {
      key = h.answer.substr(9, 3);
      at = seconds_between(h.opened, h.answered);
    }
    auto& outcome = stats[h.kind].outcomes[key];
    ++outcome.count;
    outcome.seconds.push_back(at);
    if (closed) outcome.closed.push_back(seconds_between(h.opened, now));
  }

  /// Records what the server did with `h` and opens its replacement.
  void finish(Hostile& h, const std::string& how) {
    record(h, how);
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, h.fd, nullptr);
    ::close(h.fd);
    h.fd = -1;
    open(h);
  }

  const Config& config_;
  int epoll_fd_;
  sockaddr_in address_;
  std::array<std::string, kind_count> drip_;
  std::vector<std::unique_ptr<Hostile>> hostiles_;
  Clock::time_point started_ = Clock::now();
};

// ---- the report ------------------------------------------------------------------

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}
double maximum(const std::vector<double>& values) {
  return values.empty() ? 0 : *std::max_element(values.begin(), values.end());
}

/// Which server limit a status stands for, for the table.
std::string limit_of(Kind kind, const std::string& key) {
  if (key == "431") return kind == endless_trailers ? "max_header_bytes (trailers)" : "max_header_bytes";
  if (key == "413") return "max_body_bytes";
  if (key == "408") return kind == endless_header ? "header_timeout" : "body_timeout";
  if (key == "400") return kind == endless_chunk_ext ? "max_chunk_line_bytes (4 KiB)" : "bad framing";
  if (key == "503") return "max_connections";
  if (key == "closed") return "closed without a response";
  return "";
}

std::string json_latencies(const Latencies& l, double limit_ms) {
  std::ostringstream out;
  out << "{\"requests\": " << l.ms.size() << ", \"failed\": " << l.failed << ", \"p50_ms\": " << l.percentile(50)
      << ", \"p99_ms\": " << l.percentile(99) << ", \"max_ms\": " << l.max()
      << ", \"over_limit\": " << l.over(limit_ms) << "}";
  return out.str();
}

bool parse_args(int argc, char** argv, Config& config) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) return false;
    const char* value = argv[++i];
    if (arg == "--port") config.port = std::atoi(value);
    else if (arg == "--server-pid") config.server_pid = std::atoi(value);
    else if (arg == "--per-kind") config.per_kind = std::atoi(value);
    else if (arg == "--seconds") config.seconds = std::atof(value);
    else if (arg == "--drip-bytes") config.drip_bytes = std::strtoul(value, nullptr, 10);
    else if (arg == "--drip-ms") config.drip_ms = std::atoi(value);
    else if (arg == "--rss-limit-mib") config.rss_limit_mib = std::atof(value);
    else if (arg == "--latency-limit-ms") config.latency_limit_ms = std::atof(value);
    else if (arg == "--json") config.json = value;
    else return false;
  }
  return config.port > 0 && config.server_pid > 0 && config.per_kind >= 0 && config.drip_bytes > 0 &&
         config.drip_ms > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  if (!parse_args(argc, argv, config)) {
    std::fprintf(stderr, "usage: %s --port P --server-pid PID [--per-kind N] [--seconds S] [--drip-bytes B]\n"
                         "       [--drip-ms T] [--rss-limit-mib M] [--latency-limit-ms L] [--json FILE]\n", argv[0]);
    return 2;
  }

  NormalClient normal(config);
  std::atomic<bool> stop{false};
  std::thread normal_thread([&] { normal.run(stop); });
  // The attacking thread yields to the timing one (both share CPU 1): what is timed is
  // the server's answer, not the attacker's scheduling. (This thread only: a Linux nice
  // value is per thread.)
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
  std::this_thread::sleep_for(500ms);  // the server warm, a few normal requests done
  const long rss_before_kib = status_kib(config.server_pid, "VmRSS:");
  const double load_before = load_average();
  const long server_ticks_before = cpu_ticks(config.server_pid);

  // Far past the target, the attack stops rather than take the machine's memory.
  const long rss_abort_kib = static_cast<long>(std::max(1024.0, 16 * config.rss_limit_mib) * 1024);
  Attack attack(config);
  const auto start = Clock::now();
  const bool completed =
      attack.run(start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.seconds)),
                 rss_abort_kib);
  const double attacked_s = seconds_between(start, Clock::now());
  const long peak_kib = status_kib(config.server_pid, "VmHWM:");
  const double server_cpu = static_cast<double>(cpu_ticks(config.server_pid) - server_ticks_before) /
                            static_cast<double>(::sysconf(_SC_CLK_TCK)) / attacked_s;
  const double load_after = load_average();
  stop = true;
  normal_thread.join();

  const double peak_mib = static_cast<double>(std::max(peak_kib, attack.peak_sampled_kib)) / 1024;
  const double worst_ms = std::max(normal.kept_alive.max(), normal.fresh.max());
  const int failed = normal.kept_alive.failed + normal.fresh.failed;
  const bool rss_ok = completed && peak_mib < config.rss_limit_mib;
  const bool latency_ok = failed == 0 && worst_ms < config.latency_limit_ms;

  std::printf("\n%d hostile connections (%d of each kind) for %.1f s; drip %zu bytes every %d ms\n",
              config.per_kind * kind_count, config.per_kind, attacked_s, config.drip_bytes, config.drip_ms);
  if (!completed) std::printf("ATTACK STOPPED after %.1f s: %s\n", attack.aborted_after_s, attack.stopped_because.c_str());
  std::printf("%-18s %7s  %-40s %-22s %s\n", "kind", "opened", "what the server did (count: limit)",
              "when (median / max)", "closed by (max)");
  for (int k = 0; k < kind_count; ++k) {
    const KindStats& s = attack.stats[static_cast<std::size_t>(k)];
    bool first = true;
    auto row = [&](const std::string& what, const std::vector<double>& at, const std::vector<double>& closed) {
      char when[64], closed_by[32] = "-";
      std::snprintf(when, sizeof when, "%.2f s / %.2f s", median(at), maximum(at));
      if (!closed.empty()) std::snprintf(closed_by, sizeof closed_by, "%.2f s", maximum(closed));
      std::printf("%-18s %7s  %-40s %-22s %s\n", first ? kind_names[static_cast<std::size_t>(k)] : "",
                  first ? std::to_string(s.opened).c_str() : "", what.c_str(), when, closed_by);
      first = false;
    };
    for (const auto& [key, outcome] : s.outcomes) {
      const std::string limit = limit_of(static_cast<Kind>(k), key);
      row(key + " x" + std::to_string(outcome.count) + (limit.empty() ? "" : ": " + limit), outcome.seconds,
          outcome.closed);
    }
    if (!s.open_at_end.empty())
      row("no answer yet at the end x" + std::to_string(s.open_at_end.size()), s.open_at_end, {});
    if (first) row("nothing", {}, {});
  }
  std::printf("server RSS: %.1f MiB before, peak (VmHWM) %.1f MiB; target < %.0f MiB: %s\n",
              static_cast<double>(rss_before_kib) / 1024, peak_mib, config.rss_limit_mib, rss_ok ? "met" : "MISSED");
  for (const auto& [name, l] : {std::pair<const char*, const Latencies&>{"kept alive", normal.kept_alive},
                                 {"new connection", normal.fresh}})
    std::printf("normal requests, %s: %zu, p50 %.1f ms, p99 %.1f ms, max %.1f ms (at %.1f s), %d over %.0f ms, "
                "failed %d\n",
                name, l.ms.size(), l.percentile(50), l.percentile(99), l.max(), l.worst_at(start),
                l.over(config.latency_limit_ms), config.latency_limit_ms, l.failed);
  std::printf("new connections refused with 503 (server at max_connections): %d\n", normal.refused);
  std::printf("server CPU %.0f %% of a core; machine load average %.1f before, %.1f after (other work on the\n"
              "CPUs delays the server and the client too)\n",
              100 * server_cpu, load_before, load_after);
  std::printf("every normal request answered within %.0f ms: %s\n", config.latency_limit_ms,
              latency_ok ? "met" : "MISSED");

  if (!config.json.empty()) {
    std::ofstream out(config.json);
    out << "{\n  \"hostile_per_kind\": " << config.per_kind << ",\n  \"seconds\": " << attacked_s
        << ",\n  \"drip_bytes\": " << config.drip_bytes << ",\n  \"drip_ms\": " << config.drip_ms
        << ",\n  \"completed\": " << (completed ? "true" : "false") << ",\n  \"stopped_because\": \""
        << attack.stopped_because << "\",\n  \"kinds\": {";
    for (int k = 0; k < kind_count; ++k) {
      const KindStats& s = attack.stats[static_cast<std::size_t>(k)];
      out << (k ? "," : "") << "\n    \"" << kind_keys[static_cast<std::size_t>(k)] << "\": {\"opened\": " << s.opened
          << ", \"connect_failures\": " << s.connect_failures << ", \"bytes_sent\": " << s.bytes_sent
          << ", \"open_at_end\": " << s.open_at_end.size() << ", \"outcomes\": {";
      bool first = true;
      for (const auto& [key, outcome] : s.outcomes) {
        out << (first ? "" : ", ") << "\"" << key << "\": {\"count\": " << outcome.count
            << ", \"median_s\": " << median(outcome.seconds) << ", \"max_s\": " << maximum(outcome.seconds)
            << ", \"closed\": " << outcome.closed.size() << ", \"closed_by_max_s\": " << maximum(outcome.closed) << "}";
        first = false;
      }
      out << "}}";
    }
    out << "\n  },\n  \"server_rss_before_mib\": " << static_cast<double>(rss_before_kib) / 1024
        << ",\n  \"server_peak_rss_mib\": " << peak_mib << ",\n  \"rss_limit_mib\": " << config.rss_limit_mib
        << ",\n  \"normal_kept_alive\": " << json_latencies(normal.kept_alive, config.latency_limit_ms)
        << ",\n  \"normal_new_connection\": " << json_latencies(normal.fresh, config.latency_limit_ms)
        << ",\n  \"normal_new_connection_refused_503\": " << normal.refused
        << ",\n  \"latency_limit_ms\": " << config.latency_limit_ms << ",\n  \"server_cpu_share\": " << server_cpu
        << ",\n  \"load_average_before\": " << load_before << ",\n  \"load_average_after\": " << load_after
        << ",\n  \"rss_target_met\": "
        << (rss_ok ? "true" : "false") << ",\n  \"latency_target_met\": " << (latency_ok ? "true" : "false") << "\n}\n";
  }
  return rss_ok && latency_ok ? 0 : 1;
}
