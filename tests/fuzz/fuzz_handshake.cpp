// Both sides of the handshake state machine, fed fuzzer bytes as the peer's
// messages. The first input byte picks the side and the options; the rest
// is cut into messages of the sizes the machine asks for. In the fuzzing
// build an AEAD tag verifies when its first byte is zero and every
// signature verifies, so the payload parsing and the proof checks behind
// them are reached, and a responder that accepts XX reads a first message
// with a non-zero tag as XX (seed responder_xx_fallback).
#include "crust/secure/handshake.hpp"

#include <cstdint>

using namespace crust;
using namespace crust::secure;

namespace {
const identity& me() {
  static const identity id = identity::from_secrets(key32{1}, key32{2});
  return id;
}
const identity& them() {
  static const identity id = identity::from_secrets(key32{3}, key32{4});
  return id;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t mode = data[0];
  byte_span rest(data + 1, size - 1);
  std::optional<peer_key> expected;
  if (mode & 2) expected = them().public_key();
  auto hs = (mode & 1) ? handshake::initiator(me(), "fuzz", expected)
                       : handshake::responder(me(), "fuzz", (mode & 4) != 0);
  // Bit 3: the service's gate for XX answers says no (a node under a flood).
  if (mode & 8) hs.set_address_only_gate([] { return false; });
  auto st = hs.start();
  if (!st) return 0;
  while (!st->done) {
    if (rest.size() < st->expect) {
      // A truncated message: the machine must refuse it, not read past it.
      auto short_msg = hs.receive(rest);
      if (short_msg && !rest.empty() && short_msg->done) __builtin_trap();
      return 0;
    }
    auto msg = rest.first(st->expect);
    rest = rest.subspan(st->expect);
    st = hs.receive(msg);
    if (!st) return 0;
  }
  auto done = hs.finish();
  if (!done) __builtin_trap();  // a finished machine must yield keys
  return 0;
}
