// The µTP (BEP 29) wire format: header, extension chain and selective-ACK
// bitmask, plus the 16-bit sequence arithmetic the state machine builds on.
// No I/O: bytes in, structs out, and back.
#pragma once

#include "crust/base/bytes.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace crust::utp {

enum class packet_type : std::uint8_t { data = 0, fin = 1, state = 2, reset = 3, syn = 4 };
const char* to_string(packet_type t) noexcept;

inline constexpr std::size_t header_size = 20;
inline constexpr std::uint8_t version = 1;
// The SACK length travels in one byte and must be a multiple of 4.
inline constexpr std::size_t max_sack_bytes = 252;
// Crust's own extensions for path MTU probing. Both carry a 4-byte
// big-endian probe id. A probe is a STATE padded to the size being tried;
// the peer answers it at once, echoing the id on its next packet. Only a
// peer that said it answers probes is sent one: that is bit 0 of the last
// byte of BEP 29's "extension bits" (type 2, 8 bytes), which our SYN and
// the STATE answering a SYN carry. libutp reads a datagram as µTP only if
// its first extension is a known type (below 3), and skips unknown types
// further down the chain; so the bits go before ours, and ours go only to
// peers that set the bit.
inline constexpr std::uint8_t ext_bits = 2;
inline constexpr std::uint8_t ext_mtu_probe = 0xc0;
inline constexpr std::uint8_t ext_mtu_echo = 0xc1;
inline constexpr std::size_t mtu_ext_size = 6;    // type/len link plus the id
inline constexpr std::size_t ext_bits_size = 10;  // type/len link plus the 8 bits

struct header {
  packet_type type = packet_type::data;
  std::uint16_t connection_id = 0;
  std::uint32_t timestamp_us = 0;
  std::uint32_t timestamp_diff_us = 0;
  std::uint32_t wnd_size = 0;  // bytes the sender can still receive
  std::uint16_t seq_nr = 0;
  std::uint16_t ack_nr = 0;

  friend bool operator==(const header&, const header&) = default;
};

struct packet {
  header h;
  // Selective-ACK bitmask (see sack_has); length a multiple of 4, >= 4.
  std::optional<std::vector<std::uint8_t>> sack;
  std::optional<std::uint32_t> mtu_probe, mtu_echo;  // ids, see ext_mtu_probe
  bool answers_probes = false;                       // the extension bit, see ext_bits
  // A view into the decoded datagram: valid only while that buffer is.
  byte_span payload;
};

// Appends the datagram to `out`. An empty `sack` means no SACK extension; a
// non-empty one must be a multiple of 4 bytes, at most max_sack_bytes, else
// std::invalid_argument (a caller bug, not a peer's). The extension bits
// (when `announce`) and the MTU extensions follow the SACK, in that order.
struct mtu_ids {
  std::optional<std::uint32_t> probe, echo;
  bool announce = false;
};
void encode(const header& h, byte_span sack, byte_span payload, bytes& out,
            const mtu_ids& mtu = {});
bytes encode(const header& h, byte_span sack = {}, byte_span payload = {});
bytes encode(const packet& p);

enum class decode_error : std::uint8_t {
  too_short = 1,  // fewer than header_size bytes
  bad_version,    // version nibble is not 1
  bad_type,       // type nibble above syn
  bad_extension,  // chain runs past the end, or a SACK length of 0 or not a multiple of 4
};
const char* to_string(decode_error e) noexcept;

// The packet, or why the datagram is not one. A value type rather than
// result<T> so the codec depends on nothing but bytes.hpp.
struct decode_result {
  std::optional<packet> value;
  decode_error error = decode_error::too_short;  // meaningful only without a value

  explicit operator bool() const noexcept { return value.has_value(); }
  const packet& operator*() const { return *value; }
  const packet* operator->() const { return &*value; }
};

// Parses one datagram. Extensions other than SACK, the extension bits and
// the MTU pair are skipped, as is one of those three whose length is not
// what it should be (8, 4, 4); only the first of each is kept.
// Everything after the chain is payload, whatever the type: whether a DATA
// without payload or a STATE with one is acceptable is the state machine's call.
decode_result decode(byte_span datagram);

// Bit i of a SACK mask acknowledges seq_nr ack_nr + 2 + i (ack_nr + 1 is
// implicitly missing); bits go LSB first within a byte, bytes in order.
bool sack_has(std::span<const std::uint8_t> mask, std::size_t i) noexcept;
// Sets bit i, growing `mask` to the next multiple of 4 bytes if needed. The
// result encodes only while i < max_sack_bytes * 8.
void sack_set(std::vector<std::uint8_t>& mask, std::size_t i);

// Sequence numbers wrap at 2^16. `a` is before `b` when b is 1..32767 steps
// ahead; two numbers exactly 32768 apart are ordered neither way.
constexpr bool seq_less(std::uint16_t a, std::uint16_t b) noexcept {
  const auto ahead = static_cast<std::uint16_t>(b - a);
  return ahead != 0 && ahead < 0x8000;
}
// Steps forward from `from` to `to`, modulo 2^16.
constexpr std::uint16_t seq_distance(std::uint16_t from, std::uint16_t to) noexcept {
  return static_cast<std::uint16_t>(to - from);
}

// Demultiplexing a UDP socket shared with STUN. µTP's first byte is
// type << 4 | 1 with type 0..4 (0x01, 0x11, 0x21, 0x31, 0x41), and a datagram
// holds at least the 20-byte header. STUN only promises that its first two
// bits are 00, so all of these but 0x41 can start STUN too (0x01 does: a
// Binding success response, type 0x0101). Those are told apart by STUN's
// magic cookie 0x2112A442 at bytes 4..7, where µTP has its timestamp; a µTP
// packet whose timestamp equals the cookie (1 in 2^32) goes to STUN and is
// lost like any dropped packet.
bool looks_like_utp(byte_span datagram) noexcept;

}  // namespace crust::utp
