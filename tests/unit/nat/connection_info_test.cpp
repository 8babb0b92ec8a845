// Connection info: both forms round-trip, every alteration is refused with
// the right reason, the bounds hold, and both sides derive the same punch
// secret.
#include "nat/connection_info.hpp"

#include "support/test.hpp"

#include <boost/json.hpp>

using namespace crust;
using namespace crust::nat;
namespace ip = boost::asio::ip;

namespace {

constexpr std::int64_t t0 = 1'800'000'000;

candidate cand(candidate_transport t, candidate_kind k, const char* addr, std::uint16_t port) {
  return {t, k, ip::make_address(addr), port};
}

std::vector<candidate> some_candidates() {
  return {cand(candidate_transport::udp, candidate_kind::host, "198.18.1.2", 40000),
          cand(candidate_transport::tcp, candidate_kind::host, "198.18.1.2", 40001),
          cand(candidate_transport::udp, candidate_kind::reflexive, "198.19.0.1", 61000),
          cand(candidate_transport::udp, candidate_kind::mapped, "2001:db8::7", 5483)};
}

nat_hint cone() {
  return {mapping_behaviour::endpoint_independent, allocation_behaviour::sequential, -3,
          filtering_behaviour::address_and_port_dependent, true};
}

const identity& alice() {
  static const identity id = identity::from_secrets(secure::key32{1}, secure::key32{2});
  return id;
}

errc code_of(const info_error& e) {
  return static_cast<errc>(e.code.value());
}

}  // namespace

TEST_CASE("connection info: binary and JSON forms carry every field") {
  const auto mine =
      private_connection_info::prepare(alice(), "crust", some_candidates(), cone(), t0, 900);
  const auto& pub = mine.pub();
  CHECK(pub.key == alice().public_key());
  CHECK(pub.created == t0);
  CHECK(pub.lifetime == 900);
  const auto wire = pub.encode();
  // Fixed part 144 bytes, 3 IPv4 candidates of 9 and one IPv6 of 21, signature 64.
  CHECK(wire.size() == 144 + 3 * 9 + 21 + 64);
  CHECK(std::string(wire.begin(), wire.begin() + 4) == "CRCI");
  CHECK(wire[4] == 1);

  for (const auto& got : {connection_info::decode(wire, "crust", t0 + 10),
                          connection_info::from_json(pub.to_json(), "crust", t0 + 10)}) {
    REQUIRE_MESSAGE(got, (got ? "" : got.error().message));
    CHECK(got->key == pub.key);
    CHECK(got->punch_key == pub.punch_key);
    CHECK(got->nonce == pub.nonce);
    CHECK(got->created == t0);
    CHECK(got->lifetime == 900);
    CHECK(got->nat == cone());
    CHECK(got->candidates == some_candidates());
    CHECK(got->encode() == wire);
  }
}

TEST_CASE("connection info: every NAT description survives both forms") {
  for (int m = 0; m <= static_cast<int>(mapping_behaviour::dependent); ++m)
    for (int a = 0; a <= static_cast<int>(allocation_behaviour::random); ++a)
      for (int f = 0; f <= static_cast<int>(filtering_behaviour::address_and_port_dependent); ++f)
        for (const std::optional<bool> hp :
             {std::optional<bool>{}, std::optional<bool>{true}, std::optional<bool>{false}}) {
          const nat_hint h{static_cast<mapping_behaviour>(m), static_cast<allocation_behaviour>(a),
                           m * 1000 - 2500, static_cast<filtering_behaviour>(f), hp};
          const auto p = private_connection_info::prepare(alice(), "n", some_candidates(), h, t0);
          auto bin = connection_info::decode(p.pub().encode(), "n", t0);
          auto js = connection_info::from_json(p.pub().to_json(), "n", t0);
          REQUIRE(bin);
          REQUIRE(js);
          CHECK(bin->nat == h);
          CHECK(js->nat == h);
        }
}

TEST_CASE("connection info: prepare keeps order, drops duplicates and unusable endpoints") {
  auto cs = some_candidates();
  cs.push_back(cs[0]);  // duplicate
  cs.push_back(cand(candidate_transport::udp, candidate_kind::host, "0.0.0.0", 1));
  cs.push_back(cand(candidate_transport::udp, candidate_kind::host, "198.18.1.9", 0));
  cs.push_back(cand(candidate_transport::udp, candidate_kind::host, "224.0.0.1", 9));
  cs.push_back(cand(candidate_transport::tcp, candidate_kind::host, "::ffff:198.18.1.2", 40001));
  const auto p = private_connection_info::prepare(alice(), "crust", cs, {}, t0);
  CHECK(p.pub().candidates == some_candidates());

  std::vector<candidate> many;
  for (std::uint16_t i = 1; i <= 40; ++i)
    many.push_back(cand(candidate_transport::udp, candidate_kind::host, "198.18.0.1", i));
  const auto q = private_connection_info::prepare(alice(), "crust", many, {}, t0);
  CHECK(q.pub().candidates.size() == max_candidates);
  CHECK(q.pub().candidates.back().port == max_candidates);
  CHECK(connection_info::decode(q.pub().encode(), "crust", t0));
}

TEST_CASE("connection info: another network is named as such") {
  const auto p = private_connection_info::prepare(alice(), "crust", some_candidates(), {}, t0);
  auto r = connection_info::decode(p.pub().encode(), "other", t0);
  REQUIRE(!r);
  CHECK(code_of(r.error()) == errc::wrong_network);
  CHECK(r.error().message.find("\"other\"") != std::string::npos);
  auto j = connection_info::from_json(p.pub().to_json(), "other", t0);
  REQUIRE(!j);
  CHECK(code_of(j.error()) == errc::wrong_network);
}

TEST_CASE("connection info: time bounds, with clock skew allowed") {
  const auto p = private_connection_info::prepare(alice(), "crust", some_candidates(), {}, t0, 600);
  const auto w = p.pub().encode();
  CHECK(connection_info::decode(w, "crust", t0 - info_clock_skew));  // their clock is behind
  CHECK(connection_info::decode(w, "crust", t0 + 600 + info_clock_skew));
  for (const std::int64_t now :
       {t0 - info_clock_skew - 1, t0 + 600 + info_clock_skew + 1, std::int64_t{0},
        std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min()}) {
    CAPTURE(now);
    auto r = connection_info::decode(w, "crust", now);
    REQUIRE(!r);
    CHECK(code_of(r.error()) == errc::expired);
  }
  // Lifetimes are clamped by prepare and bounded on decode.
  CHECK(private_connection_info::prepare(alice(), "crust", some_candidates(), {}, t0, 0)
            .pub()
            .lifetime == 1);
  CHECK(private_connection_info::prepare(alice(), "crust", some_candidates(), {}, t0, 1u << 31)
            .pub()
            .lifetime == info_max_lifetime);
}

TEST_CASE("connection info: every flipped bit and every truncation is refused") {
  const auto p = private_connection_info::prepare(alice(), "crust", some_candidates(), cone(), t0);
  const auto w = p.pub().encode();
  std::size_t refused = 0;
  for (std::size_t i = 0; i < w.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      auto t = w;
      t[i] ^= static_cast<byte>(1u << bit);
      if (!connection_info::decode(t, "crust", t0)) ++refused;
    }
  CHECK(refused == w.size() * 8);
  for (std::size_t n = 0; n < w.size(); ++n)
    CHECK(!connection_info::decode(byte_span(w).first(n), "crust", t0));
  auto longer = w;
  longer.push_back(0);
  auto r = connection_info::decode(longer, "crust", t0);
  REQUIRE(!r);
  CHECK(code_of(r.error()) == errc::malformed);
}

TEST_CASE("connection info: the signature binds the Noise key and the candidates") {
  auto p = private_connection_info::prepare(alice(), "crust", some_candidates(), {}, t0);
  auto forged = p.pub();
  forged.key.noise_static[0] ^= 1;  // a man in the middle's own Noise key
  auto r = connection_info::decode(forged.encode(), "crust", t0);
  REQUIRE(!r);
  CHECK(code_of(r.error()) == errc::bad_signature);

  forged = p.pub();
  forged.candidates[2].port = 1;  // redirect a candidate
  r = connection_info::decode(forged.encode(), "crust", t0);
  REQUIRE(!r);
  CHECK(code_of(r.error()) == errc::bad_signature);

  // Another identity cannot sign for alice.
  const auto mallory = identity::from_secrets(secure::key32{3}, secure::key32{4});
  auto m = private_connection_info::prepare(mallory, "crust", some_candidates(), {}, t0).pub();
  m.key = alice().public_key();
  r = connection_info::decode(m.encode(), "crust", t0);
  REQUIRE(!r);
  CHECK(code_of(r.error()) == errc::bad_signature);
}

TEST_CASE("connection info: layout errors are malformed, before any signature check") {
  auto c = private_connection_info::prepare(alice(), "crust", some_candidates(), {}, t0).pub();
  auto with = [&](auto change) {
    auto x = c;
    change(x);
    auto r = connection_info::decode(x.encode(), "crust", t0);
    REQUIRE(!r);
    CHECK(code_of(r.error()) == errc::malformed);
    return r.error().message;
  };
  CHECK(with([](connection_info& x) { x.candidates.clear(); }).find("0 candidates") !=
        std::string::npos);
  CHECK(with([](connection_info& x) {
          x.candidates.resize(17, x.candidates[0]);
        }).find("17 candidates") != std::string::npos);
  CHECK(with([](connection_info& x) {
          x.candidates.push_back(x.candidates[0]);
        }).find("duplicate") != std::string::npos);
  CHECK(with([](connection_info& x) { x.candidates[1].port = 0; }).find("candidate 2") !=
        std::string::npos);
  CHECK(with([](connection_info& x) { x.lifetime = 0; }).find("lifetime") != std::string::npos);
  CHECK(with([](connection_info& x) {
          x.nat.mapping = static_cast<mapping_behaviour>(6);
        }).find("NAT") != std::string::npos);
  CHECK(!connection_info::decode(as_bytes("garbage"), "crust", t0));
}

TEST_CASE("connection info: JSON errors name the field") {
  const auto p = private_connection_info::prepare(alice(), "crust", some_candidates(), cone(), t0);
  const auto good = boost::json::parse(p.pub().to_json()).as_object();
  auto with = [&](auto change) {
    auto o = good;
    change(o);
    auto r = connection_info::from_json(boost::json::serialize(o), "crust", t0);
    REQUIRE(!r);
    return r.error();
  };
  auto e = with([](boost::json::object& o) { o["colour"] = "blue"; });
  CHECK(e.message.find("\"colour\"") != std::string::npos);
  e = with([](boost::json::object& o) { o["nonce"] = "abc"; });
  CHECK(e.message.find("\"nonce\"") != std::string::npos);
  e = with([](boost::json::object& o) { o["lifetime"] = 0; });
  CHECK(e.message.find("\"lifetime\"") != std::string::npos);
  e = with([](boost::json::object& o) { o["nat"].as_object()["mapping"] = "round"; });
  CHECK(e.message.find("\"nat\"") != std::string::npos);
  e = with([](boost::json::object& o) {
    o["candidates"].as_array()[0].as_object()["endpoint"] = "nowhere";
  });
  CHECK(e.message.find("\"candidates\"") != std::string::npos);
  e = with([](boost::json::object& o) { o.erase("signature"); });
  CHECK(e.message.find("\"signature\"") != std::string::npos);
  e = with([](boost::json::object& o) {
    o["candidates"].as_array()[0].as_object()["endpoint"] = "198.18.1.2:40002";
  });
  CHECK(code_of(e) == errc::bad_signature);
  CHECK(code_of(with([](boost::json::object& o) { o["format"] = "x"; })) == errc::malformed);
  CHECK(!connection_info::from_json("{", "crust", t0));
  CHECK(!connection_info::from_json("[]", "crust", t0));
}

TEST_CASE("connection info: both sides derive one punch secret, unique to the pair") {
  const auto bob_id = identity::from_secrets(secure::key32{5}, secure::key32{6});
  const auto a = private_connection_info::prepare(alice(), "crust", some_candidates(), {}, t0);
  const auto b = private_connection_info::prepare(bob_id, "crust", some_candidates(), {}, t0);
  const auto a2 = private_connection_info::prepare(alice(), "crust", some_candidates(), {}, t0);
  auto ab = a.punch_secret(b.pub());
  auto ba = b.punch_secret(a.pub());
  REQUIRE(ab);
  REQUIRE(ba);
  CHECK(*ab == *ba);
  auto a2b = a2.punch_secret(b.pub());
  REQUIRE(a2b);
  CHECK(*a2b != *ab);  // a fresh info of the same node gives another secret
  CHECK(a.pub().punch_key != a2.pub().punch_key);
  CHECK(a.pub().nonce != a2.pub().nonce);
  // A low-order punch key is refused, not turned into an all-zero secret.
  auto evil = b.pub();
  evil.punch_key = secure::key32{};
  CHECK(!a.punch_secret(evil));
}
