// Replays the cacophony vectors for every pattern our engine implements.
#include "crust/secure/noise.hpp"
#include "support/co_test.hpp"

#include <boost/json.hpp>

#include <fstream>
#include <map>
#include <sstream>

using namespace crust;
using namespace crust::secure;

namespace {

key32 key_of(const boost::json::value& v) {
  auto b = from_hex(std::string_view(v.as_string()));
  REQUIRE(b);
  REQUIRE(b->size() == 32);
  key32 k{};
  std::copy(b->begin(), b->end(), k.begin());
  return k;
}

bytes hex(const boost::json::value& v) {
  auto b = from_hex(std::string_view(v.as_string()));
  REQUIRE(b);
  return *b;
}

}  // namespace

TEST_CASE("noise: every cacophony vector of the implemented patterns replays exactly") {
  auto path = test::vectors_dir() / "cacophony.txt";
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "the Noise test vectors are missing: expected "
                                 << path << " (set CRUST_VECTORS to the vectors directory)");
  std::stringstream ss;
  ss << in.rdbuf();
  auto doc = boost::json::parse(ss.str());
  std::map<std::string, int> replayed;
  for (const auto& v : doc.at("vectors").as_array()) {
    const auto& o = v.as_object();
    auto* name_v = o.if_contains("protocol_name");
    if (!name_v) continue;
    std::string name(name_v->as_string());
    const std::string suffix = "_25519_ChaChaPoly_SHA256";
    if (name.rfind("Noise_", 0) != 0 || name.size() <= suffix.size() + 6 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    auto pat = noise::pattern_from_name(name.substr(6, name.size() - 6 - suffix.size()));
    if (!pat || o.contains("init_psks") || o.contains("fail")) continue;
    CAPTURE(name);

    auto make = [&](bool initiator) {
      noise::handshake_config c;
      c.pat = *pat;
      c.initiator = initiator;
      const char* side = initiator ? "init_" : "resp_";
      c.prologue = hex(o.at(std::string(side) + "prologue"));
      if (auto* s = o.if_contains(std::string(side) + "static"))
        c.s = x25519_keypair::from_private(key_of(*s));
      if (auto* rs = o.if_contains(std::string(side) + "remote_static")) c.rs = key_of(*rs);
      c.e = x25519_keypair::from_private(key_of(o.at(std::string(side) + "ephemeral")));
      auto hs = noise::handshake_state::create(std::move(c));
      REQUIRE(hs);
      return std::move(*hs);
    };
    auto init = make(true);
    auto resp = make(false);
    std::optional<noise::transport_keys> ik, rk;
    std::size_t i = 0;
    for (const auto& m : o.at("messages").as_array()) {
      CAPTURE(i);
      bytes payload = hex(m.at("payload"));
      bytes expected = hex(m.at("ciphertext"));
      const bool from_init = i % 2 == 0;
      if (!ik) {
        auto& w = from_init ? init : resp;
        auto& r = from_init ? resp : init;
        auto ct = w.write_message(payload);
        REQUIRE(ct);
        CHECK(to_hex(*ct) == to_hex(expected));
        auto pt = r.read_message(*ct);
        REQUIRE(pt);
        CHECK(*pt == payload);
        if (init.finished()) {
          REQUIRE(resp.finished());
          ik = init.split();
          rk = resp.split();
          CHECK(to_hex(ik->handshake_hash) == std::string(o.at("handshake_hash").as_string()));
          CHECK(ik->handshake_hash == rk->handshake_hash);
        }
      } else {
        auto& send = from_init ? ik->send : rk->send;
        auto& recv = from_init ? rk->receive : ik->receive;
        bytes ct;
        REQUIRE(send.encrypt_with_ad({}, payload, ct));
        CHECK(to_hex(ct) == to_hex(expected));
        bytes pt;
        REQUIRE(recv.decrypt_with_ad({}, ct, pt));
        CHECK(pt == payload);
      }
      ++i;
    }
    ++replayed[name];
  }
  MESSAGE("replayed " << replayed.size() << " protocols");
  CHECK(replayed["Noise_XK_25519_ChaChaPoly_SHA256"] > 0);
  CHECK(replayed["Noise_XX_25519_ChaChaPoly_SHA256"] > 0);
  CHECK(replayed.size() == 12);  // NN NK NX XN XK XX KN KK KX IN IK IX
}

TEST_CASE("noise: a tampered handshake message does not authenticate at any byte") {
  auto s_resp = x25519_keypair::generate();
  for (std::size_t pos = 0; pos < 48; ++pos) {
    CAPTURE(pos);
    auto init = noise::handshake_state::create(
        {noise::pattern::XK, true, {}, x25519_keypair::generate(), s_resp.pub, {}});
    auto resp = noise::handshake_state::create({noise::pattern::XK, false, {}, s_resp, {}, {}});
    REQUIRE(init);
    REQUIRE(resp);
    auto m1 = init->write_message(byte_span{});
    REQUIRE(m1);
    REQUIRE(m1->size() == 48);
    (*m1)[pos] ^= 0x01;
    CHECK_FALSE(resp->read_message(*m1));
  }
}

TEST_CASE("noise: rekey changes the key and both sides agree") {
  noise::cipher_state a, b;
  key32 k{};
  k[0] = 7;
  a.initialize_key(k);
  b.initialize_key(k);
  a.rekey();
  bytes ct, pt;
  REQUIRE(a.encrypt_with_ad({}, as_bytes("hello"), ct));
  CHECK_FALSE(b.decrypt_with_ad({}, ct, pt));  // b still has the old key
  b.rekey();
  b.set_nonce(0);
  REQUIRE(b.decrypt_with_ad({}, ct, pt));
  CHECK(pt == bytes{'h', 'e', 'l', 'l', 'o'});
}
