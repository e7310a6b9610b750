#pragma once
// A LoopTest whose suite shares one private MariaDB server (tests/support/mariadb_server.hpp):
// started before the suite's first test, stopped after its last. A server that cannot
// start fails every test of the suite with the reason; nothing is skipped.

#include <chrono>
#include <string>

#include "support/loop_test.hpp"
#include "support/mariadb_server.hpp"

namespace fiberloop::testing {

class MariadbTest : public LoopTest {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;
  /// Lets the fibers a test leaves behind on purpose (a timed-out statement's KILL
  /// QUERY) end, then LoopTest's check that none is left.
  void TearDown() override;

  /// The admin session's answer, from a fiber: on the blocking pool, the loop running on.
  static MariadbServer::Rows admin(const std::string& sql);
  /// Waits in a fiber (1 ms steps, 10 s at most) until `done()`; false if it never was.
  template <class F>
  static bool eventually(F done) {
    for (int i = 0; i < 10000; ++i) {
      if (done()) return true;
      sleep_for(std::chrono::milliseconds(1));
    }
    return done();
  }

  static inline MariadbServer* server_ = nullptr;
  static inline std::string startup_error_;
};

}  // namespace fiberloop::testing
