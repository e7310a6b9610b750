#pragma once
// What a fiber waits on, in words, for IOLoop::dump(): adapters label their waits
// ("memcached get 127.0.0.1:11211", "TcpStream::read_until fd 17"). Internal.

#include <string_view>

namespace fiberloop::detail {

/// Labels the fiberloop waits of the running fiber until destroyed; nested labels
/// show innermost first ("TcpStream::read() fd 9, in SQL query SELECT ..."). Costs two pointer stores; nothing outside fibers. The strings must outlive
/// the label (a literal, a member of the client).
class [[nodiscard]] WaitLabel {
 public:
  explicit WaitLabel(const char* what, std::string_view detail = {}) noexcept;
  /// "what fd N"
  WaitLabel(const char* what, int fd) noexcept;
  ~WaitLabel();
  WaitLabel(const WaitLabel&) = delete;
  WaitLabel& operator=(const WaitLabel&) = delete;

  const char* what;
  std::string_view detail;
  int fd = -1;
  const WaitLabel* outer = nullptr;  // the label this one is nested in, shown after it

 private:
  void* fiber_ = nullptr;  // the labelled fiber's record; null outside fibers
};

}  // namespace fiberloop::detail
