// The fiberloop bottom: do_stuff() looks as blocking as before, but waits with
// wait_for_future() on an HttpClient fetch, so only the calling fiber is suspended
// and the loop serves the other requests meanwhile. One HttpClient (a pool of
// kept-alive connections) for the loop; at most max_connections fetches in flight.
#include <memory>

#include <boost/fiber/condition_variable.hpp>
#include <boost/fiber/mutex.hpp>
#include <fiberloop/fiberloop.hpp>

#include "../middle/backend.hpp"
#include "backend_client.hpp"

namespace legacy {
namespace {

struct State {
  explicit State(const BackendConfig& c)
      : config(c), base_url("http://" + c.host + ":" + std::to_string(c.port)), client(client_options(c)) {}

  static fiberloop::HttpClientOptions client_options(const BackendConfig& c) {
    fiberloop::HttpClientOptions options;
    options.max_idle_per_host = c.max_connections;  // every connection in use may go back to the pool
    return options;
  }

  BackendConfig config;
  std::string base_url;
  fiberloop::HttpClient client;
  // A turn to fetch: caps the sockets (the process's descriptors are shared with
  // the clients' connections). Boost.Fiber's primitives wait between fibers of one loop.
  boost::fibers::mutex mutex;
  boost::fibers::condition_variable turn;
  std::size_t in_flight = 0;
};
std::unique_ptr<State> g_state;  // the loop thread's

class Turn {
 public:
  Turn(State& s, std::chrono::steady_clock::time_point deadline) : s_(s) {
    std::unique_lock lock(s_.mutex);
    if (!s_.turn.wait_until(lock, deadline, [&] { return s_.in_flight < s_.config.max_connections; }))
      throw BackendError("no backend connection free within " + std::to_string(s_.config.timeout.count()) + " ms");
    ++s_.in_flight;
  }
  ~Turn() {
    std::unique_lock lock(s_.mutex);
    --s_.in_flight;
    s_.turn.notify_one();
  }
  Turn(const Turn&) = delete;
  Turn& operator=(const Turn&) = delete;

 private:
  State& s_;
};

}  // namespace

void backend_start(const BackendConfig& config) { g_state = std::make_unique<State>(config); }

void backend_stop() noexcept { g_state.reset(); }

BackendReply do_stuff(const std::string& target) {
  State& s = *g_state;
  const auto deadline = std::chrono::steady_clock::now() + s.config.timeout;
  Turn turn(s, deadline);
  fiberloop::FetchOptions options;
  options.connect_timeout = s.config.timeout;
  options.request_timeout = deadline - std::chrono::steady_clock::now();
  try {
    // The fetch's request_timeout fires first; this limit only guards against a
    // fetch that would never complete.
    fiberloop::HttpResponse response = fiberloop::wait_for_future(s.client.fetch(s.base_url + target, options),
                                                                  s.config.timeout + std::chrono::seconds(1));
    return {response.status, std::move(response.body)};
  } catch (const fiberloop::Error& e) {  // TimeoutError, StreamClosed, a malformed reply
    throw BackendError("backend " + s.base_url + ": " + e.what());
  } catch (const std::system_error& e) {  // refused, reset
    throw BackendError("backend " + s.base_url + ": " + e.what());
  }
}

}  // namespace legacy
