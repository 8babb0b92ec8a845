#include "bootstrap/beacon.hpp"

#include "support/test.hpp"

using namespace crust;
using namespace crust::bootstrap;
namespace ip = boost::asio::ip;

namespace {
const auto lan_host = ip::make_address("198.19.1.7");
}

TEST_CASE("beacon: a request of our network gets a signed contact only its asker can read") {
  auto me = identity::generate();
  beacon_query q("lab");
  auto req = q.request();
  CHECK(req.size() == beacon_request_size);
  CHECK(q.is_own_request(req));
  std::vector<advertised_endpoint> eps{{std::nullopt, 5483}, {ip::make_address("fd00::5"), 6000}};
  auto resp = beacon_answer(req, "lab", me, eps, 1700000000);
  REQUIRE(resp);
  CHECK(resp->size() <= req.size());
  auto c = q.accept(*resp, lan_host);
  REQUIRE(c);
  CHECK(c->key == me.public_key());
  CHECK(c->timestamp == 1700000000);
  REQUIRE(c->endpoints.size() == 2);
  CHECK(c->endpoints[0] == transport::tcp_endpoint(lan_host, 5483));  // "where it came from"
  CHECK(c->endpoints[1] == transport::tcp_endpoint(ip::make_address("fd00::5"), 6000));
  // Another asker cannot read it, and the answerer's own request is not an answer.
  beacon_query other("lab");
  CHECK_FALSE(other.accept(*resp, lan_host));
  CHECK_FALSE(other.is_own_request(req));
  CHECK_FALSE(q.accept(req, lan_host));
}

TEST_CASE("beacon: another network's request is not answered") {
  auto me = identity::generate();
  beacon_query q("elsewhere");
  CHECK_FALSE(beacon_answer(q.request(), "lab", me, {{std::nullopt, 1}}, 0));
}

TEST_CASE("beacon: every tampered byte of a response is rejected") {
  auto me = identity::generate();
  beacon_query q("lab");
  auto resp = beacon_answer(q.request(), "lab", me, {{std::nullopt, 5483}}, 42);
  REQUIRE(resp);
  for (std::size_t i = 0; i < resp->size(); ++i) {
    auto bad = *resp;
    bad[i] ^= 0x20;
    CAPTURE(i);
    CHECK_FALSE(q.accept(bad, lan_host));
  }
  for (std::size_t n = 0; n < resp->size(); ++n)
    CHECK_FALSE(q.accept(byte_span(*resp).first(n), lan_host));
}

TEST_CASE("beacon: never more bytes out than in") {
  auto me = identity::generate();
  beacon_query q("lab");
  auto req = q.request();
  // Eight IPv6 endpoints: the largest record still fits a full request...
  std::vector<advertised_endpoint> eps(8, {ip::make_address("2001:db8::1"), 9});
  auto full = beacon_answer(req, "lab", me, eps, 0);
  REQUIRE(full);
  CHECK(full->size() <= req.size());
  // ...but a request cut short gets no answer rather than a larger one.
  for (std::size_t n : {86, 100, 200, 300}) {
    auto small = beacon_answer(byte_span(req).first(n), "lab", me, eps, 0);
    CAPTURE(n);
    if (small) CHECK(small->size() <= n);
  }
  CHECK_FALSE(beacon_answer(byte_span(req).first(85), "lab", me, eps, 0));
  CHECK_FALSE(beacon_answer(byte_span(req).first(200), "lab", me, eps, 0));
}

TEST_CASE("beacon: garbage is ignored") {
  auto me = identity::generate();
  beacon_query q("lab");
  const std::vector<std::string> junk{"", "CRSD", "CRSD\x01\x01", "hello world",
                                      std::string(512, 'x')};
  for (const auto& j : junk) {
    CHECK_FALSE(beacon_answer(as_bytes(j), "lab", me, {{std::nullopt, 1}}, 0));
    CHECK_FALSE(q.accept(as_bytes(j), lan_host));
  }
}

TEST_CASE("beacon: replies are rate-limited per source and overall") {
  transport::rate_limiter rl(5, 10, 20, 3);
  const time_point t0 = time_point{} + seconds(1000);
  const auto a = ip::make_address("198.19.1.1"), b = ip::make_address("198.19.1.2");
  int allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += rl.allow(a, t0) ? 1 : 0;
  CHECK(allowed == 10);    // the burst
  CHECK(rl.allow(b, t0));  // another source has its own bucket
  // One second later: five more for a.
  allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += rl.allow(a, t0 + seconds(1)) ? 1 : 0;
  CHECK(allowed == 5);
  // The global bucket (20/s) caps many sources together.
  transport::rate_limiter g(5, 10, 20, 1000);
  allowed = 0;
  for (int i = 0; i < 100; ++i)
    allowed +=
        g.allow(ip::make_address_v4(static_cast<ip::address_v4::uint_type>(0xC6130000 + i)), t0)
            ? 1
            : 0;
  CHECK(allowed == 20);
}
