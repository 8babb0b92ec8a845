// The STUN server every node runs on its UDP socket (RFC 8489 Binding), as
// a decision with no I/O: a datagram in, the answer (if any) out.
//
// What is answered:
// - a Binding request: a success response with XOR-MAPPED-ADDRESS (where
//   the request came from), then RESPONSE-ORIGIN and SOFTWARE when set, and
//   FINGERPRINT when the request carried one;
// - a Binding request that sets CHANGE-REQUEST's flags, or that carries a
//   comprehension-required attribute the server does not know (RESPONSE-PORT
//   among them): 420 with UNKNOWN-ATTRIBUTES. This server has one address,
//   so it cannot answer from another (RFC 5780 §6.1);
// - a request of another method (TURN's Allocate, say): 400.
// Indications, responses and malformed datagrams get nothing.
//
// Amplification: an answer is never larger than the request, or than 64
// bytes, whichever is more. Standard clients send bare 20-byte requests
// (coturn's turnutils_stunclient does), and the reflexive address must fit,
// so the floor is what one costs; the optional attributes are left out
// first (SOFTWARE, then RESPONSE-ORIGIN, then the error's reason). Crust's
// client sends FINGERPRINT only (28 bytes): over IPv4 it gets the full
// answer, over IPv6 the mapped address and what else fits; it can pad its
// requests (stun_agent::options::request_size) to get everything. The caller
// rate-limits per source on top of this.
#pragma once

#include "nat/stun.hpp"

#include <optional>
#include <string>

namespace crust::nat::stun {

inline constexpr std::size_t answer_floor = 64;

struct server_options {
  std::string software = "crust";               // SOFTWARE; empty: none
  std::optional<udp_endpoint> response_origin;  // RESPONSE-ORIGIN, the answering socket
};

std::optional<bytes> answer(byte_span datagram, const udp_endpoint& from,
                            const server_options& options);

}  // namespace crust::nat::stun
