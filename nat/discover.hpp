// NAT behaviour discovery over real sockets: asks STUN observers (Crust
// nodes, or any RFC 8489 server; RFC 5780 servers such as coturn allow more
// tests) and hands what they saw to nat::classify (nat/behaviour.hpp).
//
// What it does, in order, each step bounded by `timing`:
// 1. The node's own socket asks every observer, one after another. An
//    observer that names an OTHER-ADDRESS (RFC 5780) is also asked at that
//    address with its primary port and with its other port, which is what
//    tells address- from address-and-port-dependent mapping.
// 2. `extra_sockets` fresh sockets on the same local address each ask the
//    first observer that answered: successive new mappings, for the port
//    allocation (preserving, sequential with a step, random).
// 3. Hairpinning: the node's socket asks its own external endpoint; the
//    node's own STUN server answers if the NAT loops the request back.
//    Only tested when the agent answers STUN.
// 4. Filtering: from a fresh socket that has only talked to an RFC 5780
//    observer's primary endpoint, that observer is asked to answer from
//    its other address and port, then from its other port only.
#pragma once

#include "nat/behaviour.hpp"
#include "nat/stun_agent.hpp"

#include <boost/asio/awaitable.hpp>

#include <memory>
#include <vector>

namespace crust::nat {

struct discover_options {
  std::vector<udp_endpoint> observers;
  unsigned extra_sockets = 3;
  bool hairpin = true;
  bool filtering = true;
  // Per transaction: sends at 0, 0.2, 0.6 s, gives up at 1.4 s. Quicker
  // than RFC 8489's 39.5 s, since a silent step is an answer here too.
  stun::retransmission timing{std::chrono::milliseconds(200), 3, 4};
  // The hairpin request only goes as far as our own NAT and back: sends
  // at 0, 0.1, 0.3 s, gives up at 0.7 s (a silent NAT is the usual answer).
  stun::retransmission hairpin_timing{std::chrono::milliseconds(100), 3, 4};
};

// Never fails: what could not be learnt is `unknown`, with a note. Honours
// cancellation (returns what it had).
boost::asio::awaitable<nat_report> discover(std::shared_ptr<transport::udp_mux> mux,
                                            std::shared_ptr<stun_agent> agent,
                                            discover_options options);

}  // namespace crust::nat
