// The µTP codec on arbitrary datagrams: decode must never misbehave, and a
// decoded packet must survive encode + decode field for field (unknown
// extensions are dropped on re-encode, so bytes may differ).
#include "transports/utp/packet.hpp"

#include <algorithm>
#include <cstdint>

using namespace crust;
using namespace crust::utp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const byte_span in(data, size);
  const bool utp_shaped = looks_like_utp(in);
  auto first = decode(in);
  if (!first) return 0;
  // Anything decode accepts has a µTP first byte, so only a STUN cookie
  // (bytes 4..7) may make the demultiplexer say no.
  if (!utp_shaped && get_u32(data + 4) != 0x2112A442) __builtin_trap();
  if (first->payload.data() < data || first->payload.data() + first->payload.size() != data + size)
    __builtin_trap();

  const bytes wire = encode(*first);
  auto second = decode(wire);
  if (!second) __builtin_trap();
  if (!(second->h == first->h)) __builtin_trap();
  if (second->sack != first->sack) __builtin_trap();
  if (!std::ranges::equal(second->payload, first->payload)) __builtin_trap();
  if (encode(*second) != wire) __builtin_trap();  // canonical form is a fixed point
  return 0;
}
