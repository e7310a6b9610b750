// MemcacheClient: each server has a few connections; each connection is a session of
// two fibers, a writer that sends whatever requests are queued in one write, and a
// reader that matches replies to requests in order (memcached answers in order), so
// many requests are in flight on one connection. Every request has its own timer;
// consecutive failures mark a server dead, and after retry_timeout one request probes
// it. All state lives on the loop's thread; other threads hand their calls over.

#include <boost/context/detail/exception.hpp>

#include <ctime>
#include <deque>
#include <functional>
#include <stdexcept>
#include <system_error>
#include <unordered_set>

#include <fiberloop/detail/loop_hooks.hpp>
#include <fiberloop/detail/wait_label.hpp>
#include <fiberloop/memcache.hpp>
#include <fiberloop/net/tcp_stream.hpp>
#include <fiberloop/stack_context.hpp>
#include <fiberloop/wait.hpp>

#include "memcache/ketama.hpp"
#include "memcache/memcache_protocol.hpp"

namespace fiberloop {

MemcacheError::MemcacheError(const std::string& server, const std::string& what)
    : Error(what), server_(std::make_shared<const std::string>(server)) {}

const std::string& MemcacheError::server() const noexcept { return *server_; }

namespace {

using namespace detail;
using Clock = IOLoop::clock;
using forced_unwind = boost::context::detail::forced_unwind;

/// One request waiting for its reply. `complete` runs once: with the reply, or with
/// the error (timeout, broken connection, dead server) that ended the wait.
struct Pending {
  MemcacheReplyKind kind;
  std::function<void(MemcacheReply*, std::exception_ptr)> complete;
  LoopTimeout timer{};  // no timer at all for a request_timeout that never comes
  bool settled = false;
};

/// One connection's life: connected, then written and read until it breaks or is
/// closed. A broken session is replaced by a new one on the next request.
struct Session {
  TcpStream stream;
  std::string outbox;                           // requests not yet written, in order
  std::deque<std::shared_ptr<Pending>> pending;  // written or queued, not yet answered
  std::optional<Promise<void>> writer_wake;      // set while the writer has nothing to write
  std::optional<Promise<void>> reader_wake;      // set while the reader has nothing to read
  bool closed = false;
};

struct Server {
  std::string host;
  std::uint16_t port;
  std::string name;  // "host:port", in every error about it
  std::vector<std::shared_ptr<Session>> sessions;  // connections_per_server slots; null: none yet
  std::size_t next_session = 0;
  std::size_t failures = 0;  // consecutive
  std::string last_failure;
  bool dead = false;
  bool probing = false;  // a request is testing the dead server now
  Clock::time_point retry_at{};
};

void wake(std::optional<Promise<void>>& waiter) {
  if (!waiter) return;
  Promise<void> promise = std::move(*waiter);
  waiter.reset();
  promise.set_value();
}

std::string milliseconds_text(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

/// memcached reads an expiry over 30 days as a Unix time: send those as one.
std::int64_t expiry_field(std::chrono::seconds ttl) {
  constexpr std::int64_t thirty_days = 30 * 24 * 3600;
  if (ttl.count() <= thirty_days) return ttl.count();
  return static_cast<std::int64_t>(std::time(nullptr)) + ttl.count();
}

/// The error of a bad key, or null.
std::exception_ptr key_error(std::string_view key) {
  try {
    check_memcache_key(key);
    return nullptr;
  } catch (const std::invalid_argument&) {
    return std::current_exception();
  }
}

std::vector<MemcacheServer> checked(std::vector<MemcacheServer> servers, const MemcacheOptions& options) {
  if (servers.empty()) throw std::invalid_argument("MemcacheClient: no servers");
  for (const MemcacheServer& server : servers) {
    if (server.host.empty() || server.port == 0)
      throw std::invalid_argument("MemcacheClient: a server needs a host and a port (got \"" + server.host + ":" +
                                  std::to_string(server.port) + "\")");
    if (server.weight == 0)
      throw std::invalid_argument("MemcacheClient: server " + server.host + " has weight 0; leave it out instead");
  }
  if (options.failure_limit == 0) throw std::invalid_argument("MemcacheClient: failure_limit must be at least 1");
  if (options.connections_per_server == 0)
    throw std::invalid_argument("MemcacheClient: connections_per_server must be at least 1");
  return servers;
}

}  // namespace

struct MemcacheClient::Impl : std::enable_shared_from_this<Impl> {
  Impl(std::vector<MemcacheServer> list, const Options& o, IOLoop& l)
      : options(o), loop(l), anchor(loop_anchor(l)), ring(checked(list, o)) {
    for (const MemcacheServer& entry : list) {
      auto server = std::make_unique<Server>();
      server->host = entry.host;
      server->port = entry.port;
      const bool ipv6 = entry.host.find(':') != std::string::npos;
      server->name = (ipv6 ? "[" + entry.host + "]" : entry.host) + ":" + std::to_string(entry.port);
      server->sessions.resize(options.connections_per_server);
      servers.push_back(std::move(server));
    }
  }

  /// Runs `job` on the loop's thread (now, if this is it); its exception fails the future.
  template <class T>
  Future<T> on_loop(std::function<void(const std::shared_ptr<Promise<T>>&)> job);

  /// Sends one request about `key` to its server; `convert` makes the reply the value.
  template <class T>
  Future<T> command(std::string key, std::string request, MemcacheReplyKind kind,
                    std::function<T(MemcacheReply&)> convert);
  Future<bool> storage(std::string_view verb, std::string key, const std::string& value, std::uint32_t flags,
                       std::chrono::seconds ttl, std::optional<std::uint64_t> cas = std::nullopt);
  Future<std::optional<std::uint64_t>> arithmetic(std::string_view verb, std::string key, std::uint64_t delta);
  Future<std::unordered_map<std::string, MemcacheItem>> get_multi(std::vector<std::string> keys);

  /// Whether a request may go to `server` now: alive, or dead past retry_at and not
  /// being probed (the request sent becomes the probe).
  bool admit(Server& server);
  /// The server for `key`: its own, or with failover the next live one on the ring.
  /// MemcacheServerDown when none may take it.
  Server& route(std::string_view key);
  MemcacheServerDown down_error(const Server& server) const;

  void send(Server& server, std::string request, MemcacheReplyKind kind,
            std::function<void(MemcacheReply*, std::exception_ptr)> complete);
  void settle(Pending& pending, MemcacheReply* reply, std::exception_ptr error);
  void run_session(Server& server, const std::shared_ptr<Session>& session);
  void run_writer(Server& server, const std::shared_ptr<Session>& session);
  /// A session's connection failed with the current exception: its requests fail,
  /// and the server gets a failure.
  void session_failed(Server& server, const std::shared_ptr<Session>& session);
  void end_session(Server& server, const std::shared_ptr<Session>& session, const std::exception_ptr& reason);
  void end_sessions(Server& server, const std::exception_ptr& reason);
  void record_success(Server& server);
  void record_failure(Server& server, const std::string& what);
  void shutdown();

  const Options options;
  IOLoop& loop;  // used on its thread while it lives (anchor says so)
  std::shared_ptr<LoopAnchor> anchor;
  const KetamaRing ring;
  std::vector<std::unique_ptr<Server>> servers;
  bool closed = false;
};

template <class T>
Future<T> MemcacheClient::Impl::on_loop(std::function<void(const std::shared_ptr<Promise<T>>&)> job) {
  auto promise = std::make_shared<Promise<T>>();
  Future<T> future = promise->get_future();
  std::function<void()> run = [self = shared_from_this(), promise, job = std::move(job)] {
    try {
      if (self->closed) throw StreamClosed("MemcacheClient: used after it was destroyed");
      job(promise);
    } catch (const forced_unwind&) {
      throw;
    } catch (...) {
      promise->set_exception(std::current_exception());
    }
  };
  if (hand_to_loop_thread(*anchor, run)) return future;
  if (alive_on_this_thread(*anchor) == nullptr)
    return make_exceptional_future<T>(std::make_exception_ptr(LoopClosed("MemcacheClient: its IOLoop was destroyed")));
  run();
  return future;
}

template <class T>
Future<T> MemcacheClient::Impl::command(std::string key, std::string request, MemcacheReplyKind kind,
                                        std::function<T(MemcacheReply&)> convert) {
  if (auto error = key_error(key)) return make_exceptional_future<T>(error);
  return on_loop<T>([this, key = std::move(key), request = std::move(request), kind,
                     convert = std::move(convert)](const std::shared_ptr<Promise<T>>& promise) mutable {
    send(route(key), std::move(request), kind,
         [promise, convert = std::move(convert)](MemcacheReply* reply, std::exception_ptr error) {
           if (!error) {
             try {
               promise->set_value(convert(*reply));
               return;
             } catch (...) {
               error = std::current_exception();
             }
           }
           promise->set_exception(error);
         });
  });
}

Future<bool> MemcacheClient::Impl::storage(std::string_view verb, std::string key, const std::string& value,
                                           std::uint32_t flags, std::chrono::seconds ttl,
                                           std::optional<std::uint64_t> cas) {
  if (auto error = key_error(key)) return make_exceptional_future<bool>(error);
  std::string request = memcache_storage_request(verb, key, value, flags, expiry_field(ttl), cas);
  return command<bool>(std::move(key), std::move(request), MemcacheReplyKind::stored,
                       [](MemcacheReply& reply) { return reply.done; });
}

Future<std::optional<std::uint64_t>> MemcacheClient::Impl::arithmetic(std::string_view verb, std::string key,
                                                                      std::uint64_t delta) {
  std::string request = std::string(verb) + " " + key + " " + std::to_string(delta) + "\r\n";
  return command<std::optional<std::uint64_t>>(std::move(key), std::move(request), MemcacheReplyKind::number,
                                               [](MemcacheReply& reply) { return reply.number; });
}

Future<std::unordered_map<std::string, MemcacheItem>> MemcacheClient::Impl::get_multi(std::vector<std::string> keys) {
  using Hits = std::unordered_map<std::string, MemcacheItem>;
  for (const std::string& key : keys)
    if (auto error = key_error(key)) return make_exceptional_future<Hits>(error);
  return on_loop<Hits>([this, keys = std::move(keys)](const std::shared_ptr<Promise<Hits>>& promise) {
    // Each key's server is decided first, so a failure sends nothing.
    std::unordered_map<Server*, std::vector<std::string_view>> batches;
    std::unordered_set<std::string_view> seen;
    for (const std::string& key : keys)
      if (seen.insert(key).second) batches[&route(key)].push_back(key);
    if (batches.empty()) return promise->set_value(Hits());

    struct Gathering {  // the replies of every server, until the last
      Hits hits;
      std::size_t waiting;
      bool failed = false;
    };
    auto gathering = std::make_shared<Gathering>(Gathering{{}, batches.size()});
    for (auto& [server, batch] : batches) {
      send(*server, memcache_get_request(batch), MemcacheReplyKind::values,
           [promise, gathering](MemcacheReply* reply, std::exception_ptr error) {
             if (gathering->failed) return;
             if (error) {
               gathering->failed = true;
               return promise->set_exception(error);
             }
             for (auto& [key, item] : reply->items) gathering->hits.insert_or_assign(key, std::move(item));
             if (--gathering->waiting == 0) promise->set_value(std::move(gathering->hits));
           });
    }
  });
}

bool MemcacheClient::Impl::admit(Server& server) {
  return !server.dead || (!server.probing && Clock::now() >= server.retry_at);
}

MemcacheServerDown MemcacheClient::Impl::down_error(const Server& server) const {
  const auto left = std::max(server.retry_at - Clock::now(), Clock::duration::zero());
  return MemcacheServerDown(server.name, "memcached " + server.name + " is marked dead after " +
                                             std::to_string(server.failures) + " consecutive failures (last: " +
                                             server.last_failure + "); it is tried again in " +
                                             milliseconds_text(left) + " (MemcacheOptions::retry_timeout)");
}

Server& MemcacheClient::Impl::route(std::string_view key) {
  Server& own = *servers[ring.server_for(key)];
  if (admit(own)) return own;
  if (options.failover) {
    const std::size_t next = ring.server_for(key, [this](std::size_t i) { return !servers[i]->dead; });
    if (next != KetamaRing::npos) return *servers[next];
  }
  throw down_error(own);
}

void MemcacheClient::Impl::send(Server& server, std::string request, MemcacheReplyKind kind,
                                std::function<void(MemcacheReply*, std::exception_ptr)> complete) {
  auto pending = std::make_shared<Pending>(Pending{kind, std::move(complete)});
  if (server.dead) server.probing = true;  // admitted past retry_at: this request probes it
  {
    NullContext unrelated;  // the timer and the connection belong to no one request
    pending->timer.start(
        loop, options.request_timeout,
        [weak = weak_from_this(), target = &server, weak_pending = std::weak_ptr(pending)] {
          const auto self = weak.lock();
          const auto timed_out = weak_pending.lock();
          if (!self || !timed_out || timed_out->settled) return;
          const std::string what = "no reply within " + milliseconds_text(self->options.request_timeout);
          self->settle(*timed_out, nullptr,
                       std::make_exception_ptr(TimeoutError("memcached " + target->name + ": " + what +
                                                            " (MemcacheOptions::request_timeout)")));
          self->record_failure(*target, "timed out");
        });
    std::shared_ptr<Session>& session = server.sessions[server.next_session++ % server.sessions.size()];
    if (!session) {
      session = std::make_shared<Session>();
      (void)loop.spawn("memcache " + server.name,
                       [self = shared_from_this(), target = &server, session] { self->run_session(*target, session); });
    }
    session->pending.push_back(std::move(pending));
    session->outbox.append(request);
    wake(session->writer_wake);
    wake(session->reader_wake);
  }
}

void MemcacheClient::Impl::settle(Pending& pending, MemcacheReply* reply, std::exception_ptr error) {
  if (pending.settled) return;
  pending.settled = true;
  pending.timer.cancel();
  pending.complete(reply, std::move(error));
}

void MemcacheClient::Impl::run_session(Server& server, const std::shared_ptr<Session>& session) {
  try {
    try {
      TcpStream stream = TcpStream::connect(server.host, server.port, options.connect_timeout);
      if (session->closed) return;
      session->stream = std::move(stream);
    } catch (const TimeoutError&) {
      throw TimeoutError("memcached " + server.name + ": could not connect within " +
                         milliseconds_text(options.connect_timeout) + " (MemcacheOptions::connect_timeout)");
    } catch (const std::system_error& e) {
      throw std::system_error(e.code(), "memcached " + server.name + ": connect");
    }
    session->stream.set_timeout(std::chrono::nanoseconds::max());  // each request has its own timer
    (void)loop.spawn("memcache " + server.name + " writer",
                     [self = shared_from_this(), target = &server, session] { self->run_writer(*target, session); });
    while (!session->closed) {
      if (session->pending.empty()) {
        wait_for_future(session->reader_wake.emplace().get_future());
        continue;
      }
      const std::shared_ptr<Pending> front = session->pending.front();
      MemcacheReply reply;
      std::exception_ptr refused;  // SERVER_ERROR and kin: that request fails, the connection goes on
      try {
        reply = read_memcache_reply(session->stream, front->kind, server.name, options.max_value_bytes);
      } catch (const MemcacheServerError&) {
        refused = std::current_exception();
      }
      if (session->closed) return;
      session->pending.pop_front();
      record_success(server);
      settle(*front, refused ? nullptr : &reply, refused);
    }
  } catch (const forced_unwind&) {  // the loop is being destroyed
    end_session(server, session, std::make_exception_ptr(LoopClosed("MemcacheClient: its IOLoop was destroyed")));
    throw;
  } catch (...) {
    session_failed(server, session);
  }
}

void MemcacheClient::Impl::run_writer(Server& server, const std::shared_ptr<Session>& session) {
  try {
    std::string batch;
    while (!session->closed) {
      if (session->outbox.empty()) {
        wait_for_future(session->writer_wake.emplace().get_future());
        continue;
      }
      batch.clear();
      batch.swap(session->outbox);  // all queued requests in one write
      session->stream.write_all(batch);
    }
  } catch (const forced_unwind&) {
    throw;
  } catch (...) {
    session_failed(server, session);
  }
}

void MemcacheClient::Impl::session_failed(Server& server, const std::shared_ptr<Session>& session) {
  if (session->closed) return;  // closed by us: not the server's failure
  std::exception_ptr error = std::current_exception();
  std::string what;
  try {
    throw;
  } catch (const StreamClosed&) {
    what = "it closed the connection";
    error = std::make_exception_ptr(StreamClosed("memcached " + server.name + " closed the connection"));
  } catch (const std::system_error& e) {
    what = e.what();
    if (std::string_view(what).find(server.name) == std::string_view::npos)
      error = std::make_exception_ptr(std::system_error(e.code(), "memcached " + server.name));
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "an unknown error";
  }
  end_session(server, session, error);
  record_failure(server, what);
}

void MemcacheClient::Impl::end_session(Server& server, const std::shared_ptr<Session>& session,
                                       const std::exception_ptr& reason) {
  if (session->closed) return;
  session->closed = true;
  for (auto& slot : server.sessions)
    if (slot == session) slot.reset();
  session->stream.close();  // wakes a reader or writer suspended on it
  wake(session->reader_wake);
  wake(session->writer_wake);
  session->outbox.clear();
  std::deque<std::shared_ptr<Pending>> failing;
  failing.swap(session->pending);
  for (const auto& pending : failing) settle(*pending, nullptr, reason);
}

void MemcacheClient::Impl::end_sessions(Server& server, const std::exception_ptr& reason) {
  const auto sessions = server.sessions;  // end_session empties the slots
  for (const auto& session : sessions)
    if (session) end_session(server, session, reason);
}

void MemcacheClient::Impl::record_success(Server& server) {
  server.failures = 0;
  server.dead = false;
  server.probing = false;
}

void MemcacheClient::Impl::record_failure(Server& server, const std::string& what) {
  ++server.failures;
  server.last_failure = what;
  if (!server.probing && (server.dead || server.failures < options.failure_limit)) return;
  // Marked dead (again, if this was the probe): its requests fail at once until retry_at.
  server.dead = true;
  server.probing = false;
  server.retry_at = saturating_add(Clock::now(), options.retry_timeout);
  const std::exception_ptr reason = std::make_exception_ptr(down_error(server));
  end_sessions(server, reason);
}

void MemcacheClient::Impl::shutdown() {
  closed = true;
  const auto reason = std::make_exception_ptr(StreamClosed("MemcacheClient: destroyed while the request was in flight"));
  for (const auto& server : servers)
    end_sessions(*server, reason);
}

// ---- the public faces ---------------------------------------------------------------

MemcacheClient::MemcacheClient(std::vector<MemcacheServer> servers, Options options, IOLoop& loop)
    : impl_(std::make_shared<Impl>(std::move(servers), options, loop)) {}

MemcacheClient::~MemcacheClient() {
  std::function<void()> shutdown = [impl = impl_] { impl->shutdown(); };
  try {
    if (hand_to_loop_thread(*impl_->anchor, shutdown)) return;
  } catch (...) {  // the loop refused the work: it is going away, and its fibers with it
    return;
  }
  shutdown();
}

std::string MemcacheClient::server_for(std::string_view key) const {
  return impl_->servers[impl_->ring.server_for(key)]->name;
}

Future<std::optional<MemcacheItem>> MemcacheClient::get_async(std::string key) {
  std::vector<std::string_view> keys{key};
  std::string request = memcache_get_request(keys);
  return impl_->command<std::optional<MemcacheItem>>(
      key, std::move(request), MemcacheReplyKind::values,
      [key, impl = impl_.get()](MemcacheReply& reply) -> std::optional<MemcacheItem> {
        if (reply.items.empty()) return std::nullopt;
        if (reply.items.size() > 1 || reply.items.front().first != key) {
          const std::string server = impl->servers[impl->ring.server_for(key)]->name;
          throw MemcacheProtocolError(server, "memcached " + server + " answered a get for \"" + key +
                                                  "\" with another key's value");
        }
        return std::move(reply.items.front().second);
      });
}

Future<std::unordered_map<std::string, MemcacheItem>> MemcacheClient::get_multi_async(std::vector<std::string> keys) {
  return impl_->get_multi(std::move(keys));
}

Future<bool> MemcacheClient::set_async(std::string key, std::string value, std::uint32_t flags, Seconds ttl) {
  return impl_->storage("set", std::move(key), value, flags, ttl);
}
Future<bool> MemcacheClient::add_async(std::string key, std::string value, std::uint32_t flags, Seconds ttl) {
  return impl_->storage("add", std::move(key), value, flags, ttl);
}
Future<bool> MemcacheClient::replace_async(std::string key, std::string value, std::uint32_t flags, Seconds ttl) {
  return impl_->storage("replace", std::move(key), value, flags, ttl);
}
Future<bool> MemcacheClient::append_async(std::string key, std::string value) {
  return impl_->storage("append", std::move(key), value, 0, Seconds(0));
}
Future<bool> MemcacheClient::prepend_async(std::string key, std::string value) {
  return impl_->storage("prepend", std::move(key), value, 0, Seconds(0));
}
Future<bool> MemcacheClient::cas_async(std::string key, std::string value, std::uint64_t cas, std::uint32_t flags,
                                       Seconds ttl) {
  return impl_->storage("cas", std::move(key), value, flags, ttl, cas);
}
Future<bool> MemcacheClient::remove_async(std::string key) {
  std::string request = "delete " + key + "\r\n";
  return impl_->command<bool>(std::move(key), std::move(request), MemcacheReplyKind::deleted,
                              [](MemcacheReply& reply) { return reply.done; });
}
Future<std::optional<std::uint64_t>> MemcacheClient::incr_async(std::string key, std::uint64_t delta) {
  return impl_->arithmetic("incr", std::move(key), delta);
}
Future<std::optional<std::uint64_t>> MemcacheClient::decr_async(std::string key, std::uint64_t delta) {
  return impl_->arithmetic("decr", std::move(key), delta);
}
Future<bool> MemcacheClient::touch_async(std::string key, Seconds ttl) {
  std::string request = "touch " + key + " " + std::to_string(expiry_field(ttl)) + "\r\n";
  return impl_->command<bool>(std::move(key), std::move(request), MemcacheReplyKind::touched,
                              [](MemcacheReply& reply) { return reply.done; });
}

namespace {
/// The blocking faces: wait, labelled for IOLoop::dump() ("memcached get user:42").
template <class T>
T wait_labelled(const char* what, std::string_view key, Future<T> reply) {
  const detail::WaitLabel label(what, key);
  return wait_for_future(std::move(reply));
}
}  // namespace

std::optional<MemcacheItem> MemcacheClient::get(std::string_view key) {
  return wait_labelled("memcached get", key, get_async(std::string(key)));
}
std::unordered_map<std::string, MemcacheItem> MemcacheClient::get_multi(const std::vector<std::string>& keys) {
  return wait_labelled("memcached get_multi", {}, get_multi_async(keys));
}
bool MemcacheClient::set(std::string_view key, std::string_view value, std::uint32_t flags, Seconds ttl) {
  return wait_labelled("memcached set", key, set_async(std::string(key), std::string(value), flags, ttl));
}
bool MemcacheClient::add(std::string_view key, std::string_view value, std::uint32_t flags, Seconds ttl) {
  return wait_labelled("memcached add", key, add_async(std::string(key), std::string(value), flags, ttl));
}
bool MemcacheClient::replace(std::string_view key, std::string_view value, std::uint32_t flags, Seconds ttl) {
  return wait_labelled("memcached replace", key, replace_async(std::string(key), std::string(value), flags, ttl));
}
bool MemcacheClient::append(std::string_view key, std::string_view value) {
  return wait_labelled("memcached append", key, append_async(std::string(key), std::string(value)));
}
bool MemcacheClient::prepend(std::string_view key, std::string_view value) {
  return wait_labelled("memcached prepend", key, prepend_async(std::string(key), std::string(value)));
}
bool MemcacheClient::cas(std::string_view key, std::string_view value, std::uint64_t cas, std::uint32_t flags,
                         Seconds ttl) {
  return wait_labelled("memcached cas", key, cas_async(std::string(key), std::string(value), cas, flags, ttl));
}
bool MemcacheClient::remove(std::string_view key) { return wait_labelled("memcached delete", key, remove_async(std::string(key))); }
std::optional<std::uint64_t> MemcacheClient::incr(std::string_view key, std::uint64_t delta) {
  return wait_labelled("memcached incr", key, incr_async(std::string(key), delta));
}
std::optional<std::uint64_t> MemcacheClient::decr(std::string_view key, std::uint64_t delta) {
  return wait_labelled("memcached decr", key, decr_async(std::string(key), delta));
}
bool MemcacheClient::touch(std::string_view key, Seconds ttl) {
  return wait_labelled("memcached touch", key, touch_async(std::string(key), ttl));
}

}  // namespace fiberloop
