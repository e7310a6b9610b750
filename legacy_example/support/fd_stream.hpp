#pragma once
/// @file
/// A blocking socket as a Boost.Beast SyncReadStream/SyncWriteStream, for the
/// threaded tops and the blocking bottom. Unlike asio's socket, it honours
/// SO_RCVTIMEO/SO_SNDTIMEO: a wait past the socket's timeout fails with
/// boost::asio::error::timed_out instead of blocking for ever.

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

namespace legacy {

/// Sets the socket's receive and send timeouts (each blocking call's limit).
inline void set_socket_timeouts(int fd, std::chrono::milliseconds receive, std::chrono::milliseconds send) {
  const auto as_timeval = [](std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    return tv;
  };
  const timeval r = as_timeval(receive);
  const timeval s = as_timeval(send);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof r);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof s);
}

/// Does not own the descriptor.
class FdStream {
 public:
  explicit FdStream(int fd) noexcept : fd_(fd) {}

  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, boost::system::error_code& ec) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
         ++it) {
      const boost::asio::mutable_buffer b = *it;
      if (b.size() == 0) continue;
      ssize_t n;
      do n = ::recv(fd_, b.data(), b.size(), 0);
      while (n < 0 && errno == EINTR);
      return finish(n, ec);
    }
    ec = {};
    return 0;
  }

  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, boost::system::error_code& ec) {
    // Header and body in one syscall (and one segment with TCP_NODELAY).
    std::array<iovec, 16> iov{};
    std::size_t count = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && count < iov.size(); ++it) {
      const boost::asio::const_buffer b = *it;
      if (b.size() == 0) continue;
      iov[count].iov_base = const_cast<void*>(b.data());
      iov[count].iov_len = b.size();
      ++count;
    }
    if (count == 0) {
      ec = {};
      return 0;
    }
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = count;
    ssize_t n;
    do n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return finish(n, ec);
  }

  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    boost::system::error_code ec;
    const std::size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers) {
    boost::system::error_code ec;
    const std::size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  static std::size_t finish(ssize_t n, boost::system::error_code& ec) {
    if (n > 0) {
      ec = {};
      return static_cast<std::size_t>(n);
    }
    if (n == 0) {
      ec = boost::asio::error::eof;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      ec = boost::asio::error::timed_out;  // SO_RCVTIMEO / SO_SNDTIMEO passed
    } else {
      ec = boost::system::error_code(errno, boost::system::system_category());
    }
    return 0;
  }

  int fd_;
};

}  // namespace legacy
