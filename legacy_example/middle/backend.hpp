#pragma once
/// @file
/// The bottom as the middle sees it: one function, do_stuff(), declared here and
/// defined by whichever bottom the program links (bottom/blocking_backend.cpp or
/// bottom/fiberloop_backend.cpp; a memcached or SQL bottom would be a third file).
/// The middle calls it as ordinary blocking code.

#include <stdexcept>
#include <string>

namespace legacy {

/// The backend service's answer.
struct BackendReply {
  int status = 0;
  std::string body;
};

/// The backend could not be reached, timed out or broke the protocol. The middle
/// turns it into a 502.
class BackendError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// GETs `target` (e.g. "/inventory?sku=1,2") from the backend service and returns its
/// answer; non-2xx statuses are answers, not errors. Throws BackendError. Every wait
/// inside has a timeout. Thread: whatever the linked bottom documents.
BackendReply do_stuff(const std::string& target);

}  // namespace legacy
