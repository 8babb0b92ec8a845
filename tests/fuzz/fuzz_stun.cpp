// STUN on arbitrary datagrams: parsing and every accessor must never
// misbehave; what parses must re-encode attribute for attribute; and the
// server's answer is never larger than max(request, 64 bytes) and is
// itself a well-formed response to the same transaction. The mapped
// addresses that parse also feed the NAT behaviour classifier, which must
// accept any observations at all.
#include "nat/behaviour.hpp"
#include "nat/stun.hpp"
#include "nat/stun_server.hpp"

#include <algorithm>
#include <cstdint>

using namespace crust;
using namespace crust::nat::stun;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const byte_span in(data, size);
  auto m = message::parse(in);
  if (m) {
    if (!looks_like_stun(in)) __builtin_trap();
    for (auto t : {attr::xor_mapped_address, attr::mapped_address, attr::response_origin,
                   attr::other_address})
      (void)m->address(t);
    (void)m->mapped();
    (void)m->error();
    (void)m->text(attr::software);
    (void)m->unknown_required({attr::username});
    (void)m->check_integrity(as_bytes("key"));
    (void)m->check_integrity_sha256(as_bytes("key"));
    // Re-encoding the attributes before any integrity attribute gives a
    // message that parses to the same attributes.
    builder b(m->cls(), m->method(), m->id());
    std::size_t copied = 0;
    for (const auto& a : m->attributes()) {
      if (a.type == attr::message_integrity || a.type == attr::message_integrity_sha256 ||
          a.type == attr::fingerprint)
        break;
      b.add(a.type, m->raw().subspan(a.offset, a.length));
      ++copied;
    }
    auto again = message::parse(std::move(b).finish());
    if (!again) __builtin_trap();  // a subset of what parsed, with zero padding
    if (again->method() != m->method() || again->cls() != m->cls()) __builtin_trap();
    if (again->attributes().size() != copied) __builtin_trap();
  }
  if (m) {
    // Every address attribute as an observation, from a few sockets and
    // observers, in the order they came.
    std::vector<nat::observation> seen;
    unsigned i = 0;
    for (const auto& a : m->attributes()) {
      auto e = m->address(a.type);
      if (!e) continue;
      const auto obs = udp_endpoint(boost::asio::ip::make_address_v4(0xC6120000u + (i % 3)),
                                    static_cast<std::uint16_t>(3478 + (i % 2)));
      seen.push_back(
          {i % 4, udp_endpoint(e->address(), static_cast<std::uint16_t>(40000 + i % 4)), obs, *e});
      ++i;
    }
    auto r = nat::classify(seen, {{true, true, (size & 1) != 0}, {false, true, (size & 2) != 0}},
                           (size & 4) != 0);
    (void)r.punchable();
    if (r.observations.size() != seen.size()) __builtin_trap();
  }
  const udp_endpoint from(boost::asio::ip::make_address("198.18.0.7"), 4242);
  // The default: never more bytes than came in; with a floor, never more
  // than the floor either.
  server_options with_floor;
  with_floor.answer_floor = 64;
  if (auto f = answer(in, from, with_floor); f && f->size() > std::max<std::size_t>(size, 64))
    __builtin_trap();
  auto a = answer(in, from, {});
  if (a) {
    if (a->size() > size) __builtin_trap();
    auto r = message::parse(*a);
    if (!r || !m || r->id() != m->id()) __builtin_trap();
    if (r->cls() == msg_class::success && r->mapped() != from) __builtin_trap();
  }
  return 0;
}
