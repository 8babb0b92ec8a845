// Relay records from hostile peers: decode must never misbehave, what it
// accepts re-encodes to a record that decodes the same, and a relay's
// switch fed a stream of records from three peers keeps its bounds and
// only ever sends records that decode.
#include "nat/relay.hpp"

#include <cstdint>
#include <set>

using namespace crust;
namespace rl = crust::nat::relay;

namespace {
public_id pid(std::uint8_t n) {
  public_id id{};
  id.key.fill(n);
  return id;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The whole input as one record.
  if (auto r = rl::decode(byte_span(data, size))) {
    const auto wire = rl::encode(*r);
    auto again = rl::decode(byte_span(wire).subspan(1));
    if (!again || again->index() != r->index()) __builtin_trap();
  }
  // Then as a stream: [peer selector][u16 length][body]...
  rl::limits l;
  l.circuits = 4;
  l.circuits_per_peer = 2;
  l.circuit_bytes = 100000;
  l.introductions_per_minute = 5;
  const public_id me = pid(1);
  const public_id peers[] = {pid(2), pid(3), pid(4)};
  rl::relay_switch sw(me, l, true);
  std::set<public_id> connected(std::begin(peers), std::end(peers));
  auto is_connected = [&](const public_id& id) { return connected.contains(id); };
  time_point now{};
  std::size_t at = 0;
  while (at + 3 <= size) {
    const std::uint8_t sel = data[at];
    const std::size_t len = (std::size_t{data[at + 1]} << 8 | data[at + 2]) % 2048;
    at += 3;
    const std::size_t take = std::min(len, size - at);
    const byte_span body(data + at, take);
    at += take;
    now += milliseconds(sel);
    const auto& from = peers[sel % 3];
    if (sel >= 0xF0) {
      // A peer leaves (and comes back).
      for (const auto& o : sw.on_peer_gone(from))
        if (o.record.size() < 2 || !rl::decode(byte_span(o.record).subspan(1))) __builtin_trap();
      continue;
    }
    auto r = rl::decode(body);
    if (!r) continue;
    auto v = sw.on_record(from, *r, is_connected, now);
    for (const auto& o : v.out) {
      if (o.record.size() < 2 || o.record[0] != 6) __builtin_trap();
      if (!rl::decode(byte_span(o.record).subspan(1))) __builtin_trap();
      if (o.to == me) __builtin_trap();  // never to ourselves
    }
    if (sw.circuits() > l.circuits) __builtin_trap();
  }
  return 0;
}
