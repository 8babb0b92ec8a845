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

// Connects to `to` from `local`, an endpoint this host listens on (bound
// with SO_REUSEADDR and SO_REUSEPORT, as tcp_listen binds): the connection
// leaves through the NAT mapping the listener's port has. When the peer
// does the same toward us at the same time, that is a TCP simultaneous
// open: each end's connect completes, and no accept happens. Errors as
// tcp_dial, and the bind's (address_in_use while an earlier connection
// between the same two endpoints lingers).
asio::awaitable<result<stream>> tcp_dial_from(tcp_endpoint local, tcp_endpoint to);

}  // namespace crust::transport
