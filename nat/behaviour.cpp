#include "nat/behaviour.hpp"

#include <algorithm>
#include <map>

namespace crust::nat {

std::string_view to_string(mapping_behaviour m) noexcept {
  switch (m) {
    case mapping_behaviour::unknown:
      return "unknown";
    case mapping_behaviour::no_nat:
      return "no NAT";
    case mapping_behaviour::endpoint_independent:
      return "endpoint-independent";
    case mapping_behaviour::address_dependent:
      return "address-dependent";
    case mapping_behaviour::address_and_port_dependent:
      return "address-and-port-dependent";
    case mapping_behaviour::dependent:
      return "destination-dependent";
  }
  return "unknown";
}

std::string_view to_string(allocation_behaviour a) noexcept {
  switch (a) {
    case allocation_behaviour::unknown:
      return "unknown";
    case allocation_behaviour::preserving:
      return "port-preserving";
    case allocation_behaviour::sequential:
      return "sequential";
    case allocation_behaviour::random:
      return "random";
  }
  return "unknown";
}

std::string_view to_string(filtering_behaviour f) noexcept {
  switch (f) {
    case filtering_behaviour::unknown:
      return "unknown";
    case filtering_behaviour::endpoint_independent:
      return "endpoint-independent";
    case filtering_behaviour::address_dependent:
      return "address-dependent";
    case filtering_behaviour::address_and_port_dependent:
      return "address-and-port-dependent";
  }
  return "unknown";
}

bool nat_report::punchable() const noexcept {
  switch (mapping) {
    case mapping_behaviour::no_nat:
    case mapping_behaviour::endpoint_independent:
      return true;
    case mapping_behaviour::address_dependent:
    case mapping_behaviour::address_and_port_dependent:
    case mapping_behaviour::dependent:
      return allocation == allocation_behaviour::sequential;
    case mapping_behaviour::unknown:
      return false;
  }
  return false;
}

namespace {

mapping_behaviour decide_mapping(const std::vector<const observation*>& main,
                                 std::vector<std::string>& notes) {
  if (main.empty()) {
    notes.emplace_back("no observer answered: nothing is known");
    return mapping_behaviour::unknown;
  }
  const bool all_local =
      std::all_of(main.begin(), main.end(), [](const auto* o) { return o->mapped == o->local; });
  if (all_local) return mapping_behaviour::no_nat;

  std::vector<udp_endpoint> observers;
  for (const auto* o : main)
    if (std::find(observers.begin(), observers.end(), o->observer) == observers.end())
      observers.push_back(o->observer);
  if (observers.size() < 2) {
    notes.emplace_back("one observer answered: the mapping's dependence is not tested");
    return mapping_behaviour::unknown;
  }
  const bool same = std::all_of(main.begin(), main.end(),
                                [&](const auto* o) { return o->mapped == main.front()->mapped; });
  if (same) return mapping_behaviour::endpoint_independent;

  // Pairs of observers on one address with different ports split the two
  // dependent kinds.
  bool port_pair = false, port_differs = false;
  for (std::size_t i = 0; i < main.size(); ++i)
    for (std::size_t j = i + 1; j < main.size(); ++j) {
      const auto &a = *main[i], &b = *main[j];
      if (a.observer.address() != b.observer.address() || a.observer.port() == b.observer.port())
        continue;
      port_pair = true;
      port_differs = port_differs || a.mapped != b.mapped;
    }
  if (!port_pair) {
    notes.emplace_back(
        "no two observers share an address: address- and port-dependence are not told apart");
    return mapping_behaviour::dependent;
  }
  return port_differs ? mapping_behaviour::address_and_port_dependent
                      : mapping_behaviour::address_dependent;
}

}  // namespace

nat_report classify(std::vector<observation> seen, const std::vector<filtering_probe>& filtering,
                    std::optional<bool> hairpin) {
  nat_report r;
  r.observations = std::move(seen);
  r.hairpinning = hairpin;
  std::vector<const observation*> main;
  for (const auto& o : r.observations) {
    if (o.socket != 0) continue;
    main.push_back(&o);
    if (std::find(r.external.begin(), r.external.end(), o.mapped) == r.external.end())
      r.external.push_back(o.mapped);
  }
  r.mapping = decide_mapping(main, r.notes);

  // New mappings in the order they were made: each socket's first answer,
  // and, under a dependent mapping, each new endpoint of the node's socket.
  std::vector<std::pair<std::uint16_t, std::uint16_t>> made;  // (local, external) ports
  std::map<unsigned, std::vector<udp_endpoint>> known;
  for (const auto& o : r.observations) {
    auto& k = known[o.socket];
    if (std::find(k.begin(), k.end(), o.mapped) != k.end()) continue;
    k.push_back(o.mapped);
    made.emplace_back(o.local.port(), o.mapped.port());
  }
  if (made.empty()) {
    r.allocation = allocation_behaviour::unknown;
  } else if (std::all_of(made.begin(), made.end(), [](auto& m) { return m.first == m.second; })) {
    r.allocation = allocation_behaviour::preserving;
  } else if (made.size() < 3) {
    r.allocation = allocation_behaviour::unknown;
    r.notes.emplace_back("fewer than 3 new mappings: port allocation is not decided");
  } else {
    std::map<int, std::size_t> steps;
    for (std::size_t i = 1; i < made.size(); ++i)
      ++steps[int{made[i].second} - int{made[i - 1].second}];
    const auto usual = std::max_element(steps.begin(), steps.end(),
                                        [](auto& a, auto& b) { return a.second < b.second; });
    const std::size_t deltas = made.size() - 1;
    // Another host's mapping may land between two of ours, so one delta in
    // three may differ.
    if (usual->first != 0 && usual->second * 3 >= deltas * 2) {
      r.allocation = allocation_behaviour::sequential;
      r.port_step = usual->first;
    } else {
      r.allocation = allocation_behaviour::random;
    }
  }

  const auto answered = [&](bool addr, bool port) {
    return std::any_of(filtering.begin(), filtering.end(), [&](const filtering_probe& p) {
      return p.change_address == addr && p.change_port == port && p.answered;
    });
  };
  const auto tried = [&](bool addr, bool port) {
    return std::any_of(filtering.begin(), filtering.end(), [&](const filtering_probe& p) {
      return p.change_address == addr && p.change_port == port;
    });
  };
  if (answered(true, true) || answered(true, false)) {
    r.filtering = filtering_behaviour::endpoint_independent;
  } else if (answered(false, true)) {
    r.filtering = filtering_behaviour::address_dependent;
  } else if ((tried(true, true) || tried(true, false)) && tried(false, true)) {
    r.filtering = filtering_behaviour::address_and_port_dependent;
  } else {
    r.filtering = filtering_behaviour::unknown;
    r.notes.emplace_back(
        "no observer could answer from another address and port (RFC 5780): filtering is not "
        "tested");
  }
  if (!hairpin) r.notes.emplace_back("hairpinning is not tested");
  return r;
}

}  // namespace crust::nat
