// Contact records and gossip messages from hostile peers. The whole input
// is first read as one record: what parses re-encodes to the same bytes.
// Then as a stream of messages from three peers into one engine, with
// rounds and dial-backs between them: the engine keeps every bound, and
// everything it sends (pushes, answers) is well-formed to another engine.
// Signatures verify when their first byte is even, so both the kept and the
// forged paths are reached.
#include "bootstrap/gossip.hpp"

#include <cstdint>

using namespace crust;
using namespace crust::bootstrap;

namespace {
constexpr std::int64_t t0 = 1'800'000'000;
public_id pid(std::uint8_t n) {
  public_id id{};
  id.key.fill(n);
  return id;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const identity me = identity::from_secrets(secure::key32{1}, secure::key32{2});
  if (auto r = contact_record::parse(byte_span(data, size), "fuzz", t0, 3600)) {
    const auto wire = r->encode();
    if (!std::equal(wire.begin(), wire.end(), data, data + size)) __builtin_trap();
    (void)r->verify("fuzz");
  } else if (r.error().message.empty() || !r.error().code) {
    __builtin_trap();
  }

  gossip_limits l;
  l.bucket_size = 4;
  l.max_records = 12;
  l.per_source = 6;
  l.per_group = 5;
  l.records_per_message = 4;
  l.messages_per_minute = 20;
  l.max_age = 600;
  l.seen_memory = 16;
  gossip g(me.id(), "fuzz", l, 1);
  auto parity = [](const contact_record& r, byte_span) { return (r.signature[0] & 1) == 0; };
  g.set_verifier(parity);
  g.set_own(contact_record::make(me, "fuzz",
                                 {{nat::candidate_transport::tcp, nat::candidate_kind::host,
                                   boost::asio::ip::make_address("198.18.0.1"), 9}},
                                 t0));
  gossip_limits unlimited;
  unlimited.messages_per_minute = 1'000'000;
  gossip reader(pid(9), "fuzz", unlimited, 2);  // reads what g sends
  reader.set_verifier(parity);
  const public_id peers[] = {pid(2), pid(3), pid(4)};
  std::int64_t now = t0;
  auto check_sent = [&](const bytes& body) {
    if (reader.on_message(me.id(), body, now).violation == errc::malformed) __builtin_trap();
  };
  std::size_t at = 0;
  while (at + 3 <= size) {
    const std::uint8_t sel = data[at];
    const std::size_t len = (std::size_t{data[at + 1]} << 8 | data[at + 2]) % 4096;
    at += 3;
    const std::size_t take = std::min(len, size - at);
    const byte_span body(data + at, take);
    at += take;
    now += sel >> 4;
    if (sel >= 0xF0) {
      for (const auto& [to, push] : g.round(peers, now)) check_sent(push);
      std::size_t i = 0;
      for (const auto& r : g.dial_backs()) g.dial_back_done(r.key.id, (sel + i++) & 1);
      continue;
    }
    auto react = g.on_message(peers[sel % 3], body, now);
    for (const auto& reply : react.replies) check_sent(reply);
    if (react.answer_to && react.found.size() > l.records_per_message) __builtin_trap();
  }
  // Every bound held.
  std::map<public_id, std::size_t> by_source;
  std::map<unsigned, std::size_t> by_bucket;
  for (const auto& [id, e] : g.entries()) {
    ++by_source[e.source];
    ++by_bucket[gossip::bucket_of(me.id(), id)];
    if (id == me.id() || id != e.record.key.id) __builtin_trap();
  }
  if (g.entries().size() > l.max_records) __builtin_trap();
  for (const auto& [s, n] : by_source)
    if (n > l.per_source) __builtin_trap();
  for (const auto& [b, n] : by_bucket)
    if (n > l.bucket_size) __builtin_trap();
  return 0;
}
