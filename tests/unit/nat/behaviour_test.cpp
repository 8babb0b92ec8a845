// NAT behaviour from observations (nat/behaviour.hpp): each RFC 4787 kind
// from the observations such a NAT would produce.
#include "nat/behaviour.hpp"

#include "support/nat_model.hpp"
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

// The classifier against tests/support/nat_model.hpp: discovery's steps
// played through a modelled NAT of every kind, and the report must name
// the kind the model was built as.
namespace {

struct played {
  nat_report report;
  std::size_t mappings = 0;
};

played play(const test::nat_model::config& c) {
  test::nat_model nat(c);
  const time_point t0{};
  const auto host = ip::make_address("198.19.1.2");
  const udp_endpoint mine(host, 40000);
  std::vector<observation> seen;
  for (const auto& o : {obs_a1, obs_a2, obs_b1, obs_b2})
    seen.push_back({0, mine, o, nat.outbound(mine, o, t0)});
  for (unsigned k = 1; k <= 3; ++k) {
    const udp_endpoint extra(host, static_cast<std::uint16_t>(40000 + k));
    seen.push_back({k, extra, obs_a1, nat.outbound(extra, obs_a1, t0)});
  }
  // Filtering from a fresh socket that has talked to A1 only: B2 answers
  // (other address and port), then A2 (other port).
  const udp_endpoint fresh(host, 40010);
  const auto ext = nat.outbound(fresh, obs_a1, t0);
  std::vector<filtering_probe> probes{{true, true, nat.inbound(obs_b2, ext, t0).has_value()},
                                      {false, true, nat.inbound(obs_a2, ext, t0).has_value()}};
  const bool hairpins = nat.hairpin(mine, seen.front().mapped, t0).has_value();
  return {classify(seen, probes, hairpins), nat.mappings()};
}

}  // namespace

TEST_CASE("nat behaviour: the report names the kind of every modelled NAT") {
  using M = test::nat_model::mapping;
  using F = test::nat_model::filtering;
  using A = test::nat_model::allocation;
  const std::pair<M, mapping_behaviour> maps[] = {
      {M::endpoint_independent, mapping_behaviour::endpoint_independent},
      {M::address_dependent, mapping_behaviour::address_dependent},
      {M::address_and_port_dependent, mapping_behaviour::address_and_port_dependent}};
  const std::pair<F, filtering_behaviour> filters[] = {
      {F::endpoint_independent, filtering_behaviour::endpoint_independent},
      {F::address_dependent, filtering_behaviour::address_dependent},
      {F::address_and_port_dependent, filtering_behaviour::address_and_port_dependent}};
  // No structured bindings: clang 14 cannot capture them in CAPTURE's lambda.
  for (const auto& mp : maps)
    for (const auto& fp : filters)
      for (auto a : {A::preserving, A::sequential, A::random})
        for (int step : {1, 2, 7})
          for (bool hp : {false, true}) {
            // Preservation under a dependent mapping cannot keep the port
            // for the second destination; real NATs then fall back to
            // something else, and so does the model: not a clean case.
            const M m = mp.first;
            const F f = fp.first;
            const auto want_m = mp.second;
            const auto want_f = fp.second;
            if (a == A::preserving && m != M::endpoint_independent) continue;
            if (a != A::sequential && step != 1) continue;
            test::nat_model::config c;
            c.map = m;
            c.filter = f;
            c.alloc = a;
            c.step = step;
            c.hairpin = hp;
            c.seed = static_cast<std::uint32_t>(step * 31 + hp);
            CAPTURE(static_cast<int>(m));
            CAPTURE(static_cast<int>(f));
            CAPTURE(static_cast<int>(a));
            CAPTURE(step);
            CAPTURE(hp);
            const auto r = play(c).report;
            CHECK(r.mapping == want_m);
            CHECK(r.filtering == want_f);
            CHECK(r.hairpinning == std::optional<bool>(hp));
            const auto want_a = a == A::preserving   ? allocation_behaviour::preserving
                                : a == A::sequential ? allocation_behaviour::sequential
                                                     : allocation_behaviour::random;
            CHECK(r.allocation == want_a);
            if (a == A::sequential) CHECK(r.port_step == step);
            CHECK(r.punchable() == (m == M::endpoint_independent || a == A::sequential));
          }
}

TEST_CASE("nat model: idle mappings expire; outbound traffic refreshes them, inbound does not") {
  test::nat_model::config c;
  c.alloc = test::nat_model::allocation::sequential;
  test::nat_model nat(c);
  const udp_endpoint me(ip::make_address("198.19.1.2"), 40000);
  const time_point t0{};
  const auto ext = nat.outbound(me, obs_a1, t0);
  CHECK(nat.inbound(obs_a1, ext, t0 + seconds(20)) == std::optional(me));
  CHECK_FALSE(nat.inbound(obs_b1, ext, t0 + seconds(20)));  // filtered (APDF)
  CHECK(nat.inbound(obs_a1, ext, t0 + seconds(29)) == std::optional(me));
  // Inbound did not refresh it: gone after 30 s of no outbound traffic.
  CHECK_FALSE(nat.inbound(obs_a1, ext, t0 + seconds(31)));
  // A new mapping gets the next port.
  const auto again = nat.outbound(me, obs_a1, t0 + seconds(32));
  CHECK(again.port() == ext.port() + 1);
  nat.outbound(me, obs_a1, t0 + seconds(55));  // a keepalive
  CHECK(nat.inbound(obs_a1, again, t0 + seconds(80)) == std::optional(me));
}
