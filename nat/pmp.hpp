// NAT-PMP (RFC 6886) and PCP (RFC 6887) MAP messages, without I/O: what a
// client sends to its gateway's UDP port 5351 to ask for a port mapping,
// and what it makes of the answer. Both protocols share the port; a
// NAT-PMP-only gateway answers a PCP request with a NAT-PMP "unsupported
// version" (version 0, result 1), which is how a client learns to fall
// back. Only the parts a mapping client needs are here: NAT-PMP's
// external-address and map operations, PCP's MAP opcode (options in an
// answer are skipped, none are sent).
//
//   NAT-PMP request:  u8 0 | u8 op (0 address, 1 udp, 2 tcp) | ...
//     map: u16 0 | u16 internal port | u16 suggested external | u32 lifetime
//   NAT-PMP answer:   u8 0 | u8 128+op | u16 result | u32 epoch | ...
//     address: external IPv4 (4)
//     map: u16 internal port | u16 external port | u32 lifetime
//   PCP request:      u8 2 | u8 opcode (1 MAP) | u16 0 | u32 lifetime
//                     | client address (16, IPv4-mapped) | MAP body
//   PCP answer:       u8 2 | u8 0x80|opcode | u8 0 | u8 result
//                     | u32 lifetime | u32 epoch | 12 reserved | MAP body
//                     | options
//   MAP body:         nonce (12) | u8 protocol (6 tcp, 17 udp) | 3 zero
//                     | u16 internal port | u16 (suggested|assigned) external
//                     | external address (16, IPv4-mapped)
//
// A lifetime of 0 deletes a mapping (NAT-PMP also wants the suggested
// external port 0).
#pragma once

#include "crust/base/bytes.hpp"

#include <boost/asio/ip/address.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace crust::nat::pmp {

inline constexpr std::uint16_t server_port = 5351;
inline constexpr std::size_t max_message = 1100;  // PCP's bound (RFC 6887 §7)

enum class protocol : std::uint8_t { tcp = 6, udp = 17 };
std::string_view to_string(protocol p) noexcept;

using nonce = std::array<std::uint8_t, 12>;

// A mapping request, in either protocol.
struct map_request {
  protocol proto = protocol::udp;
  std::uint16_t internal_port = 0;
  std::uint16_t suggested_external_port = 0;  // 0: the gateway picks
  std::uint32_t lifetime = 3600;              // seconds; 0 deletes
  // PCP only: the client's own address as it sends (checked by the
  // gateway against the packet's source), the suggested external address
  // (unspecified: any) and the nonce that ties answers and renewals to
  // this mapping.
  boost::asio::ip::address client;
  boost::asio::ip::address suggested_external;
  nonce id{};
};

bytes encode_natpmp_address_request();
bytes encode_natpmp_map(const map_request& r);
bytes encode_pcp_map(const map_request& r);

enum class answer_kind : std::uint8_t {
  natpmp_address,  // NAT-PMP external address answer
  natpmp_map,      // NAT-PMP map answer
  pcp_map,         // PCP MAP answer
};

// A parsed answer. `result` is the protocol's own result code (NAT-PMP's
// 16-bit one, PCP's 8-bit one); 0 is success in both.
struct answer {
  answer_kind kind = answer_kind::natpmp_map;
  std::uint16_t result = 0;
  std::uint32_t epoch = 0;
  std::uint32_t lifetime = 0;
  protocol proto = protocol::udp;
  std::uint16_t internal_port = 0;
  std::uint16_t external_port = 0;
  boost::asio::ip::address external;  // address answers and PCP
  nonce id{};                         // PCP
};

// What a datagram from the gateway says, or why it is not an answer
// (truncated, not a response, an unknown version or opcode). Never throws;
// any bytes are safe.
struct parse_error {
  std::string message;
};
std::optional<answer> parse(byte_span datagram, parse_error* why = nullptr);

// Whether `a` answers `r` (same protocol and internal port; for PCP the
// same nonce). An answer that does not is someone else's and is ignored.
bool answers(const answer& a, const map_request& r, bool pcp) noexcept;

// "success", "not authorized", ... for either protocol's result codes.
std::string_view natpmp_result_name(std::uint16_t code) noexcept;
std::string_view pcp_result_name(std::uint16_t code) noexcept;
// Whether an answer with this result code says the gateway speaks NAT-PMP
// only (a version-0 "unsupported version" to our PCP request).
bool is_natpmp_version_refusal(const answer& a) noexcept;

}  // namespace crust::nat::pmp
