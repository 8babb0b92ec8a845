#include "crust/secure/handshake.hpp"

#include "support/test.hpp"

using namespace crust;
using namespace crust::secure;

namespace {

struct outcome {
  result<handshake_result> init = make_error_code(errc::protocol_violation);
  result<handshake_result> resp = make_error_code(errc::protocol_violation);
  error_code failed;  // the first error either side reported
};

// Runs both state machines against each other in memory; `tamper` may edit
// each message in flight (index, bytes).
outcome exchange(handshake a, handshake b, const std::function<void(int, bytes&)>& tamper = {}) {
  outcome out;
  auto sa = a.start();
  auto sb = b.start();
  REQUIRE(sa);
  REQUIRE(sb);
  handshake* side[2] = {&a, &b};
  std::size_t expect[2] = {sa->expect, sb->expect};
  bytes pending = sa->send;
  int to = 1;
  for (int index = 0; !pending.empty(); ++index) {
    if (tamper) tamper(index, pending);
    if (pending.size() != expect[to]) {
      out.failed = make_error_code(errc::handshake_failed);
      return out;
    }
    auto next = side[to]->receive(pending);
    if (!next) {
      out.failed = next.error();
      return out;
    }
    expect[to] = next->expect;
    pending = next->send;
    to = 1 - to;
  }
  out.init = a.finish();
  out.resp = b.finish();
  return out;
}

}  // namespace

TEST_CASE("handshake: XK authenticates both ids and yields matching keys") {
  auto alice = identity::generate();
  auto bob = identity::generate();
  auto o = exchange(handshake::initiator(alice, "net", bob.public_key()),
                    handshake::responder(bob, "net", true));
  REQUIRE_MESSAGE(!o.failed, o.failed.message());
  REQUIRE(o.init);
  REQUIRE(o.resp);
  CHECK(o.init->remote == bob.public_key());
  CHECK(o.resp->remote == alice.public_key());
  CHECK_FALSE(o.init->address_only);
  CHECK(o.init->keys.handshake_hash == o.resp->keys.handshake_hash);
  bytes ct, pt;
  REQUIRE(o.init->keys.send.encrypt_with_ad({}, as_bytes("hi"), ct));
  REQUIRE(o.resp->keys.receive.decrypt_with_ad({}, ct, pt));
  CHECK(pt.size() == 2);
}

TEST_CASE("handshake: address-only dials use XX and learn the responder's key") {
  auto alice = identity::generate();
  auto bob = identity::generate();
  auto o = exchange(handshake::initiator(alice, "net", std::nullopt),
                    handshake::responder(bob, "net", true));
  REQUIRE_MESSAGE(!o.failed, o.failed.message());
  REQUIRE(o.init);
  CHECK(o.init->address_only);
  CHECK(o.resp->address_only);
  CHECK(o.init->remote == bob.public_key());
  CHECK(o.resp->remote == alice.public_key());
}

TEST_CASE("handshake: a responder that refuses address-only dials rejects XX") {
  auto alice = identity::generate();
  auto bob = identity::generate();
  auto o = exchange(handshake::initiator(alice, "net", std::nullopt),
                    handshake::responder(bob, "net", false));
  CHECK(o.failed == errc::handshake_failed);
}

TEST_CASE("handshake: another network name fails on both patterns") {
  auto alice = identity::generate();
  auto bob = identity::generate();
  auto xk = exchange(handshake::initiator(alice, "net-a", bob.public_key()),
                     handshake::responder(bob, "net-b", false));
  CHECK(xk.failed == errc::handshake_failed);
  auto xx = exchange(handshake::initiator(alice, "net-a", std::nullopt),
                     handshake::responder(bob, "net-b", true));
  CHECK(xx.failed == errc::handshake_failed);
}

TEST_CASE("handshake: another protocol version fails") {
  CHECK(make_prologue("net", 1) != make_prologue("net", 2));
  CHECK(make_prologue("a", 1) != make_prologue("b", 1));
}

TEST_CASE("handshake: dialling the right address with the wrong key fails") {
  auto alice = identity::generate();
  auto bob = identity::generate();
  auto mallory = identity::generate();
  // The static key is Bob's but the id we expect is Mallory's.
  peer_key wrong{mallory.id(), bob.public_key().noise_static};
  auto o =
      exchange(handshake::initiator(alice, "net", wrong), handshake::responder(bob, "net", true));
  CHECK(o.failed == errc::wrong_peer_key);
  // A static key that is not Bob's: the first message does not authenticate.
  auto o2 = exchange(handshake::initiator(alice, "net", mallory.public_key()),
                     handshake::responder(bob, "net", false));
  CHECK(o2.failed == errc::handshake_failed);
}

TEST_CASE("handshake: flipping any bit of any message fails the handshake") {
  auto alice = identity::generate();
  auto bob = identity::generate();
  for (int msg = 0; msg < 3; ++msg) {
    std::size_t size = msg == 0 ? 48 : msg == 1 ? 144 : 160;
    for (std::size_t pos = 0; pos < size; pos += 7) {
      CAPTURE(msg);
      CAPTURE(pos);
      auto o = exchange(handshake::initiator(alice, "net", bob.public_key()),
                        handshake::responder(bob, "net", false), [&](int i, bytes& m) {
                          if (i == msg) m[pos] ^= 0x20;
                        });
      CHECK(o.failed);
    }
  }
}

TEST_CASE("handshake: what the responder spends before the initiator is authenticated") {
  auto bob = identity::generate();
  // The X25519 operations receive() spends on a first message; an empty
  // `m` stands for random bytes of the right size (anyone can send those).
  auto cost = [](handshake&& r, bytes m, bool& answered) {
    auto first = r.start();
    REQUIRE(first);
    if (m.empty()) {
      m.resize(first->expect);
      random_fill(m);
    }
    const auto before = x25519_operations();
    auto s = r.receive(m);
    answered = s.has_value();
    return x25519_operations() - before;
  };
  const bytes forged;
  bool answered = true;
  SUBCASE("XK only: one DH (es), and no answer") {
    CHECK(cost(handshake::responder(bob, "net", false), forged, answered) == 1);
    CHECK_FALSE(answered);
  }
  SUBCASE("XX accepted, but the gate says no (a flood): still one DH") {
    auto r = handshake::responder(bob, "net", true);
    int asked = 0;
    r.set_address_only_gate([&] {
      ++asked;
      return false;
    });
    CHECK(cost(std::move(r), forged, answered) == 1);
    CHECK_FALSE(answered);
    CHECK(asked == 1);
  }
  SUBCASE("XX answered: es, then our ephemeral key, ee and es of XX") {
    CHECK(cost(handshake::responder(bob, "net", true), forged, answered) == 4);
    CHECK(answered);
  }
  SUBCASE("a real XK first message: es, our ephemeral key and ee; the gate is not asked") {
    auto alice = identity::generate();
    auto i = handshake::initiator(alice, "net", bob.public_key());
    auto first = i.start();
    REQUIRE(first);
    auto r = handshake::responder(bob, "net", true);
    bool asked = false;
    r.set_address_only_gate([&] {
      asked = true;
      return false;
    });
    CHECK(cost(std::move(r), first->send, answered) == 3);
    CHECK(answered);
    CHECK_FALSE(asked);
  }
}
