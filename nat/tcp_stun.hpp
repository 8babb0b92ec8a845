// STUN over TCP (RFC 8489 §6.2.2): where a TCP port of ours appears to the
// world, for TCP reflexive candidates and simultaneous open.
//
// Every node answers on its TCP listener: an accepted connection whose
// first 20 bytes are a STUN Binding request header (first two bits zero,
// method Binding, class request, the magic cookie) gets one answer and is
// closed; anything else (a Noise handshake's first message is 48 bytes
// that look random) goes on to the handshake with those bytes put back.
// A handshake message passes for STUN with odds of one in 2^50.
//
// The client asks from the node's listening port (SO_REUSEPORT, as the
// listener), so the answer is the NAT mapping that port has: the one a
// TCP simultaneous open from that port goes through.
#pragma once

#include "crust/base/clock.hpp"
#include "crust/base/error.hpp"
#include "nat/stun.hpp"
#include "transports/endpoint.hpp"
#include "transports/stream.hpp"

#include <boost/asio/awaitable.hpp>

namespace crust::nat {

inline constexpr std::size_t tcp_stun_max_message = 548;

// Whether the first 20 bytes of a TCP stream start a STUN Binding request
// (with a length this server reads: at most tcp_stun_max_message in all).
bool is_tcp_binding_head(byte_span head) noexcept;

// Reads the rest of the request `head` starts, answers it as the UDP
// server does (the TCP peer's endpoint as the mapped address) and
// returns; the caller closes the stream. Bounded by `limit`. Errors: the
// read's or write's, timed_out, malformed.
boost::asio::awaitable<result<void>> serve_tcp_binding(transport::stream& s, bytes head,
                                                       const transport::tcp_endpoint& from,
                                                       duration limit);

// One Binding transaction over TCP from `local` to `server`. The
// mapped address, or: the connect's error (connection_refused, ...),
// timed_out, malformed (an answer that does not parse or match), and
// server_error (an error response).
boost::asio::awaitable<result<transport::tcp_endpoint>> tcp_binding(transport::tcp_endpoint local,
                                                                    transport::tcp_endpoint server,
                                                                    duration limit);

}  // namespace crust::nat
