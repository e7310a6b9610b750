// Skeleton: replaced by the real implementation shortly.
#include <fiberloop/net/tcp_stream.hpp>

namespace fiberloop {

namespace {
[[noreturn]] void todo() { throw Error("TcpStream: not implemented yet"); }
}  // namespace

StreamClosed::StreamClosed(const std::string& what, std::string partial)
    : Error(what), partial_(std::make_shared<const std::string>(std::move(partial))) {}
const std::string& StreamClosed::partial() const noexcept { return *partial_; }

struct TcpStream::Impl {};

TcpStream::TcpStream() noexcept = default;
TcpStream::TcpStream(int, IOLoop&) { todo(); }
TcpStream::TcpStream(TcpStream&&) noexcept = default;
TcpStream& TcpStream::operator=(TcpStream&&) noexcept = default;
TcpStream::~TcpStream() = default;
TcpStream TcpStream::connect(const std::string&, std::uint16_t, Duration) { todo(); }
std::size_t TcpStream::read_some(std::span<char>) { todo(); }
std::size_t TcpStream::read_some(std::span<char>, Duration) { todo(); }
std::string TcpStream::read_exactly(std::size_t) { todo(); }
std::string TcpStream::read_exactly(std::size_t, Duration) { todo(); }
std::string TcpStream::read_until(std::string_view, std::size_t) { todo(); }
std::string TcpStream::read_until(std::string_view, std::size_t, Duration) { todo(); }
void TcpStream::write_all(std::string_view) { todo(); }
void TcpStream::write_all(std::string_view, Duration) { todo(); }
void TcpStream::close() noexcept {}
bool TcpStream::is_open() const noexcept { return false; }
int TcpStream::fd() const noexcept { return -1; }
void TcpStream::set_timeout(Duration) noexcept {}
TcpStream::Duration TcpStream::timeout() const noexcept { return default_timeout; }
void TcpStream::set_nodelay(bool) { todo(); }
void TcpStream::set_keepalive(bool) { todo(); }
std::size_t TcpStream::buffered() const noexcept { return 0; }
std::string TcpStream::peer_address() const { todo(); }
std::string TcpStream::local_address() const { todo(); }

}  // namespace fiberloop
