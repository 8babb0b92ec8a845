#include "crust/base/bytes.hpp"

namespace crust {

std::string to_hex(byte_span data) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (byte b : data) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0xf]);
  }
  return out;
}

std::optional<bytes> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  bytes out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]);
    int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<byte>((hi << 4) | lo));
  }
  return out;
}

bool equal_ct(byte_span a, byte_span b) noexcept {
  if (a.size() != b.size()) return false;
  byte acc = 0;
  for (std::size_t i = 0; i < a.size(); ++i) acc = static_cast<byte>(acc | (a[i] ^ b[i]));
  return acc == 0;
}

}  // namespace crust
