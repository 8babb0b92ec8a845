// The config parser on arbitrary text: a value or an error with a message,
// never a crash.
#include "crust/config.hpp"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = crust::config::parse(text, "fuzz.json");
  if (!c && c.error().message.empty()) __builtin_trap();
  if (c) {
    auto again = crust::config::parse(c->to_json(), "round-trip");
    if (!again || again->to_json() != c->to_json()) __builtin_trap();
  }
  return 0;
}
