// Skeleton: replaced by the real implementation shortly.
#include <fiberloop/net/tcp_server.hpp>

namespace fiberloop {

struct TcpServer::State {};

TcpServer::TcpServer(Handler, Options, IOLoop&) : state_(std::make_shared<State>()) {}
TcpServer::~TcpServer() = default;
std::uint16_t TcpServer::listen(std::uint16_t, const std::string&) { throw Error("TcpServer: not implemented yet"); }
std::uint16_t TcpServer::port() const noexcept { return 0; }
std::size_t TcpServer::connections() const noexcept { return 0; }
void TcpServer::stop(std::chrono::nanoseconds) {}
Future<void> TcpServer::stop_async(std::chrono::nanoseconds) { return make_ready_future(); }
std::size_t TcpServer::accept_attempts() const noexcept { return 0; }

}  // namespace fiberloop
