#pragma once
/// @file
/// TcpStream: a TCP connection whose calls look blocking inside a fiber and suspend
/// only that fiber (the loop serves other fibers, timers and I/O meanwhile).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <fiberloop/errors.hpp>
#include <fiberloop/io_loop.hpp>

namespace fiberloop {

/// The peer closed (or the stream was closed under us). partial() holds the bytes read by
/// the failed call before the close (e.g. read_exactly(100) got 40 then EOF -> 40 bytes).
class StreamClosed : public Error {
 public:
  explicit StreamClosed(const std::string& what, std::string partial = {});
  const std::string& partial() const noexcept;

 private:
  std::shared_ptr<const std::string> partial_;  // shared: exceptions must copy without throwing
};

class TcpStream {
 public:
  using Duration = std::chrono::nanoseconds;
  static constexpr Duration default_timeout = std::chrono::seconds(30);

  // Thread: the stream's loop (a stream used off any loop: its one thread). From
  // another thread only close() and the destructor, which hand the closing to the
  // loop once a fiber of the loop has used the stream (the socket then closes in the
  // loop's next iteration). A stream may outlive its loop: closing it then only
  // closes the socket.
  TcpStream() noexcept;  // not open
  /// Adopts a connected socket (made non-blocking here); registers with `loop` lazily.
  explicit TcpStream(int fd, IOLoop& loop = IOLoop::current());
  TcpStream(TcpStream&&) noexcept;
  TcpStream& operator=(TcpStream&&) noexcept;
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;
  ~TcpStream();  // close()

  /// Non-blocking connect; name resolution on the loop's blocking pool (getaddrinfo);
  /// tries every address. TimeoutError on timeout; std::system_error(errno) on refusal
  /// and when the process is out of descriptors (EMFILE, while resolving too);
  /// Error with gai_strerror text on resolution failure. Must run in a fiber (else BlockingCallError).
  static TcpStream connect(const std::string& host, std::uint16_t port,
                           Duration timeout = std::chrono::seconds(10));

  // Every call below runs in a fiber of the stream's loop and suspends only that fiber.
  // Called on the loop thread outside a fiber -> BlockingCallError. Each call has a deadline:
  // the per-call `timeout` if given, else the stream's default (set_timeout) -> TimeoutError.
  /// >= 1 byte, serves the internal buffer first; EOF -> StreamClosed.
  std::size_t read_some(std::span<char> buffer);
  std::size_t read_some(std::span<char> buffer, Duration timeout);
  /// EOF before n -> StreamClosed(partial = what was read).
  std::string read_exactly(std::size_t n);
  std::string read_exactly(std::size_t n, Duration timeout);
  /// Returns data up to and including the delimiter. More than max_bytes without it -> Error
  /// ("delimiter not found within max_bytes"), the bytes stay buffered. EOF -> StreamClosed(partial).
  std::string read_until(std::string_view delimiter, std::size_t max_bytes);
  std::string read_until(std::string_view delimiter, std::size_t max_bytes, Duration timeout);
  /// Peer gone (EPIPE/ECONNRESET) -> StreamClosed.
  void write_all(std::string_view data);
  void write_all(std::string_view data, Duration timeout);
  /// Closes now (from another thread: see above). A fiber of this loop suspended in a
  /// read/write on this stream wakes with StreamClosed.
  void close() noexcept;

  bool is_open() const noexcept;
  int fd() const noexcept;
  void set_timeout(Duration timeout) noexcept;
  Duration timeout() const noexcept;
  void set_nodelay(bool on);  // on by default for connect() and for accepted streams
  void set_keepalive(bool on);
  std::size_t buffered() const noexcept;  // bytes read from the socket, not yet returned
  std::string peer_address() const;       // "127.0.0.1:5678" / "[::1]:5678"
  std::string local_address() const;

 private:
  struct Impl;  // adapters/src/net/tcp_stream.cpp
  std::shared_ptr<Impl> impl_;  // shared with the loop while it closes the stream for another thread
};

}  // namespace fiberloop
