#include "support/mariadb_test.hpp"

#include <cstdio>
#include <exception>

namespace fiberloop::testing {

void MariadbTest::SetUpTestSuite() {
  try {
    server_ = new MariadbServer();
    std::printf("[ MariaDB  ] private server on port %u started in %lld ms\n", server_->port(),
                static_cast<long long>(server_->startup_time().count()));
  } catch (const std::exception& e) {
    startup_error_ = e.what();
  }
}

void MariadbTest::TearDownTestSuite() {
  delete server_;
  server_ = nullptr;
}

void MariadbTest::SetUp() {
  // Fails, never skips: a missing server is a broken test environment.
  ASSERT_NE(server_, nullptr) << "the private MariaDB server did not start: " << startup_error_;
}

void MariadbTest::TearDown() {
  for (int i = 0; i < 1000 && loop_.live_fibers() > 0; ++i) loop_.run_sync([] { sleep_for(std::chrono::milliseconds(10)); });
  LoopTest::TearDown();
}

MariadbServer::Rows MariadbTest::admin(const std::string& sql) {
  return run_blocking([sql] { return server_->admin(sql); });
}

std::vector<std::int64_t> MariadbTest::running(const std::string& fragment) {
  return run_blocking([fragment] { return server_->running_statements(fragment); });
}

}  // namespace fiberloop::testing
