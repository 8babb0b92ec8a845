// What a beacon responder advertises, and the interface list it is built on.
#include "bootstrap/lan.hpp"

#include "support/test.hpp"

#include <algorithm>

using namespace crust;
using namespace crust::bootstrap;
namespace ip = boost::asio::ip;

namespace {
transport::tcp_endpoint at(const char* a, std::uint16_t port) {
  return {ip::make_address(a), port};
}
}  // namespace

TEST_CASE("lan: the beacon group is ff02::114, link-local multicast") {
  CHECK(beacon_multicast_group().to_string() == "ff02::114");
  CHECK(beacon_multicast_group().is_multicast_link_local());
}

TEST_CASE("lan: loopback is listed, with its IPv4 address") {
  auto all = lan_interfaces();
  auto lo = std::find_if(all.begin(), all.end(), [](const auto& i) { return i.loopback; });
  REQUIRE(lo != all.end());
  CHECK(lo->index != 0);
  CHECK(std::find(lo->addresses.begin(), lo->addresses.end(), ip::make_address("127.0.0.1")) !=
        lo->addresses.end());
}

TEST_CASE("lan: what a listener advertises to an asker") {
  const auto v4_asker = ip::make_address("198.19.1.3");
  const auto v6_asker = ip::make_address("fe80::3");
  SUBCASE("a specific address is advertised as it is") {
    auto eps = advertised_endpoints(at("198.19.1.1", 5483), v4_asker);
    REQUIRE(eps.size() == 1);
    CHECK(eps[0].address == ip::make_address("198.19.1.1"));
    CHECK(eps[0].port == 5483);
    CHECK(advertised_endpoints(at("198.19.1.1", 5483), v6_asker).size() == 1);
  }
  SUBCASE("a loopback listener answers only its own host") {
    CHECK(advertised_endpoints(at("127.0.0.1", 1), v4_asker).empty());
    CHECK(advertised_endpoints(at("127.0.0.1", 1), ip::make_address("127.0.0.1")).size() == 1);
    CHECK(advertised_endpoints(at("127.0.0.1", 1), ip::make_address("::1")).size() == 1);
  }
  SUBCASE("a dual-stack wildcard listener: wherever the answer came from") {
    for (const auto& asker : {v4_asker, v6_asker}) {
      auto eps = advertised_endpoints(at("::", 7), asker);
      REQUIRE(eps.size() == 1);
      CHECK_FALSE(eps[0].address);
      CHECK(eps[0].port == 7);
    }
  }
  SUBCASE("an IPv4 wildcard listener asked over IPv4: where the answer came from") {
    auto eps = advertised_endpoints(at("0.0.0.0", 7), v4_asker);
    REQUIRE(eps.size() == 1);
    CHECK_FALSE(eps[0].address);
    // An IPv4-mapped asker (a dual-stack socket's view) counts as IPv4.
    CHECK(advertised_endpoints(at("0.0.0.0", 7), ip::make_address("::ffff:198.19.1.3")).size() ==
          1);
  }
  SUBCASE("an IPv4 wildcard listener asked over IPv6: the IPv4 addresses of that interface") {
    auto eps = advertised_endpoints(at("0.0.0.0", 7), ip::make_address("::1"));
    REQUIRE(eps.size() == 1);
    CHECK(eps[0].address == ip::make_address("127.0.0.1"));
    // An interface that does not exist (scope 0 or unknown): nothing to say.
    CHECK(advertised_endpoints(at("0.0.0.0", 7), v6_asker).empty());
    auto unknown = ip::make_address_v6("fe80::3");
    unknown.scope_id(999999);
    CHECK(advertised_endpoints(at("0.0.0.0", 7), unknown).empty());
    // A real interface with IPv4 addresses, where this machine has one.
    for (const auto& li : lan_interfaces()) {
      if (li.loopback) continue;
      std::vector<ip::address> v4;
      for (const auto& a : li.addresses)
        if (a.is_v4()) v4.push_back(a);
      if (v4.empty()) continue;
      auto scoped = ip::make_address_v6("fe80::3");
      scoped.scope_id(li.index);
      auto got = advertised_endpoints(at("0.0.0.0", 7), scoped);
      CAPTURE(li.name);
      REQUIRE(got.size() == std::min(v4.size(), beacon_max_endpoints));
      CHECK(*got[0].address == v4[0]);
      break;
    }
  }
}
