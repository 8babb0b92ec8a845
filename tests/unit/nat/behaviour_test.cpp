// NAT behaviour from observations (nat/behaviour.hpp): each RFC 4787 kind
// from the observations such a NAT would produce.
#include "nat/behaviour.hpp"

#include "support/test.hpp"

using namespace crust;
using namespace crust::nat;
namespace ip = boost::asio::ip;

namespace {

udp_endpoint ep(const char* a, std::uint16_t p) {
  return {ip::make_address(a), p};
}

const auto local = ep("198.19.1.2", 40000);
const auto obs_a1 = ep("198.18.0.1", 3478), obs_a2 = ep("198.18.0.1", 3479),
           obs_b1 = ep("198.18.0.2", 3478), obs_b2 = ep("198.18.0.2", 3479);

}  // namespace

TEST_CASE("nat behaviour: nothing answered, or one observer only") {
  auto none = classify({}, {}, std::nullopt);
  CHECK(none.mapping == mapping_behaviour::unknown);
  CHECK(none.allocation == allocation_behaviour::unknown);
  CHECK(none.filtering == filtering_behaviour::unknown);
  CHECK_FALSE(none.punchable());
  CHECK_FALSE(none.notes.empty());

  auto one = classify({{0, local, obs_a1, ep("198.18.0.11", 40000)}}, {}, std::nullopt);
  CHECK(one.mapping == mapping_behaviour::unknown);
  CHECK(one.external == std::vector<udp_endpoint>{ep("198.18.0.11", 40000)});
}

TEST_CASE("nat behaviour: no NAT, and an endpoint-independent port-preserving cone") {
  auto open = classify({{0, local, obs_a1, local}, {0, local, obs_b1, local}}, {}, true);
  CHECK(open.mapping == mapping_behaviour::no_nat);
  CHECK(open.allocation == allocation_behaviour::preserving);
  CHECK(open.hairpinning == std::optional<bool>(true));
  CHECK(open.punchable());

  const auto wan = ep("198.18.0.11", 40000);
  std::vector<observation> seen{{0, local, obs_a1, wan},
                                {0, local, obs_b1, wan},
                                {0, local, obs_b2, wan},
                                {1, ep("198.19.1.2", 40001), obs_a1, ep("198.18.0.11", 40001)},
                                {2, ep("198.19.1.2", 40002), obs_a1, ep("198.18.0.11", 40002)}};
  std::vector<filtering_probe> probes{{true, true, false}, {false, true, false}};
  auto cone = classify(seen, probes, false);
  CHECK(cone.mapping == mapping_behaviour::endpoint_independent);
  CHECK(cone.allocation == allocation_behaviour::preserving);
  CHECK(cone.filtering == filtering_behaviour::address_and_port_dependent);
  CHECK(cone.hairpinning == std::optional<bool>(false));
  CHECK(cone.external == std::vector<udp_endpoint>{wan});
  CHECK(cone.punchable());
}

TEST_CASE("nat behaviour: filtering from RFC 5780's two probes") {
  const auto wan = ep("198.18.0.11", 1);
  std::vector<observation> seen{{0, local, obs_a1, wan}, {0, local, obs_b1, wan}};
  CHECK(classify(seen, {{true, true, true}, {false, true, true}}, {}).filtering ==
        filtering_behaviour::endpoint_independent);
  CHECK(classify(seen, {{true, true, false}, {false, true, true}}, {}).filtering ==
        filtering_behaviour::address_dependent);
  CHECK(classify(seen, {{true, true, false}, {false, true, false}}, {}).filtering ==
        filtering_behaviour::address_and_port_dependent);
  // Only one probe made (the other server could not): not decided.
  CHECK(classify(seen, {{true, true, false}}, {}).filtering == filtering_behaviour::unknown);
}

TEST_CASE("nat behaviour: address-dependent against address-and-port-dependent mapping") {
  // A new mapping per address, kept across ports of one address.
  std::vector<observation> adm{{0, local, obs_a1, ep("198.18.0.11", 5000)},
                               {0, local, obs_a2, ep("198.18.0.11", 5000)},
                               {0, local, obs_b1, ep("198.18.0.11", 5001)},
                               {0, local, obs_b2, ep("198.18.0.11", 5001)}};
  CHECK(classify(adm, {}, {}).mapping == mapping_behaviour::address_dependent);
  // A new mapping per port too.
  std::vector<observation> apdm{{0, local, obs_a1, ep("198.18.0.11", 5000)},
                                {0, local, obs_b1, ep("198.18.0.11", 5001)},
                                {0, local, obs_b2, ep("198.18.0.11", 5002)}};
  auto r = classify(apdm, {}, {});
  CHECK(r.mapping == mapping_behaviour::address_and_port_dependent);
  // Three new mappings stepping by one: sequential, so still punchable
  // by port prediction.
  CHECK(r.allocation == allocation_behaviour::sequential);
  CHECK(r.port_step == 1);
  CHECK(r.punchable());
  CHECK(r.external.size() == 3);
  // Observers on different addresses only: dependent, not split.
  std::vector<observation> two{{0, local, obs_a1, ep("198.18.0.11", 5000)},
                               {0, local, obs_b1, ep("198.18.0.11", 5001)}};
  CHECK(classify(two, {}, {}).mapping == mapping_behaviour::dependent);
}

TEST_CASE("nat behaviour: sequential with a step, despite another host's mapping between") {
  std::vector<observation> seen;
  const std::uint16_t ports[] = {7000, 7002, 7004, 7009, 7011, 7013};  // one gap of 5
  for (unsigned k = 0; k < 6; ++k)
    seen.push_back({k, ep("198.19.1.2", static_cast<std::uint16_t>(40000 + k)), obs_a1,
                    ep("198.18.0.11", ports[k])});
  auto r = classify(seen, {}, {});
  CHECK(r.allocation == allocation_behaviour::sequential);
  CHECK(r.port_step == 2);
}

TEST_CASE("nat behaviour: random allocation under a symmetric NAT is not punchable") {
  std::vector<observation> seen{{0, local, obs_a1, ep("198.18.0.11", 31337)},
                                {0, local, obs_a2, ep("198.18.0.11", 9121)},
                                {0, local, obs_b1, ep("198.18.0.11", 50007)},
                                {1, ep("198.19.1.2", 40001), obs_a1, ep("198.18.0.11", 2222)}};
  auto r = classify(seen, {}, {});
  CHECK(r.mapping == mapping_behaviour::address_and_port_dependent);
  CHECK(r.allocation == allocation_behaviour::random);
  CHECK_FALSE(r.punchable());
}
