// handle_request: the service's entry; maps what the middle throws to statuses.
#include <boost/json.hpp>

#include "order.hpp"

namespace legacy {
namespace {

Reply error_reply(int status, std::string_view message) {
  Reply reply;
  reply.status = status;
  reply.body = boost::json::serialize(boost::json::object{{"error", message}});
  reply.body.push_back('\n');
  return reply;
}

}  // namespace

Reply handle_request(const Request& request) {
  try {
    try {
      return detail::parse_target(request);
    } catch (const detail::Refused& e) {
      return error_reply(e.status(), e.what());
    } catch (const BackendError& e) {
      return error_reply(502, std::string("inventory service unavailable: ") + e.what());
    } catch (const std::exception&) {
      // A bug: say nothing about it to the client.
      return error_reply(500, "internal error");
    }
  } catch (const std::exception&) {
    // error_reply itself failed (out of memory): a bare 500. (No catch-all: a fiber's
    // stack may unwind through here with a non-std exception, which must pass.)
    Reply reply;
    reply.status = 500;
    reply.content_type = "text/plain";
    return reply;
  }
}

}  // namespace legacy
