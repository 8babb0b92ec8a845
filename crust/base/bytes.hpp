// Byte containers and the hex form used in files, ids and test vectors.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace crust {

using byte = std::uint8_t;
using bytes = std::vector<byte>;
using byte_span = std::span<const byte>;
using mutable_byte_span = std::span<byte>;

template <std::size_t N>
using byte_array = std::array<byte, N>;

std::string to_hex(byte_span data);
// Lower- or upper-case hex, even length; nullopt on anything else.
std::optional<bytes> from_hex(std::string_view hex);

inline byte_span as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const byte*>(s.data()), s.size()};
}

inline void append(bytes& out, byte_span in) {
  out.insert(out.end(), in.begin(), in.end());
}

inline void put_u16(bytes& out, std::uint16_t v) {
  out.push_back(static_cast<byte>(v >> 8));
  out.push_back(static_cast<byte>(v));
}
inline void put_u32(bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<byte>(v >> shift));
}
inline std::uint16_t get_u16(const byte* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t get_u32(const byte* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

// Constant-time comparison for secrets and MACs.
bool equal_ct(byte_span a, byte_span b) noexcept;

}  // namespace crust
