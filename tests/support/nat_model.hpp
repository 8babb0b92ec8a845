// A NAT as a model, for unit tests: RFC 4787's mapping and filtering
// behaviours, port allocation (preserving, sequential with a step, random),
// mapping timeouts and hairpinning, on whatever clock the test passes in.
// No sockets: a test asks what a datagram becomes on the way out and
// whether one gets in, so NAT-dependent logic runs in microseconds.
#pragma once

#include "crust/base/clock.hpp"

#include <boost/asio/ip/udp.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <tuple>

namespace crust::test {

class nat_model {
 public:
  using endpoint = boost::asio::ip::udp::endpoint;
  enum class mapping { endpoint_independent, address_dependent, address_and_port_dependent };
  enum class filtering { endpoint_independent, address_dependent, address_and_port_dependent };
  enum class allocation { preserving, sequential, random };

  struct config {
    mapping map = mapping::endpoint_independent;
    filtering filter = filtering::address_and_port_dependent;
    allocation alloc = allocation::preserving;
    int step = 1;                      // for sequential allocation
    std::uint16_t first_port = 20000;  // where sequential allocation starts
    boost::asio::ip::address external = boost::asio::ip::make_address("198.18.0.11");
    duration timeout =
        std::chrono::seconds(30);  // idle mapping lifetime (RFC 4787 REQ-5: >= 2 min in the wild)
    bool hairpin = false;
    std::uint32_t seed = 1;
  };

  explicit nat_model(config c) : c_(c), rng_(c.seed), next_(c.first_port) {}

  // A datagram from the inside endpoint `from` to `to`: the source it
  // leaves with. Creates the mapping, or refreshes it (outbound refresh).
  endpoint outbound(const endpoint& from, const endpoint& to, time_point now) {
    expire(now);
    const key k{from, dest_key(to)};
    auto it = maps_.find(k);
    if (it == maps_.end()) it = maps_.emplace(k, entry{allocate(from.port()), now, {}}).first;
    it->second.last = now;
    it->second.contacted.insert(to);
    return {c_.external, it->second.port};
  }

  // A datagram from `from` to the external endpoint `to`: the inside
  // endpoint it is delivered to, or nullopt (no mapping, expired, or
  // filtered). Inbound traffic does not refresh a mapping.
  std::optional<endpoint> inbound(const endpoint& from, const endpoint& to, time_point now) {
    expire(now);
    if (to.address() != c_.external) return std::nullopt;
    for (const auto& [k, e] : maps_) {
      if (e.port != to.port()) continue;
      if (allowed(e, from)) return std::get<0>(k);
    }
    return std::nullopt;
  }

  // A datagram from inside to the NAT's own external endpoint `to`: where
  // it ends up with hairpinning on (the mapping's owner, seeing the
  // sender's external endpoint, RFC 4787 REQ-9), or nullopt. Hairpinned
  // traffic is not filtered: the NAT knows it comes from inside.
  std::optional<std::pair<endpoint, endpoint>> hairpin(const endpoint& from, const endpoint& to,
                                                       time_point now) {
    if (!c_.hairpin || to.address() != c_.external) return std::nullopt;
    const auto src = outbound(from, to, now);
    for (const auto& [k, e] : maps_)
      if (e.port == to.port()) return std::pair{std::get<0>(k), src};
    return std::nullopt;
  }

  std::size_t mappings() const noexcept { return maps_.size(); }
  const boost::asio::ip::address& external() const noexcept { return c_.external; }

 private:
  // What the mapping depends on, besides the inside endpoint.
  using dest = std::tuple<int, boost::asio::ip::address, std::uint16_t>;
  using key = std::pair<endpoint, dest>;
  struct entry {
    std::uint16_t port = 0;
    time_point last{};
    std::set<endpoint> contacted;
  };

  dest dest_key(const endpoint& to) const {
    switch (c_.map) {
      case mapping::endpoint_independent:
        return {0, {}, 0};
      case mapping::address_dependent:
        return {1, to.address(), 0};
      case mapping::address_and_port_dependent:
        return {2, to.address(), to.port()};
    }
    return {0, {}, 0};
  }

  bool in_use(std::uint16_t p) const {
    for (const auto& [k, e] : maps_)
      if (e.port == p) return true;
    return false;
  }

  std::uint16_t allocate(std::uint16_t inside) {
    if (c_.alloc == allocation::preserving && !in_use(inside)) return inside;
    for (int tries = 0; tries < 65536; ++tries) {
      std::uint16_t p = 0;
      if (c_.alloc == allocation::random) {
        p = static_cast<std::uint16_t>(std::uniform_int_distribution<int>(1024, 65535)(rng_));
      } else {
        p = next_;
        next_ = static_cast<std::uint16_t>(next_ + c_.step);
      }
      if (p >= 1024 && !in_use(p)) return p;
    }
    return 0;
  }

  bool allowed(const entry& e, const endpoint& from) const {
    switch (c_.filter) {
      case filtering::endpoint_independent:
        return true;
      case filtering::address_dependent:
        for (const auto& c : e.contacted)
          if (c.address() == from.address()) return true;
        return false;
      case filtering::address_and_port_dependent:
        return e.contacted.count(from) != 0;
    }
    return false;
  }

  void expire(time_point now) {
    for (auto it = maps_.begin(); it != maps_.end();)
      it = now - it->second.last > c_.timeout ? maps_.erase(it) : std::next(it);
  }

  config c_;
  std::mt19937 rng_;
  std::uint16_t next_;
  std::map<key, entry> maps_;
};

}  // namespace crust::test
