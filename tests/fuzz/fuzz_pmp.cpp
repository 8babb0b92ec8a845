// NAT-PMP and PCP answers, as a hostile gateway (or anyone who can reach
// our mapping socket) might send them: parse must never misbehave, an
// answer it accepts is self-consistent, and matching it against a request
// never reads what parse did not.
#include "nat/pmp.hpp"

#include <cstdint>

using namespace crust;
using namespace crust::nat::pmp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  parse_error why;
  auto a = parse(byte_span(data, size), &why);
  if (!a) {
    if (why.message.empty()) __builtin_trap();  // every refusal has a reason
    return 0;
  }
  if (size < 2 || (data[1] & 0x80) == 0) __builtin_trap();  // only answers are accepted
  if (a->kind == answer_kind::pcp_map && (data[0] != 2 || size > max_message)) __builtin_trap();
  if (a->kind != answer_kind::pcp_map && data[0] != 0) __builtin_trap();
  map_request r;
  r.proto = a->proto;
  r.internal_port = a->internal_port;
  r.id = a->id;
  // An answer to the request it describes matches in its own protocol.
  const bool pcp = a->kind == answer_kind::pcp_map;
  if (a->kind != answer_kind::natpmp_address && a->result == 0 && !answers(*a, r, pcp))
    __builtin_trap();
  (void)is_natpmp_version_refusal(*a);
  (void)pcp_result_name(a->result);
  (void)natpmp_result_name(a->result);
  return 0;
}
