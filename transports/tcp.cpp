#include "transports/tcp.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace crust::transport {

namespace {

void tune(asio::ip::tcp::socket& s) {
  error_code ec;
  s.set_option(asio::ip::tcp::no_delay(true), ec);  // the channel batches writes itself
}

}  // namespace

result<asio::ip::tcp::acceptor> tcp_listen(const asio::any_io_executor& ex, const tcp_endpoint& at,
                                           int backlog) {
  asio::ip::tcp::acceptor acc(ex);
  error_code ec;
  acc.open(at.protocol(), ec);
  if (ec) return ec;
  acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return ec;
  using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
  acc.set_option(reuse_port(true), ec);
  if (ec) return ec;
  if (at.address().is_v6()) {
    acc.set_option(asio::ip::v6_only(false), ec);
    ec.clear();  // dual-stack where the system allows it
  }
  acc.bind(at, ec);
  if (ec) return ec;
  acc.listen(backlog, ec);
  if (ec) return ec;
  return acc;
}

asio::awaitable<result<stream>> tcp_accept(asio::ip::tcp::acceptor& acceptor) {
  auto [ec, sock] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
  if (ec) co_return ec;
  tune(sock);
  co_return stream(std::move(sock));
}

asio::awaitable<result<stream>> tcp_dial_from(tcp_endpoint local, tcp_endpoint to) {
  asio::ip::tcp::socket sock(co_await asio::this_coro::executor);
  // A dual-stack listener reaches IPv4 peers through mapped addresses.
  if (local.address().is_v6() && to.address().is_v4())
    to = {asio::ip::make_address_v6(asio::ip::v4_mapped, to.address().to_v4()), to.port()};
  error_code ec;
  sock.open(local.protocol(), ec);
  if (!ec) sock.set_option(asio::socket_base::reuse_address(true), ec);
  using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
  if (!ec) sock.set_option(reuse_port(true), ec);
  if (!ec && local.address().is_v6()) {
    sock.set_option(asio::ip::v6_only(false), ec);
    ec.clear();
  }
  if (!ec) sock.bind(local, ec);
  if (ec) co_return ec;
  auto [cec] = co_await sock.async_connect(to, asio::as_tuple(asio::use_awaitable));
  if (cec) co_return cec;
  tune(sock);
  co_return stream(std::move(sock));
}

asio::awaitable<result<stream>> tcp_dial(tcp_endpoint to) {
  asio::ip::tcp::socket sock(co_await asio::this_coro::executor);
  auto [ec] = co_await sock.async_connect(to, asio::as_tuple(asio::use_awaitable));
  if (ec) co_return ec;
  tune(sock);
  co_return stream(std::move(sock));
}

}  // namespace crust::transport
