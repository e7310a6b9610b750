#include "memcache_protocol.hpp"

#include <charconv>
#include <stdexcept>

namespace fiberloop::detail {

namespace {

[[noreturn]] void broken(const std::string& server, std::string_view line, const std::string& why) {
  std::string shown(line.substr(0, 80));
  for (char& c : shown)
    if (static_cast<unsigned char>(c) < ' ' || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  throw MemcacheProtocolError(server, "memcached " + server + ": " + why + " (reply \"" + shown + "\")");
}

/// The next space-separated word of `line`, removed from it.
std::string_view next_word(std::string_view& line) {
  const auto space = line.find(' ');
  const std::string_view word = line.substr(0, space);
  line.remove_prefix(space == std::string_view::npos ? line.size() : space + 1);
  return word;
}

/// `word` as an unsigned number of type T: digits only, no overflow.
template <class T>
std::optional<T> parse_number(std::string_view word) {
  T value{};
  const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), value);
  if (word.empty() || ec != std::errc() || end != word.data() + word.size()) return std::nullopt;
  return value;
}

}  // namespace

void check_memcache_key(std::string_view key) {
  if (key.empty()) throw std::invalid_argument("MemcacheClient: empty key");
  if (key.size() > 250)
    throw std::invalid_argument("MemcacheClient: a key of " + std::to_string(key.size()) +
                                " bytes; memcached takes at most 250 (hash longer keys)");
  for (const char c : key) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= ' ' || byte == 0x7f)
      throw std::invalid_argument("MemcacheClient: a key with a space or control character (byte " +
                                  std::to_string(byte) + "); memcached keys cannot hold them (encode them)");
  }
}

std::string memcache_get_request(const std::vector<std::string_view>& keys) {
  std::string request = "gets";
  for (const std::string_view key : keys) request.append(1, ' ').append(key);
  return request.append("\r\n");
}

std::string memcache_storage_request(std::string_view verb, std::string_view key, std::string_view value,
                                     std::uint32_t flags, std::int64_t ttl_seconds,
                                     std::optional<std::uint64_t> cas) {
  std::string request;
  request.reserve(verb.size() + key.size() + value.size() + 64);
  request.append(verb).append(1, ' ').append(key);
  request.append(1, ' ').append(std::to_string(flags));
  request.append(1, ' ').append(std::to_string(ttl_seconds));
  request.append(1, ' ').append(std::to_string(value.size()));
  if (cas) request.append(1, ' ').append(std::to_string(*cas));
  return request.append("\r\n").append(value).append("\r\n");
}

MemcacheLineResult parse_memcache_line(std::string_view line, MemcacheReplyKind kind, const std::string& server,
                                       std::size_t max_value_bytes, MemcacheReply& reply) {
  using Kind = MemcacheReplyKind;
  // Errors any command may get. The connection stays in step: memcached ends the
  // failed command there (after swallowing a rejected value's data).
  if (line == "ERROR")
    throw MemcacheServerError(server, "memcached " + server + " answered ERROR: it does not know the command");
  if (line.starts_with("CLIENT_ERROR") || line.starts_with("SERVER_ERROR"))
    throw MemcacheServerError(server, "memcached " + server + " answered " + std::string(line.substr(0, 200)));

  switch (kind) {
    case Kind::values: {
      if (line == "END") return {true, std::nullopt};
      std::string_view rest = line;
      if (next_word(rest) != "VALUE") broken(server, line, "expected VALUE or END");
      const std::string_view key = next_word(rest);
      const auto flags = parse_number<std::uint32_t>(next_word(rest));
      const auto bytes = parse_number<std::size_t>(next_word(rest));
      const auto cas = rest.empty() ? std::optional<std::uint64_t>(0) : parse_number<std::uint64_t>(next_word(rest));
      if (key.empty() || !flags || !bytes || !cas || !rest.empty()) broken(server, line, "a malformed VALUE line");
      if (*bytes > max_value_bytes)
        broken(server, line, "a value of " + std::to_string(*bytes) + " bytes, over MemcacheOptions::max_value_bytes (" +
                                 std::to_string(max_value_bytes) + "); raise it if the server stores such values");
      MemcacheItem item;
      item.flags = *flags;
      item.cas = *cas;
      reply.items.emplace_back(std::string(key), std::move(item));
      return {false, *bytes};
    }
    case Kind::number:
      if (line == "NOT_FOUND") return {true, std::nullopt};
      // memcached answers the bare number (older versions padded it with spaces).
      if (const auto value = parse_number<std::uint64_t>(line.substr(0, line.find(' ')));
          value && line.find_first_not_of(' ', line.find(' ')) == std::string_view::npos) {
        reply.done = true;
        reply.number = *value;
        return {true, std::nullopt};
      }
      broken(server, line, "expected a number or NOT_FOUND");
    case Kind::stored:
      if (line == "STORED") reply.done = true;
      else if (line != "NOT_STORED" && line != "EXISTS" && line != "NOT_FOUND")
        broken(server, line, "expected STORED, NOT_STORED, EXISTS or NOT_FOUND");
      return {true, std::nullopt};
    case Kind::deleted:
      if (line == "DELETED") reply.done = true;
      else if (line != "NOT_FOUND") broken(server, line, "expected DELETED or NOT_FOUND");
      return {true, std::nullopt};
    case Kind::touched:
      if (line == "TOUCHED") reply.done = true;
      else if (line != "NOT_FOUND") broken(server, line, "expected TOUCHED or NOT_FOUND");
      return {true, std::nullopt};
  }
  broken(server, line, "an unexpected reply");
}

}  // namespace fiberloop::detail
