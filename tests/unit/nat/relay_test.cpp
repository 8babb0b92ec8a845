// Relay records and the relay's switch, without I/O: every record round
// trips, malformed ones are refused, introductions are passed on or
// refused with a reason, circuits are joined with each link's own numbers,
// windows and quotas are enforced, and a peer that leaves takes its
// circuits with it.
#include "nat/relay.hpp"

#include "support/test.hpp"

#include <set>

using namespace crust;
using namespace crust::nat::relay;
namespace rl = crust::nat::relay;  // sync, open, accept, close are POSIX's too

namespace {

public_id pid(std::uint8_t n) {
  public_id id{};
  id.key.fill(n);
  return id;
}

const public_id R = pid(1), A = pid(2), B = pid(3), C = pid(4);

record decoded(const bytes& wire) {
  REQUIRE(wire.size() >= 2);
  REQUIRE(wire[0] == 6);
  auto r = decode(byte_span(wire).subspan(1));
  REQUIRE_MESSAGE(r, r.error().message());
  return *r;
}

// What `from` sending `r` to the switch makes it send, decoded as each
// receiver reads it.
struct sent {
  public_id to;
  record rec;
};
std::vector<sent> feed(relay_switch& sw, const public_id& from, const record& r,
                       const std::set<public_id>& connected, bool* handled = nullptr,
                       time_point now = time_point{} + seconds(1000)) {
  // As the wire carries it: encoded by the sender, decoded by the switch.
  const auto rec = decoded(encode(r));
  auto v = sw.on_record(
      from, rec, [&](const public_id& id) { return connected.contains(id); }, now);
  if (handled) *handled = v.handled;
  std::vector<sent> out;
  for (const auto& o : v.out) out.push_back({o.to, decoded(o.record)});
  return out;
}

}  // namespace

TEST_CASE("relay records: every kind round trips, circuit numbers from each side") {
  const bytes info{1, 2, 3, 4, 5};
  std::vector<record> all = {
      introduce{B, info},
      introduction{A, info},
      introduce_reply{A, 1234, info},
      introduce_answer{B, 99, info},
      introduce_failed{B, reason::not_connected, "not here"},
      introduce_refuse{A, reason::refused, "no"},
      rl::sync{B},
      synced{A},
      rl::open{{7, true}, B},
      incoming{{8, true}, A},
      rl::accept{{9, false}},
      data{{10, true}, bytes(100, 0xAB)},
      window{{11, false}, 65536},
      rl::close{{12, true}, reason::quota, "too much"},
  };
  for (const auto& r : all) {
    CAPTURE(r.index());
    const auto wire = encode(r);
    auto back = decoded(wire);
    REQUIRE(back.index() == r.index());
    // Re-encoding what was read gives the same bytes but for the circuit
    // number's top bit, which flips with the point of view.
    auto again = encode(back);
    REQUIRE(again.size() == wire.size());
    if (std::holds_alternative<rl::open>(r) || std::holds_alternative<incoming>(r) ||
        std::holds_alternative<rl::accept>(r) || std::holds_alternative<data>(r) ||
        std::holds_alternative<window>(r) || std::holds_alternative<rl::close>(r)) {
      CHECK((again[2] ^ wire[2]) == 0x80);
      again[2] = wire[2];
    }
    CHECK(again == wire);
  }
  auto d = std::get<data>(decoded(encode(data{{10, true}, bytes{1}})));
  CHECK(d.circuit.number == 10);
  CHECK_FALSE(d.circuit.opened_by_me);  // the sender opened it
  auto t = std::get<introduce_reply>(decoded(encode(introduce_reply{A, 1234, info})));
  CHECK(t.origin == A);
  CHECK(t.held_ms == 1234);
  CHECK(t.info == info);
}

TEST_CASE("relay records: malformed ones are refused") {
  CHECK_FALSE(decode(bytes{}));
  CHECK_FALSE(decode(bytes{0}));
  CHECK_FALSE(decode(bytes{15}));
  CHECK_FALSE(decode(bytes{6, 1, 2, 3}));  // a short id
  auto open_rec = encode(rl::open{{1, true}, B});
  // Every truncation and every extension of a fixed-size record is refused.
  for (std::size_t n = 1; n + 1 < open_rec.size(); ++n)
    CHECK_FALSE(decode(byte_span(open_rec).subspan(1, n)));
  auto longer = open_rec;
  longer.push_back(0);
  CHECK_FALSE(decode(byte_span(longer).subspan(1)));
  // Empty data, oversized data and oversized text.
  CHECK_FALSE(decode(bytes{11, 0, 0, 0, 1}));
  bytes big{11, 0, 0, 0, 1};
  big.resize(5 + max_circuit_data + 1, 7);
  CHECK_FALSE(decode(big));
  bytes text{13, 0, 0, 0, 1, 0};
  text.resize(6 + max_text + 1, 'x');
  CHECK_FALSE(decode(text));
  // An unknown reason reads as a protocol error, not a refusal of the record.
  auto c = decode(bytes{13, 0, 0, 0, 1, 200});
  REQUIRE(c);
  CHECK(std::get<rl::close>(*c).why == reason::protocol_error);
  // Encoding cuts what is too long rather than emitting a bad record.
  auto cut = decoded(encode(data{{1, true}, bytes(max_circuit_data + 10, 1)}));
  CHECK(std::get<data>(cut).payload.size() == max_circuit_data);
}

TEST_CASE("relay switch: introductions are passed on, answered and refused") {
  relay_switch sw(R, limits{}, true);
  const std::set<public_id> both{A, B};
  bool handled = false;
  auto out = feed(sw, A, introduce{B, {9, 9}}, both, &handled);
  CHECK(handled);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == B);
  CHECK(std::get<introduction>(out[0].rec).origin == A);
  CHECK(std::get<introduction>(out[0].rec).info == bytes{9, 9});

  out = feed(sw, B, introduce_reply{A, 40, {8}}, both);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == A);
  CHECK(std::get<introduce_answer>(out[0].rec).target == B);
  CHECK(std::get<introduce_answer>(out[0].rec).held_ms == 40);

  out = feed(sw, A, rl::sync{B}, both);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == B);
  CHECK(std::get<synced>(out[0].rec).origin == A);

  out = feed(sw, B, introduce_refuse{A, reason::refused, "busy"}, both);
  REQUIRE(out.size() == 1);
  CHECK(std::get<introduce_failed>(out[0].rec).target == B);
  CHECK(std::get<introduce_failed>(out[0].rec).text == "busy");

  // Not connected to the target, or asked to introduce to ourselves.
  out = feed(sw, A, introduce{C, {1}}, both);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == A);
  CHECK(std::get<introduce_failed>(out[0].rec).why == reason::not_connected);
  out = feed(sw, A, introduce{A, {1}}, both);
  CHECK(std::get<introduce_failed>(out.at(0).rec).why == reason::not_connected);

  // Addressed to R itself: a direct exchange, the endpoint's business.
  out = feed(sw, A, introduce{R, {1}}, both, &handled);
  CHECK_FALSE(handled);
  CHECK(out.empty());
  out = feed(sw, A, rl::sync{R}, both, &handled);
  CHECK_FALSE(handled);
  // Records only endpoints receive are not the switch's either.
  for (const record& r : std::vector<record>{introduction{A, {}}, introduce_answer{B, 0, {}},
                                             introduce_failed{B, reason::normal, ""}, synced{A},
                                             incoming{{1, true}, A}}) {
    feed(sw, A, r, both, &handled);
    CHECK_FALSE(handled);
  }
  CHECK(sw.stats().introductions == 1);
}

TEST_CASE("relay switch: introductions are rate-limited per peer, and off when relaying is") {
  limits l;
  l.introductions_per_minute = 3;
  relay_switch sw(R, l, true);
  const std::set<public_id> both{A, B};
  const auto t0 = time_point{} + seconds(1000);
  for (int i = 0; i < 3; ++i) {
    auto out = feed(sw, A, introduce{B, {1}}, both, nullptr, t0);
    CHECK(std::holds_alternative<introduction>(out.at(0).rec));
  }
  auto out = feed(sw, A, introduce{B, {1}}, both, nullptr, t0 + seconds(30));
  CHECK(std::get<introduce_failed>(out.at(0).rec).why == reason::quota);
  // Another peer has its own allowance; a minute later A has one again.
  out = feed(sw, B, introduce{A, {1}}, both, nullptr, t0);
  CHECK(std::holds_alternative<introduction>(out.at(0).rec));
  out = feed(sw, A, introduce{B, {1}}, both, nullptr, t0 + seconds(61));
  CHECK(std::holds_alternative<introduction>(out.at(0).rec));

  sw.set_relaying(false);
  out = feed(sw, A, introduce{B, {1}}, both, nullptr, t0 + seconds(200));
  CHECK(std::get<introduce_failed>(out.at(0).rec).why == reason::not_relaying);
}

TEST_CASE("relay switch: a circuit is joined, numbered per link, and carries data both ways") {
  relay_switch sw(R, limits{}, true);
  const std::set<public_id> both{A, B};
  // A opens its circuit 5 to B.
  auto out = feed(sw, A, rl::open{{5, true}, B}, both);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == B);
  const auto in = std::get<incoming>(out[0].rec);
  CHECK(in.origin == A);
  CHECK_FALSE(in.circuit.opened_by_me);  // R opened it on the R-B link
  CHECK(sw.circuits() == 1);
  // B accepts with R's number, as B knows it (opened by the other end).
  const circuit_ref b_ref{in.circuit.number, false};
  out = feed(sw, B, rl::accept{b_ref}, both);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == A);
  CHECK(std::get<rl::accept>(out[0].rec).circuit == circuit_ref{5, true});  // A's own number

  out = feed(sw, A, data{{5, true}, bytes{1, 2, 3}}, both);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == B);
  CHECK(std::get<data>(out[0].rec).circuit == b_ref);
  CHECK(std::get<data>(out[0].rec).payload == bytes{1, 2, 3});
  out = feed(sw, B, data{b_ref, bytes{4}}, both);
  CHECK(std::get<data>(out.at(0).rec).circuit == circuit_ref{5, true});
  out = feed(sw, B, window{b_ref, 100}, both);
  CHECK(std::get<window>(out.at(0).rec).more == 100);
  CHECK(sw.stats().bytes_relayed == 4);

  // A closes: B hears, the circuit is gone, and later records are not R's.
  out = feed(sw, A, rl::close{{5, true}, reason::normal, "bye"}, both);
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == B);
  CHECK(std::get<rl::close>(out[0].rec).text == "bye");
  CHECK(sw.circuits() == 0);
  bool handled = true;
  feed(sw, A, data{{5, true}, bytes{1}}, both, &handled);
  CHECK_FALSE(handled);
}

TEST_CASE("relay switch: refusals, windows, quotas and a peer that leaves") {
  limits l;
  l.circuits = 3;
  l.circuits_per_peer = 2;
  l.circuit_bytes = circuit_window + 1000;
  relay_switch sw(R, l, true);
  const std::set<public_id> all{A, B, C};
  auto refused = [&](const std::vector<sent>& out, reason why) {
    REQUIRE(out.size() == 1);
    CHECK(out[0].to == A);
    CHECK(std::get<rl::close>(out[0].rec).why == why);
  };
  refused(feed(sw, A, rl::open{{1, true}, R}, all), reason::not_connected);
  refused(feed(sw, A, rl::open{{1, true}, pid(9)}, all), reason::not_connected);
  // Two circuits from A to B are allowed, a third is over the per-peer bound.
  auto o1 = feed(sw, A, rl::open{{1, true}, B}, all);
  auto o2 = feed(sw, A, rl::open{{2, true}, B}, all);
  refused(feed(sw, A, rl::open{{3, true}, C}, all), reason::quota);
  // A number in use is a protocol error.
  refused(feed(sw, A, rl::open{{1, true}, C}, all), reason::protocol_error);
  // Data before accept.
  auto r1 = std::get<incoming>(o1.at(0).rec).circuit;
  const circuit_ref b1{r1.number, false};
  auto out = feed(sw, A, data{{1, true}, bytes{1}}, all);
  REQUIRE(out.size() == 2);  // closed both ways
  CHECK(sw.circuits() == 1);

  // Past the window: closed with quota, both ends told.
  auto r2 = std::get<incoming>(o2.at(0).rec).circuit;
  const circuit_ref b2{r2.number, false};
  feed(sw, B, rl::accept{b2}, all);
  std::size_t sent_bytes = 0;
  while (sent_bytes + max_circuit_data <= circuit_window) {
    out = feed(sw, A, data{{2, true}, bytes(max_circuit_data, 1)}, all);
    REQUIRE(out.size() == 1);
    sent_bytes += max_circuit_data;
  }
  // A window record from B lets A go on; past that, the circuit closes.
  feed(sw, B, window{b2, 1000}, all);
  out = feed(sw, A, data{{2, true}, bytes(1000, 1)}, all);
  CHECK(std::holds_alternative<data>(out.at(0).rec));
  out = feed(sw, A, data{{2, true}, bytes(1, 1)}, all);
  REQUIRE(out.size() == 2);
  for (const auto& o : out) CHECK(std::get<rl::close>(o.rec).why == reason::quota);
  CHECK(sw.circuits() == 0);

  // The byte quota over a circuit's life, with windows granted freely.
  auto o3 = feed(sw, A, rl::open{{4, true}, C}, all);
  const circuit_ref c3{std::get<incoming>(o3.at(0).rec).circuit.number, false};
  feed(sw, C, rl::accept{c3}, all);
  feed(sw, C, window{c3, 1u << 30}, all);
  std::uint64_t total = 0;
  bool quota_closed = false;
  while (total < l.circuit_bytes + max_circuit_data) {
    out = feed(sw, A, data{{4, true}, bytes(max_circuit_data, 1)}, all);
    total += max_circuit_data;
    if (out.size() == 2) {
      quota_closed = true;
      CHECK(std::get<rl::close>(out[0].rec).text == "circuit byte quota used up");
      break;
    }
  }
  CHECK(quota_closed);

  // A peer that leaves closes its circuits at the other end.
  auto o4 = feed(sw, A, rl::open{{5, true}, B}, all);
  (void)o4;
  auto gone = sw.on_peer_gone(A);
  REQUIRE(gone.size() == 1);
  CHECK(gone[0].to == B);
  CHECK(std::get<rl::close>(decoded(gone[0].record)).why == reason::peer_gone);
  CHECK(sw.circuits() == 0);

  // Not relaying: circuits refused with a reason of their own.
  sw.set_relaying(false);
  refused(feed(sw, A, rl::open{{6, true}, B}, all), reason::not_relaying);
  (void)b1;
}
