// What the disk feeds the identity: a key file's text (identity::
// parse_key_file, as load_or_create reads it), and the hex forms of ids
// and peer keys that configs, caches and command lines carry.
#include "crust/secure/identity.hpp"

#include <cstdint>
#include <string_view>

using namespace crust;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto id = identity::parse_key_file(text)) {
    // A key file that loads names a consistent identity.
    if (id->public_key().id != id->id()) __builtin_trap();
  }
  // What parses prints back to the same value.
  if (auto p = public_id::parse(text)) {
    auto again = public_id::parse(p->to_string());
    if (!again || *again != *p) __builtin_trap();
  }
  if (auto k = peer_key::parse(text)) {
    auto again = peer_key::parse(k->to_string());
    if (!again || *again != *k) __builtin_trap();
  }
  return 0;
}
