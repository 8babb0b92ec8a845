// STUN codec against RFC 5769's vectors (read from ../shared/vectors at test
// time), the server's answers and the retransmission schedule.
#include "nat/stun.hpp"
#include "nat/stun_server.hpp"
#include "nat/stun_transaction.hpp"

#include "support/co_test.hpp"
#include "support/test.hpp"

#include <fstream>
#include <map>
#include <sstream>

using namespace crust;
using namespace crust::nat::stun;
namespace ip = boost::asio::ip;

namespace {

// "2.1 <hex>" lines of rfc5769.txt, by section.
std::map<std::string, bytes> load_vectors() {
  const auto path = test::vectors_dir() / "rfc5769.txt";
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "missing STUN vectors: " << path.string());
  std::map<std::string, bytes> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string name, hex;
    ls >> name >> hex;
    auto b = from_hex(hex);
    REQUIRE_MESSAGE(b, "bad hex in " << name);
    out[name] = *b;
  }
  REQUIRE(out.size() == 4);
  return out;
}

const std::string short_term_password = "VOkJxbRl1RmTxUk/WvJxBt";

transaction_id id_of(std::string_view hex) {
  transaction_id id{};
  auto b = from_hex(hex);
  REQUIRE(b);
  REQUIRE(b->size() == 12);
  std::copy(b->begin(), b->end(), id.begin());
  return id;
}

message parsed(byte_span d) {
  auto m = message::parse(d);
  REQUIRE_MESSAGE(m, "parse failed: " << m.error().message());
  return *m;
}

const udp_endpoint client4(ip::make_address("198.18.0.9"), 40000);
const udp_endpoint client6(ip::make_address("2001:db8::9"), 40001);

}  // namespace

TEST_CASE("stun: RFC 5769 2.1 sample request, short-term credentials") {
  auto v = load_vectors();
  auto m = parsed(v["2.1"]);
  CHECK(m.cls() == msg_class::request);
  CHECK(m.method() == binding);
  CHECK(m.id() == id_of("b7e7a701bc34d686fa87dfae"));
  CHECK(m.text(attr::software) == std::optional<std::string>("STUN test client"));
  CHECK(m.text(attr::username) == std::optional<std::string>("evtj:h6vY"));
  CHECK(m.has_fingerprint());
  CHECK(m.check_integrity(as_bytes(short_term_password)));
  CHECK_FALSE(m.check_integrity(as_bytes("VOkJxbRl1RmTxUk/WvJxBu")));
  CHECK_FALSE(m.check_integrity_sha256(as_bytes(short_term_password)));  // not present
  auto prio = m.find(attr::priority);
  REQUIRE(prio);
  CHECK(get_u32(prio->data()) == 0x6e0001ffu);
}

TEST_CASE("stun: RFC 5769 2.2 and 2.3 sample responses (IPv4, IPv6)") {
  auto v = load_vectors();
  auto m4 = parsed(v["2.2"]);
  CHECK(m4.cls() == msg_class::success);
  CHECK(m4.mapped() == udp_endpoint(ip::make_address("192.0.2.1"), 32853));
  CHECK(m4.text(attr::software) == std::optional<std::string>("test vector"));
  CHECK(m4.check_integrity(as_bytes(short_term_password)));
  CHECK(m4.has_fingerprint());

  auto m6 = parsed(v["2.3"]);
  CHECK(m6.mapped() ==
        udp_endpoint(ip::make_address("2001:db8:1234:5678:11:2233:4455:6677"), 32853));
  CHECK(m6.check_integrity(as_bytes(short_term_password)));

  // Our encoder writes the same XOR-MAPPED-ADDRESS bytes as the vectors.
  for (const auto* name : {"2.2", "2.3"}) {
    auto m = parsed(v[name]);
    builder b(msg_class::success, binding, m.id());
    b.add_address(attr::xor_mapped_address, *m.mapped());
    auto ours = parsed(std::move(b).finish());
    auto theirs = m.find(attr::xor_mapped_address);
    auto mine = ours.find(attr::xor_mapped_address);
    REQUIRE(theirs);
    REQUIRE(mine);
    CHECK(to_hex(*theirs) == to_hex(*mine));
  }
}

TEST_CASE("stun: RFC 5769 2.4 long-term credentials") {
  auto v = load_vectors();
  auto m = parsed(v["2.4"]);
  CHECK(m.id() == id_of("78ad3433c6ad72c029da412e"));
  CHECK(m.text(attr::realm) == std::optional<std::string>("example.org"));
  CHECK(m.text(attr::nonce) == std::optional<std::string>("f//499k954d6OL34oL9FSTvy64sA"));
  CHECK_FALSE(m.has_fingerprint());
  const std::string user =
      "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf\xe3\x82\xb9";
  CHECK(m.text(attr::username) == std::optional<std::string>(user));
  CHECK(m.check_integrity(long_term_key(user, "example.org", "TheMatrIX")));
  CHECK_FALSE(m.check_integrity(long_term_key(user, "example.org", "TheMatrix")));
}

TEST_CASE("stun: every truncation and every flipped bit of a fingerprinted message is refused") {
  auto v = load_vectors();
  for (const auto* name : {"2.1", "2.2", "2.3"}) {
    const auto& d = v[name];
    CAPTURE(name);
    for (std::size_t n = 0; n < d.size(); ++n) CHECK_FALSE(message::parse(byte_span(d).first(n)));
    // CRC-32 catches every single-bit error. What still parses is a flip
    // that unframed FINGERPRINT itself (its type, or a length before it
    // that now swallows it): a message without a fingerprint, read as one.
    std::size_t accepted = 0;
    for (std::size_t i = 0; i < d.size() * 8; ++i) {
      auto c = d;
      c[i / 8] ^= static_cast<byte>(1u << (i % 8));
      auto m = message::parse(c);
      if (!m) continue;
      ++accepted;
      CHECK_FALSE(m->has_fingerprint());
    }
    CHECK(accepted <= 24);
  }
  // Without FINGERPRINT, a flipped MI bit still parses but fails the check.
  auto d = v["2.4"];
  d[d.size() - 1] ^= 1;
  auto m = parsed(d);
  const std::string user =
      "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf\xe3\x82\xb9";
  CHECK_FALSE(m.check_integrity(long_term_key(user, "example.org", "TheMatrIX")));
}

TEST_CASE("stun: the builder's integrity, SHA-256 integrity and fingerprint verify") {
  const auto id = random_transaction_id();
  const std::string key = "k3y";
  builder b(msg_class::request, binding, id);
  b.add(attr::username, "alice").add_integrity(as_bytes(key));
  b.add_integrity_sha256(as_bytes(key)).add_fingerprint();
  auto m = parsed(std::move(b).finish());
  CHECK(m.check_integrity(as_bytes(key)));
  CHECK(m.check_integrity_sha256(as_bytes(key)));
  CHECK_FALSE(m.check_integrity_sha256(as_bytes("other")));
  CHECK(m.has_fingerprint());
  CHECK(m.id() == id);
  CHECK(m.text(attr::username) == std::optional<std::string>("alice"));
}

TEST_CASE("stun: malformed layouts and what follows MESSAGE-INTEGRITY") {
  const auto id = random_transaction_id();
  // An attribute after MESSAGE-INTEGRITY is ignored (§14.5).
  builder b(msg_class::request, binding, id);
  b.add_integrity(as_bytes("k")).add(attr::software, "late");
  auto m = parsed(std::move(b).finish());
  CHECK_FALSE(m.find(attr::software));
  CHECK(m.check_integrity(as_bytes("k")));

  // FINGERPRINT not last: not STUN.
  builder f(msg_class::request, binding, id);
  f.add_fingerprint().add(attr::software, "after");
  CHECK_FALSE(message::parse(std::move(f).finish()));

  // An attribute running past the end; a length not a multiple of 4; a
  // header that lies about the length; the wrong cookie; top bits set.
  auto good = builder(msg_class::request, binding, id).add(attr::software, "abcd");
  auto g = std::move(good).finish();
  REQUIRE(message::parse(g));
  auto over = g;
  over[23] = 9;  // SOFTWARE's length 4 -> 9: past the end
  CHECK_FALSE(message::parse(over));
  auto odd = g;
  odd.push_back(0);
  odd[3] = static_cast<byte>(odd[3] + 1);
  CHECK_FALSE(message::parse(odd));
  auto lie = g;
  lie[3] = static_cast<byte>(lie[3] + 4);
  CHECK_FALSE(message::parse(lie));
  auto cookie = g;
  cookie[4] ^= 1;
  CHECK_FALSE(message::parse(cookie));
  auto top = g;
  top[0] |= 0x80;
  CHECK_FALSE(message::parse(top));
  CHECK_FALSE(message::parse(bytes(max_message_size + 4, 0)));

  // An address of the wrong length or family is no address.
  builder a(msg_class::success, binding, id);
  const byte bad_family[] = {0, 3, 0, 1, 1, 2, 3, 4};
  a.add(attr::xor_mapped_address, bad_family);
  CHECK_FALSE(parsed(std::move(a).finish()).mapped());
}

TEST_CASE("stun: the class and method bits round-trip for every class") {
  for (auto c : {msg_class::request, msg_class::indication, msg_class::success, msg_class::error}) {
    for (std::uint16_t method :
         {std::uint16_t{0x001}, std::uint16_t{0x003}, std::uint16_t{0xABC}}) {
      auto m = parsed(builder(c, method, random_transaction_id()).finish());
      CHECK(m.cls() == c);
      CHECK(m.method() == method);
    }
  }
  // The well-known type values: Binding request 0x0001, success 0x0101, error 0x0111.
  CHECK(builder(msg_class::success, binding, {}).finish()[0] == 0x01);
  auto e = builder(msg_class::error, binding, {}).finish();
  CHECK(((e[0] << 8) | e[1]) == 0x0111);
}

TEST_CASE("stun server: a bare 20-byte request gets nothing; with a floor of 64, the address") {
  const auto id = random_transaction_id();
  const auto req = builder(msg_class::request, binding, id).finish();
  REQUIRE(req.size() == 20);
  server_options o;
  o.response_origin = udp_endpoint(ip::make_address("198.18.0.1"), 3478);
  // By default an answer never outgrows its request: none fits in 20 bytes.
  for (const auto& from : {client4, client6}) CHECK_FALSE(answer(req, from, o));
  o.answer_floor = 64;  // an operator who serves bare clients
  for (const auto& from : {client4, client6}) {
    auto a = answer(req, from, o);
    REQUIRE(a);
    CHECK(a->size() <= 64);
    auto m = parsed(*a);
    CHECK(m.cls() == msg_class::success);
    CHECK(m.id() == id);
    CHECK(m.mapped() == from);
  }
  // IPv4 has room for RESPONSE-ORIGIN and SOFTWARE (56 bytes); IPv6 does
  // not (68): SOFTWARE goes first (56), then RESPONSE-ORIGIN if need be.
  auto m4 = parsed(*answer(req, client4, o));
  CHECK(m4.address(attr::response_origin) == o.response_origin);
  CHECK(m4.text(attr::software) == std::optional<std::string>("crust"));
  auto m6 = parsed(*answer(req, client6, o));
  CHECK_FALSE(m6.find(attr::software));
  CHECK(m6.address(attr::response_origin) == o.response_origin);
  CHECK(answer(req, client6, o)->size() == 56);
  o.response_origin = udp_endpoint(ip::make_address("2001:db8::1"), 3478);
  auto lean = parsed(*answer(req, client6, o));
  CHECK_FALSE(lean.find(attr::response_origin));
  CHECK(lean.mapped() == client6);
}

TEST_CASE("stun server: a padded request gets the full answer, never more bytes than it sent") {
  server_options o;
  o.response_origin = udp_endpoint(ip::make_address("2001:db8::1"), 3478);
  builder b(msg_class::request, binding, random_transaction_id());
  b.add(attr::software, std::string(full_answer_size - 20 - 4 - 8, ' ')).add_fingerprint();
  const auto req = std::move(b).finish();
  REQUIRE(req.size() == full_answer_size);
  auto a = answer(req, client6, o);
  REQUIRE(a);
  CHECK(a->size() <= req.size());
  auto m = parsed(*a);
  CHECK(m.mapped() == client6);
  CHECK(m.address(attr::response_origin) == o.response_origin);
  CHECK(m.text(attr::software) == std::optional<std::string>("crust"));
  CHECK(m.has_fingerprint());

  // Over many request shapes, an answer never exceeds the request, or the
  // floor when one is set; a request big enough for the address gets it.
  for (const std::size_t floor : {std::size_t{0}, std::size_t{64}}) {
    o.answer_floor = floor;
    for (std::size_t pad = 0; pad <= 80; pad += 3) {
      for (bool fp : {false, true}) {
        builder r(msg_class::request, binding, random_transaction_id());
        if (pad) r.add_padding(pad);
        if (fp) r.add_fingerprint();
        auto q = std::move(r).finish();
        for (const auto& from : {client4, client6}) {
          CAPTURE(floor);
          CAPTURE(q.size());
          auto x = answer(q, from, o);
          const std::size_t budget = std::max(q.size(), floor);
          const std::size_t least = 20 + (from.address().is_v4() ? 12 : 24) + (fp ? 8 : 0);
          if (budget < least) {
            CHECK_FALSE(x);
            continue;
          }
          REQUIRE(x);
          CHECK(x->size() <= budget);
          CHECK(parsed(*x).mapped() == from);
        }
      }
    }
  }
}

TEST_CASE("stun server: RFC 5769's ICE request (PRIORITY, USERNAME, MI) is answered") {
  auto v = load_vectors();
  auto a = answer(v["2.1"], client4, {});
  REQUIRE(a);
  auto m = parsed(*a);
  CHECK(m.cls() == msg_class::success);
  CHECK(m.has_fingerprint());  // the request had one
  CHECK(m.mapped() == client4);
}

TEST_CASE("stun server: unknown required attributes, CHANGE-REQUEST and other methods") {
  const auto id = random_transaction_id();
  // What is answered, not its size: room for any answer (as over TCP).
  server_options roomy;
  roomy.answer_floor = full_answer_size;
  {  // an unknown comprehension-required attribute: 420 naming it
    builder b(msg_class::request, binding, id);
    b.add(0x7ABC, "x").add(0xC001, "optional: ignored");
    auto m = parsed(*answer(std::move(b).finish(), client4, roomy));
    CHECK(m.cls() == msg_class::error);
    REQUIRE(m.error());
    CHECK(m.error()->code == 420);
    auto u = m.find(attr::unknown_attributes);
    REQUIRE(u);
    REQUIRE(u->size() == 2);
    CHECK(get_u16(u->data()) == 0x7ABC);
  }
  {  // RESPONSE-PORT: not supported, so 420 too (no answers sent elsewhere)
    builder b(msg_class::request, binding, id);
    const byte port[] = {0x12, 0x34, 0, 0};
    b.add(attr::response_port, port);
    auto m = parsed(*answer(std::move(b).finish(), client4, roomy));
    REQUIRE(m.error());
    CHECK(m.error()->code == 420);
  }
  {  // CHANGE-REQUEST asking for another address or port: 420; with no flags: answered
    for (std::uint32_t flags : {0x4u, 0x2u, 0x6u, 0x0u}) {
      builder b(msg_class::request, binding, id);
      bytes v;
      put_u32(v, flags);
      b.add(attr::change_request, v);
      auto m = parsed(*answer(std::move(b).finish(), client4, roomy));
      CAPTURE(flags);
      CHECK(m.cls() == (flags ? msg_class::error : msg_class::success));
    }
  }
  {  // Allocate (TURN): 400
    auto m = parsed(*answer(builder(msg_class::request, 0x003, id).finish(), client4, roomy));
    REQUIRE(m.error());
    CHECK(m.error()->code == 400);
  }
  // Indications, responses and garbage get nothing.
  CHECK_FALSE(answer(builder(msg_class::indication, binding, id).finish(), client4, {}));
  CHECK_FALSE(answer(builder(msg_class::success, binding, id).finish(), client4, {}));
  CHECK_FALSE(answer(bytes(20, 0), client4, {}));
  CHECK_FALSE(answer(bytes{}, client4, {}));
}

TEST_CASE("stun transaction: RFC 8489's schedule: 0, 0.5, 1.5, ... 31.5 s, timeout at 39.5 s") {
  const time_point t0{};
  transaction_timer t({}, t0);
  std::vector<std::int64_t> sends{0};
  auto now = t0;
  for (int guard = 0; guard < 20; ++guard) {
    CHECK(t.fire(t.deadline() - milliseconds(1)) == transaction_timer::step::wait);
    now = t.deadline();
    const auto s = t.fire(now);
    if (s == transaction_timer::step::give_up) break;
    sends.push_back(std::chrono::duration_cast<milliseconds>(now - t0).count());
  }
  CHECK(sends == std::vector<std::int64_t>{0, 500, 1500, 3500, 7500, 15500, 31500});
  CHECK(std::chrono::duration_cast<milliseconds>(now - t0).count() == 39500);
  CHECK(t.sent() == 7);

  // Late calls keep to the planned times; one request waits Rm RTOs.
  transaction_timer late({milliseconds(100), 3, 4}, t0);
  CHECK(late.fire(t0 + milliseconds(250)) == transaction_timer::step::send);
  CHECK(late.deadline() == t0 + milliseconds(300));
  transaction_timer one({milliseconds(100), 1, 4}, t0);
  CHECK(one.deadline() == t0 + milliseconds(400));
  CHECK(one.fire(one.deadline()) == transaction_timer::step::give_up);
}
