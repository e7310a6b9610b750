#pragma once
// The caller's file and line, for IOLoop::dump(). std::source_location's job, done with
// the builtins GCC and Clang share: Clang 14 with libstdc++ 12 has no
// std::source_location (it lacks __builtin_source_location). Internal.

namespace fiberloop::detail {

class CallSite {
 public:
  /// As a defaulted argument, the line that called the function taking it.
  static constexpr CallSite current(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) noexcept {
    return CallSite(file, line);
  }
  constexpr const char* file_name() const noexcept { return file_; }
  constexpr unsigned line() const noexcept { return line_; }

 private:
  constexpr CallSite(const char* file, unsigned line) noexcept : file_(file), line_(line) {}
  const char* file_;
  unsigned line_;
};

}  // namespace fiberloop::detail
