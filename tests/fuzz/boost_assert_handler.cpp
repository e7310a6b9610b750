// The fuzzing build keeps Boost's assertions on and sends them here
// (BOOST_ENABLE_ASSERT_HANDLER, set by the top-level CMakeLists.txt): a failed one aborts,
// so libFuzzer saves the input — except one known false assertion in Beast.

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace boost {

void assertion_failed(char const* expr, char const* function, char const* file, long line) {
  // Beast before Boost 1.86 asserts "n >= 5" when a chunked body's last chunk "0\r\n"
  // arrived and then a single byte more (n = 4): valid input, and the code after the
  // assertion handles it (boostorg/beast#2861 corrected the assertion to n >= 3).
  if (std::string_view(expr) == "n >= 5" && std::string_view(file).ends_with("beast/http/impl/basic_parser.ipp"))
    return;
  std::fprintf(stderr, "%s:%ld: %s: Boost assertion `%s' failed\n", file, line, function, expr);
  std::abort();
}

void assertion_failed_msg(char const* expr, char const* msg, char const* function, char const* file, long line) {
  std::fprintf(stderr, "%s:%ld: %s: Boost assertion `%s' failed: %s\n", file, line, function, expr, msg);
  std::abort();
}

}  // namespace boost
