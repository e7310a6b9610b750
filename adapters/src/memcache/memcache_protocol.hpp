#pragma once
// memcached's text protocol (memcached's doc/protocol.txt): requests written whole,
// replies read from a stream with every length bounded before it is buffered.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fiberloop/memcache.hpp>
#include <fiberloop/net/tcp_stream.hpp>

namespace fiberloop::detail {

/// std::invalid_argument unless `key` is 1 to 250 bytes without space or control
/// character (memcached's limits; such a key would split the command line).
void check_memcache_key(std::string_view key);

/// What a reply to the request looks like.
enum class MemcacheReplyKind {
  values,   // get, gets: VALUE blocks, then END
  stored,   // set, add, replace, append, prepend, cas: STORED, NOT_STORED, EXISTS, NOT_FOUND
  deleted,  // delete: DELETED, NOT_FOUND
  number,   // incr, decr: the new value, NOT_FOUND
  touched,  // touch: TOUCHED, NOT_FOUND
};

struct MemcacheReply {
  bool done = false;  // STORED, DELETED, TOUCHED, a number; for values: always
  std::optional<std::uint64_t> number;
  std::vector<std::pair<std::string, MemcacheItem>> items;
};

/// "gets k1 k2...\r\n" (gets: every item comes with its cas, for cas()).
std::string memcache_get_request(const std::vector<std::string_view>& keys);
/// "<verb> <key> <flags> <ttl> <bytes>[ <cas>]\r\n<value>\r\n"
std::string memcache_storage_request(std::string_view verb, std::string_view key, std::string_view value,
                                     std::uint32_t flags, std::int64_t ttl_seconds,
                                     std::optional<std::uint64_t> cas = std::nullopt);

/// The longest reply line read: "VALUE <250-byte key> <flags> <bytes> <cas>" is
/// under 320 bytes; SERVER_ERROR texts are short.
inline constexpr std::size_t max_memcache_line = 4096;

/// Parses the reply line `line` (without its CRLF) to a request of `kind`. For a
/// VALUE line returns its data length in `value_bytes` (the caller then reads that
/// many bytes and CRLF) and `reply.items` gets the item without its value; returns
/// true when the reply is complete. MemcacheServerError for ERROR, CLIENT_ERROR and
/// SERVER_ERROR; MemcacheProtocolError for anything else unexpected.
struct MemcacheLineResult {
  bool complete = false;
  std::optional<std::size_t> value_bytes;
};
MemcacheLineResult parse_memcache_line(std::string_view line, MemcacheReplyKind kind, const std::string& server,
                                       std::size_t max_value_bytes, MemcacheReply& reply);

/// Reads one whole reply to a request of `kind` from `stream` (TcpStream or a test
/// double with read_until and read_exactly).
template <class Stream>
MemcacheReply read_memcache_reply(Stream& stream, MemcacheReplyKind kind, const std::string& server,
                                  std::size_t max_value_bytes) {
  MemcacheReply reply;
  for (;;) {
    std::string line;
    try {
      line = stream.read_until("\r\n", max_memcache_line);
    } catch (const StreamClosed&) {
      throw;
    } catch (const TimeoutError&) {
      throw;
    } catch (const Error&) {  // no CRLF within max_memcache_line
      throw MemcacheProtocolError(server, "memcached " + server + ": a reply line longer than " +
                                              std::to_string(max_memcache_line) + " bytes");
    }
    line.resize(line.size() - 2);
    const MemcacheLineResult result = parse_memcache_line(line, kind, server, max_value_bytes, reply);
    if (result.value_bytes) {
      std::string data = stream.read_exactly(*result.value_bytes + 2);
      if (!data.ends_with("\r\n"))
        throw MemcacheProtocolError(server, "memcached " + server + ": a value's data was not followed by CRLF");
      data.resize(*result.value_bytes);
      reply.items.back().second.value = std::move(data);
    }
    if (result.complete) return reply;
  }
}

}  // namespace fiberloop::detail
