#include "support/loop_test.hpp"

namespace fiberloop::testing {

void LoopTest::run_in_fiber(std::function<void()> body, std::chrono::milliseconds timeout) {
  loop_.run_sync(std::move(body), timeout);
}

void LoopTest::TearDown() { EXPECT_EQ(loop_.live_fibers(), 0u) << "a test left fibers suspended on its loop"; }

double elapsed_ms(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

std::string what_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "non-std exception";
  }
}

}  // namespace fiberloop::testing
