// TCP set-up: listeners that share their port with outgoing connects
// (SO_REUSEADDR + SO_REUSEPORT, which TCP simultaneous open will need), and
// a dial that honours cancellation.
#pragma once

#include "crust/base/clock.hpp"
#include "crust/base/error.hpp"
#include "transports/endpoint.hpp"
#include "transports/stream.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace crust::transport {

// Binds and listens on `at` (port 0 = a random port chosen by the OS). An
// IPv6 wildcard listener is dual-stack. Errors: the bind/listen error.
result<asio::ip::tcp::acceptor> tcp_listen(const asio::any_io_executor& ex, const tcp_endpoint& at,
                                           int backlog = 1024);

// Accepts one connection. Errors: the accept error; operation_aborted when
// cancelled or the acceptor closes.
asio::awaitable<result<stream>> tcp_accept(asio::ip::tcp::acceptor& acceptor);

// Connects to `to`. Errors: connection_refused, network_unreachable, ...;
// cancellation (any type) closes the socket and yields operation_aborted.
asio::awaitable<result<stream>> tcp_dial(tcp_endpoint to);

}  // namespace crust::transport
