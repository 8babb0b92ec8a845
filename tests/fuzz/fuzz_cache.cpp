// The bootstrap cache file on arbitrary text: entries are taken or skipped,
// every bound holds afterwards, and what is kept survives a round trip.
#include "bootstrap/cache.hpp"

#include <cstdint>
#include <map>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace crust::bootstrap;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  const cache_limits limits{.capacity = 6, .per_group = 2, .per_source = 3};
  cache c(limits);
  auto report = c.parse(text, "crust");
  if (c.size() > limits.capacity || report.loaded != c.size()) __builtin_trap();
  std::map<std::string, std::size_t> groups, sources;
  for (const auto& e : c.entries()) {
    auto g = address_group(e.endpoint.address());
    if (!g.empty() && ++groups[g] > limits.per_group) __builtin_trap();
    if (e.source != direct_source && ++sources[e.source] > limits.per_source) __builtin_trap();
  }
  cache again(limits);
  auto r2 = again.parse(c.to_json("crust"), "crust");
  if (!r2.problem.empty() || again.to_json("crust") != c.to_json("crust")) __builtin_trap();
  return 0;
}
