// Connection info from the wire and from JSON. The first byte picks the
// form. Whatever decodes must re-encode to the same bytes, survive the
// JSON form unchanged, and derive a punch secret without misbehaving. (The
// fuzzing build lets every signature verify, so the fuzzer reaches the
// checks behind it.)
#include "nat/connection_info.hpp"

#include <cstdint>
#include <string_view>

using namespace crust;
using namespace crust::nat;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const identity me = identity::from_secrets(secure::key32{1}, secure::key32{2});
  static const auto mine =
      private_connection_info::prepare(me, "crust",
                                       {{candidate_transport::udp, candidate_kind::host,
                                         boost::asio::ip::make_address("198.18.0.1"), 9}},
                                       {}, 1'800'000'000);
  if (size == 0) return 0;
  const std::int64_t now = 1'800'000'000;
  const byte_span in(data + 1, size - 1);
  auto got =
      data[0] & 1
          ? connection_info::from_json(
                std::string_view(reinterpret_cast<const char*>(in.data()), in.size()), "crust", now)
          : connection_info::decode(in, "crust", now);
  if (!got) {
    if (got.error().message.empty() || !got.error().code) __builtin_trap();
    return 0;
  }
  const auto wire = got->encode();
  if (!(data[0] & 1) && !std::equal(wire.begin(), wire.end(), in.begin(), in.end()))
    __builtin_trap();
  auto again = connection_info::from_json(got->to_json(), "crust", now);
  if (!again || again->encode() != wire) __builtin_trap();
  if (got->expired(now)) __builtin_trap();
  (void)mine.punch_secret(*got);
  return 0;
}
