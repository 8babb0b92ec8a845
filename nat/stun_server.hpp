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
// Amplification: over UDP an answer is never larger than the request,
// whose source address may be forged (an answer that does not fit is not
// sent). The optional attributes are left out first to make it fit
// (SOFTWARE, then RESPONSE-ORIGIN, then the error's reason). A bare
// 20-byte request (coturn's turnutils_stunclient sends one) is too small
// for any answer; `answer_floor` lets an operator serve such clients at
// the price of answers up to that size. Crust's client pads its requests
// (stun_agent::options::request_size) to hold the full answer. Over TCP,
// whose handshake proved the asker's address, there is no limit. The
// caller rate-limits per source on top of this.
#pragma once

#include "nat/stun.hpp"

#include <optional>
#include <string>

namespace crust::nat::stun {

struct server_options {
  std::string software = "crust";               // SOFTWARE; empty: none
  std::optional<udp_endpoint> response_origin;  // RESPONSE-ORIGIN, the answering socket
  // An answer may be this large whatever the request's size; 0: never
  // larger than the request.
  std::size_t answer_floor = 0;
};

// The largest answer this server gives: the mapped address and
// RESPONSE-ORIGIN, both IPv6, SOFTWARE "crust" and FINGERPRINT. A request
// this large gets everything.
inline constexpr std::size_t full_answer_size = 20 + 24 + 24 + 12 + 8;

std::optional<bytes> answer(byte_span datagram, const udp_endpoint& from,
                            const server_options& options);

}  // namespace crust::nat::stun
