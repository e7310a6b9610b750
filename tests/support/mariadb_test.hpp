#pragma once
// A LoopTest whose suite shares one private MariaDB server (tests/support/mariadb_server.hpp):
// started before the suite's first test, stopped after its last. A server that cannot
// start fails every test of the suite with the reason; nothing is skipped.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "support/loop_test.hpp"
#include "support/mariadb_server.hpp"

namespace fiberloop::testing {

class MariadbTest : public LoopTest {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;
  /// Lets the fibers a test leaves behind on purpose (a timed-out statement's KILL
  /// QUERY runs on a fiber of its own) end, then LoopTest's check that none is left.
  void TearDown() override;

  /// The admin session's answer, from a fiber: on the blocking pool, the loop running on.
  static MariadbServer::Rows admin(const std::string& sql);
  /// The server's threads running a statement that contains `fragment`, asked on the
  /// blocking pool.
  static std::vector<std::int64_t> running(const std::string& fragment);
  /// Waits in a fiber (1 ms steps, 10 s at most) until `done()`; false if it never was.
  template <class F>
  static bool eventually(F done) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done()) {
      if (std::chrono::steady_clock::now() > give_up) return false;
      sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  static inline MariadbServer* server_ = nullptr;
  static inline std::string startup_error_;
};

}  // namespace fiberloop::testing
