// NAT behaviour (RFC 4787's terms, RFC 5780's tests), decided from what
// STUN observers saw, with no I/O. nat/discover.hpp gathers the
// observations; this file only reasons about them.
//
// - Mapping: one local socket asks several observers. The same external
//   endpoint for all: endpoint-independent. Different endpoints for
//   different observer addresses but the same for two ports of one address:
//   address-dependent. Different even between ports of one address:
//   address-and-port-dependent. With observers on different addresses only,
//   "dependent" cannot be split in two, and the report says so.
// - Port allocation: the external port equal to the local one for every
//   socket: preserving. Successive new mappings (fresh sockets, or one
//   socket to new observers under a dependent mapping) that step by a
//   constant: sequential, with that step (port prediction can use it).
//   Otherwise random.
// - Filtering, only where an observer can answer from another address or
//   port (RFC 5780's CHANGE-REQUEST, e.g. coturn): an answer from another
//   address gets in: endpoint-independent; only from another port of the
//   same address: address-dependent; neither: address-and-port-dependent.
// - Hairpinning: a request to our own external endpoint comes back to us.
#pragma once

#include "nat/stun.hpp"

#include <optional>
#include <string>
#include <vector>

namespace crust::nat {

using udp_endpoint = stun::udp_endpoint;

enum class mapping_behaviour {
  unknown,                     // no observer answered
  no_nat,                      // the observers see our own local endpoint
  endpoint_independent,        // one external endpoint for every destination
  address_dependent,           // one per destination address
  address_and_port_dependent,  // one per destination address and port
  dependent,                   // varies by destination; address vs port not tested
};

enum class allocation_behaviour { unknown, preserving, sequential, random };

enum class filtering_behaviour {
  unknown,  // no observer could answer from elsewhere
  endpoint_independent,
  address_dependent,
  address_and_port_dependent,
};

std::string_view to_string(mapping_behaviour m) noexcept;
std::string_view to_string(allocation_behaviour a) noexcept;
std::string_view to_string(filtering_behaviour f) noexcept;

// One answered Binding transaction.
struct observation {
  unsigned socket = 0;    // which local socket asked (0: the node's own)
  udp_endpoint local;     // that socket's local endpoint
  udp_endpoint observer;  // whom it asked
  udp_endpoint mapped;    // what the observer saw
};

// A filtering probe: an observer asked to answer from elsewhere.
struct filtering_probe {
  bool change_address = false, change_port = false;
  bool answered = false;
};

struct nat_report {
  mapping_behaviour mapping = mapping_behaviour::unknown;
  allocation_behaviour allocation = allocation_behaviour::unknown;
  int port_step = 0;  // for sequential allocation: the usual difference
  filtering_behaviour filtering = filtering_behaviour::unknown;
  std::optional<bool> hairpinning;
  std::vector<udp_endpoint> external;  // the node's socket's external endpoints, first seen first
  std::vector<observation> observations;
  std::vector<std::string> notes;  // what could not be decided, and why
  // Whether a peer's direct UDP punch can be expected to work against
  // this NAT: a mapping that does not depend on the destination, or one
  // whose ports can be predicted.
  bool punchable() const noexcept;
};

// Decides from what was seen. `hairpin` and `filtering` are the results of
// those probes, if any were made.
nat_report classify(std::vector<observation> seen, const std::vector<filtering_probe>& filtering,
                    std::optional<bool> hairpin);

}  // namespace crust::nat
