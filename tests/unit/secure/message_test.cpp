#include "crust/secure/message.hpp"
#include "crust/secure/frame.hpp"

#include "support/test.hpp"

using namespace crust;
using namespace crust::secure;

namespace {

std::vector<bytes> records_of(const outgoing_message& m,
                              std::size_t max_body = max_frame_body - record_prefix) {
  std::vector<bytes> out;
  encode_message(m, max_body, [&](byte_span h, byte_span d) {
    bytes r(h.begin(), h.end());
    append(r, d);
    REQUIRE(r.size() <= max_body);
    out.push_back(std::move(r));
  });
  return out;
}

outgoing_message msg(std::size_t n, priority p = priority::normal) {
  outgoing_message m;
  m.payload.resize(n);
  for (std::size_t i = 0; i < n; ++i) m.payload[i] = static_cast<byte>(i * 13 + 5);
  m.prio = p;
  return m;
}

}  // namespace

TEST_CASE("message: fragmentation and reassembly round-trip at every size class") {
  for (std::size_t n : {0u, 1u, 65000u, 65512u, 65513u, 65514u, 200000u, 2u << 20}) {
    CAPTURE(n);
    auto m = msg(n, priority::low);
    auto recs = records_of(m);
    const std::size_t max_record = max_frame_body - record_prefix;
    const std::size_t first_cap = max_record - 7, later_cap = max_record - 3;
    CHECK(recs.size() == (n <= first_cap ? 1 : 1 + (n - first_cap + later_cap - 1) / later_cap));
    reassembler r(2u << 20);
    for (std::size_t i = 0; i < recs.size(); ++i) {
      auto got = r.feed(recs[i]);
      REQUIRE(got);
      if (i + 1 < recs.size()) {
        CHECK(std::holds_alternative<std::monostate>(*got));
      } else {
        auto* in = std::get_if<incoming_message>(&*got);
        REQUIRE(in);
        CHECK(in->payload == m.payload);
        CHECK(in->prio == priority::low);
        CHECK_FALSE(in->signature);
      }
    }
  }
}

TEST_CASE("message: a signature travels in the first fragment") {
  auto m = msg(100000);
  signature64 sig{};
  sig[5] = 9;
  m.signature = sig;
  reassembler r(1u << 20);
  incoming last;
  for (auto& rec : records_of(m)) {
    auto got = r.feed(rec);
    REQUIRE(got);
    last = *got;
  }
  auto* in = std::get_if<incoming_message>(&last);
  REQUIRE(in);
  REQUIRE(in->signature);
  CHECK(*in->signature == sig);
  CHECK(in->payload == m.payload);
}

TEST_CASE("message: an oversized message is skipped, reported, and the stream goes on") {
  reassembler r(1000);
  for (auto& rec : records_of(msg(150000))) {
    auto got = r.feed(rec);
    REQUIRE(got);
    if (auto* o = std::get_if<incoming_oversize>(&*got)) CHECK(o->declared_size == 150000);
  }
  auto got = r.feed(records_of(msg(10))[0]);
  REQUIRE(got);
  CHECK(std::get<incoming_message>(*got).payload.size() == 10);
}

TEST_CASE("message: over a small limit, a message in a single record is skipped too") {
  reassembler r(100);
  auto recs = records_of(msg(5000));
  REQUIRE(recs.size() == 1);
  auto got = r.feed(recs[0]);
  REQUIRE(got);
  auto* o = std::get_if<incoming_oversize>(&*got);
  REQUIRE(o);
  CHECK(o->declared_size == 5000);
  auto next = r.feed(records_of(msg(10))[0]);
  REQUIRE(next);
  CHECK(std::get<incoming_message>(*next).payload.size() == 10);
}

TEST_CASE("message: records out of the rules are protocol violations") {
  auto recs = records_of(msg(150000));
  REQUIRE(recs.size() == 3);
  SUBCASE("a middle fragment without a first") {
    reassembler r(1u << 20);
    CHECK(r.feed(recs[1]).error() == errc::protocol_violation);
  }
  SUBCASE("a first fragment inside a message") {
    reassembler r(1u << 20);
    REQUIRE(r.feed(recs[0]));
    CHECK(r.feed(recs[0]).error() == errc::protocol_violation);
  }
  SUBCASE("more bytes than declared") {
    reassembler r(1u << 20);
    auto big = records_of(msg(10))[0];
    big[6] = 5;  // total length 5, carries 10
    CHECK(r.feed(big).error() == errc::protocol_violation);
  }
  SUBCASE("fewer bytes than declared at the last fragment") {
    reassembler r(1u << 20);
    auto small = records_of(msg(10))[0];
    small[6] = 20;
    CHECK(r.feed(small).error() == errc::protocol_violation);
  }
  SUBCASE("unknown record type, flags or priority") {
    reassembler r(1u << 20);
    CHECK(r.feed(bytes{9}).error() == errc::protocol_violation);
    CHECK(r.feed(bytes{}).error() == errc::protocol_violation);
    CHECK(r.feed(bytes{1, 0x13, 0, 0, 0, 0, 0}).error() == errc::protocol_violation);
    CHECK(r.feed(bytes{1, 3, 7, 0, 0, 0, 0}).error() == errc::protocol_violation);
    CHECK(r.feed(bytes{2, 0}).error() == errc::protocol_violation);
  }
  SUBCASE("every truncation of a first fragment header") {
    auto rec = records_of(msg(10))[0];
    for (std::size_t cut = 0; cut < 7; ++cut) {
      reassembler r(1u << 20);
      CHECK_FALSE(r.feed(byte_span(rec).first(cut)));
    }
  }
}

TEST_CASE("message: close and heartbeat records") {
  reassembler r(100);
  auto c = r.feed(encode_close(close_reason::duplicate, "simultaneous dial"));
  REQUIRE(c);
  auto& ic = std::get<incoming_close>(*c);
  CHECK(ic.reason == close_reason::duplicate);
  CHECK(ic.text == "simultaneous dial");
  auto h = r.feed(encode_heartbeat());
  REQUIRE(h);
  CHECK(std::holds_alternative<incoming_heartbeat>(*h));
}

TEST_CASE("message: hello and admit records, and malformed ones") {
  reassembler r(100);
  for (auto role : {node_role::node, node_role::client}) {
    for (bool boot : {false, true}) {
      auto h = r.feed(encode_hello(role, boot));
      REQUIRE(h);
      auto& ih = std::get<incoming_hello>(*h);
      CHECK(ih.role == role);
      CHECK(ih.bootstrap == boot);
      CHECK(ih.listen_port == 0);
    }
  }
  // The listening port, for a dial-back; a 3-byte hello (without it) reads as 0.
  auto p = r.feed(encode_hello(node_role::node, true, 54321));
  REQUIRE(p);
  CHECK(std::get<incoming_hello>(*p).listen_port == 54321);
  auto short_hello = r.feed(bytes{4, 1, 0});
  REQUIRE(short_hello);
  CHECK(std::get<incoming_hello>(*short_hello).listen_port == 0);
  CHECK(std::get<incoming_hello>(*short_hello).role == node_role::client);
  auto a = r.feed(encode_admit());
  REQUIRE(a);
  CHECK(std::get<incoming_admit>(*a).udp_port == 0);
  // The UDP ports (STUN servers for each other), both ways; the older,
  // shorter records read as 0.
  auto hu = r.feed(encode_hello(node_role::node, false, 1, 40001));
  REQUIRE(hu);
  CHECK(std::get<incoming_hello>(*hu).listen_port == 1);
  CHECK(std::get<incoming_hello>(*hu).udp_port == 40001);
  auto au = r.feed(encode_admit(40002));
  REQUIRE(au);
  CHECK(std::get<incoming_admit>(*au).udp_port == 40002);
  auto old_admit = r.feed(bytes{5});
  REQUIRE(old_admit);
  CHECK(std::get<incoming_admit>(*old_admit).udp_port == 0);
  CHECK(!r.feed(bytes{5, 1}));
  CHECK(!r.feed(bytes{5, 1, 2, 3}));
  CHECK(!r.feed(bytes{4, 0, 0, 0, 1, 2}));
  CHECK(!r.feed(bytes{4, 0, 0, 0, 1, 2, 3, 4}));
  const std::vector<bytes> bad = {
      {4},
      {4, 0},
      {4, 2, 0},  // short, unknown role
      {4, 0, 2},
      {4, 0, 0, 0},        // unknown flag, half a port
      {4, 0, 0, 0, 1, 2},  // long
      {5, 0},
      {6},  // long admit, an empty relay record
      {7},  // an unknown record type
  };
  for (const auto& b : bad) {
    const auto hex = to_hex(b);
    CAPTURE(hex);
    CHECK_FALSE(r.feed(b));
  }
}

TEST_CASE("message: relay records pass their body up, up to their size limit") {
  reassembler r(100);
  auto x = r.feed(bytes{6, 9, 8, 7});
  REQUIRE(x);
  CHECK(std::get<incoming_relay>(*x).body == bytes{9, 8, 7});
  bytes biggest(max_relay_record, 1);
  biggest[0] = 6;
  auto y = r.feed(biggest);
  REQUIRE(y);
  CHECK(std::get<incoming_relay>(*y).body.size() == max_relay_record - 1);
  biggest.push_back(1);
  CHECK_FALSE(r.feed(biggest));
  // Between a message's fragments, as any other record may be.
  auto first = r.feed(bytes{1, 1, 1, 0, 0, 0, 2, 'a'});
  REQUIRE(first);
  CHECK(std::holds_alternative<std::monostate>(*first));
  CHECK(r.feed(bytes{6, 1}));
  auto last = r.feed(bytes{1, 2, 1, 'b'});
  REQUIRE(last);
  CHECK(std::get<incoming_message>(*last).payload == bytes{'a', 'b'});
}

TEST_CASE("send queue: highest priority first, FIFO within a priority") {
  send_queue q(1 << 20);
  q.push(msg(1, priority::low));
  q.push(msg(2, priority::normal));
  q.push(msg(3, priority::high));
  q.push(msg(4, priority::normal));
  std::vector<std::size_t> order;
  while (auto m = q.pop()) order.push_back(m->payload.size());
  CHECK(order == std::vector<std::size_t>{3, 2, 4, 1});
}

TEST_CASE("send queue: under pressure the oldest least important go first, and it says so") {
  send_queue q(1000);
  CHECK(q.push(msg(400, priority::low)).count == 0);
  CHECK(q.push(msg(400, priority::normal)).count == 0);
  auto d = q.push(msg(400, priority::high));  // needs 200 more: drops the low one
  CHECK(d.count == 1);
  CHECK(d.bytes == 400);
  CHECK(d.lowest_dropped == priority::low);
  CHECK_FALSE(d.refused_new);
  auto d2 = q.push(msg(400, priority::normal));  // nothing lower left: refused
  CHECK(d2.refused_new);
  CHECK(d2.count == 1);
  CHECK(q.size() == 2);
  CHECK(q.queued_bytes() == 800);
  // An empty queue always takes one message, so a large one still goes.
  send_queue e(10);
  CHECK(e.push(msg(500)).count == 0);
  CHECK(e.size() == 1);
}

TEST_CASE("records: a frame body holds several length-prefixed records") {
  bytes body;
  for (bytes rec : {bytes{2}, bytes{3, 0, 'b', 'y', 'e'}, bytes(300, 7)}) {
    put_u16(body, static_cast<std::uint16_t>(rec.size()));
    append(body, rec);
  }
  record_reader r(body);
  std::vector<std::size_t> sizes;
  for (;;) {
    auto rec = r.next();
    REQUIRE(rec);
    if (!*rec) break;
    sizes.push_back((*rec)->size());
  }
  CHECK(sizes == std::vector<std::size_t>{1, 5, 300});
}

TEST_CASE("records: malformed bodies are protocol violations") {
  for (bytes body : {bytes{}, bytes{0}, bytes{0, 0}, bytes{0, 5, 1, 2}, bytes{0, 1, 2, 0}}) {
    CAPTURE(body.size());
    record_reader r(body);
    bool violated = false;
    for (int i = 0; i < 4 && !violated; ++i) {
      auto rec = r.next();
      if (!rec)
        violated = rec.error() == errc::protocol_violation;
      else if (!*rec)
        break;
    }
    CHECK(violated);
  }
}
