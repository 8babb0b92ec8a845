// STUN messages (RFC 8489): the codec, with no I/O.
//
// A message is a 20-byte header (type, length, the magic cookie 0x2112A442,
// a 96-bit transaction id) and attributes, each a type, a length and a value
// padded to 4 bytes. Parsing checks the header, every attribute's bounds and
// FINGERPRINT (which must be last); it keeps the bytes, so MESSAGE-INTEGRITY
// and MESSAGE-INTEGRITY-SHA256 can be checked afterwards against a key the
// caller chooses. Attributes after MESSAGE-INTEGRITY other than the
// integrity and fingerprint attributes are ignored, as §14.5 says.
//
// What is not here: SASLprep/OpaqueString of passwords (long_term_key()
// takes the prepared password), PASSWORD-ALGORITHMS negotiation and
// USERHASH; Crust authenticates peers by Noise, not by STUN credentials.
#pragma once

#include "crust/base/bytes.hpp"
#include "crust/base/error.hpp"

#include <boost/asio/ip/udp.hpp>

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace crust::nat::stun {

using udp_endpoint = boost::asio::ip::udp::endpoint;
using transaction_id = byte_array<12>;

inline constexpr std::uint32_t magic_cookie = 0x2112A442;
inline constexpr std::size_t header_size = 20;
inline constexpr std::uint32_t fingerprint_xor = 0x5354554e;
// A message larger than this is refused: RFC 8489 §6.1 sizes messages to
// the path MTU (548 bytes is the floor it names); 2 KiB leaves room for
// TURN-sized attributes without letting a datagram claim more.
inline constexpr std::size_t max_message_size = 2048;

enum class msg_class : std::uint8_t { request = 0, indication = 1, success = 2, error = 3 };
inline constexpr std::uint16_t binding = 0x001;

namespace attr {
inline constexpr std::uint16_t mapped_address = 0x0001;
inline constexpr std::uint16_t change_request = 0x0003;  // RFC 5780
inline constexpr std::uint16_t username = 0x0006;
inline constexpr std::uint16_t message_integrity = 0x0008;
inline constexpr std::uint16_t error_code = 0x0009;
inline constexpr std::uint16_t unknown_attributes = 0x000A;
inline constexpr std::uint16_t realm = 0x0014;
inline constexpr std::uint16_t nonce = 0x0015;
inline constexpr std::uint16_t message_integrity_sha256 = 0x001C;
inline constexpr std::uint16_t password_algorithm = 0x001D;
inline constexpr std::uint16_t userhash = 0x001E;
inline constexpr std::uint16_t xor_mapped_address = 0x0020;
inline constexpr std::uint16_t priority = 0x0024;                  // RFC 8445 (ICE)
inline constexpr std::uint16_t use_candidate = 0x0025;             // RFC 8445
inline constexpr std::uint16_t padding = 0x0026;                   // RFC 5780
inline constexpr std::uint16_t response_port = 0x0027;             // RFC 5780
inline constexpr std::uint16_t xor_mapped_address_draft = 0x8020;  // pre-RFC 5389 servers
inline constexpr std::uint16_t software = 0x8022;
inline constexpr std::uint16_t alternate_server = 0x8023;
inline constexpr std::uint16_t fingerprint = 0x8028;
inline constexpr std::uint16_t ice_controlled = 0x8029;
inline constexpr std::uint16_t ice_controlling = 0x802A;
inline constexpr std::uint16_t response_origin = 0x802B;  // RFC 5780
inline constexpr std::uint16_t other_address = 0x802C;    // RFC 5780
}  // namespace attr

// Types 0x0000-0x7FFF must be understood by the receiver (§14).
constexpr bool comprehension_required(std::uint16_t type) noexcept {
  return type < 0x8000;
}

// Where a datagram would be STUN (the udp_mux test): first two bits zero,
// the cookie at bytes 4-7, at least a header long.
bool looks_like_stun(byte_span datagram) noexcept;

struct attribute {
  std::uint16_t type = 0;
  std::size_t offset = 0;  // of the value, in message::raw()
  std::size_t length = 0;  // of the value, without padding
};

struct error_value {
  int code = 0;  // 300-699
  std::string reason;
};

class message {
 public:
  // Errors: malformed (with no detail: the caller drops the datagram). A
  // message with a bad FINGERPRINT is malformed: it is not STUN.
  static result<message> parse(byte_span datagram);

  msg_class cls() const noexcept { return cls_; }
  std::uint16_t method() const noexcept { return method_; }
  const transaction_id& id() const noexcept { return id_; }
  byte_span raw() const noexcept { return raw_; }
  // The attributes in wire order, up to and including the integrity and
  // fingerprint attributes; those after MESSAGE-INTEGRITY that §14.5
  // says to ignore are left out.
  const std::vector<attribute>& attributes() const noexcept { return attrs_; }

  // The first attribute of that type.
  std::optional<byte_span> find(std::uint16_t type) const;
  // An address attribute, XOR-decoded for the XOR types. nullopt when
  // absent or malformed (wrong length or family).
  std::optional<udp_endpoint> address(std::uint16_t type) const;
  // The reflexive address: XOR-MAPPED-ADDRESS, else the draft XOR type
  // (0x8020) old servers send, else MAPPED-ADDRESS.
  std::optional<udp_endpoint> mapped() const;
  std::optional<error_value> error() const;
  std::optional<std::string> text(std::uint16_t type) const;  // SOFTWARE, USERNAME, ...

  // The comprehension-required types not in `understood`, each once.
  std::vector<std::uint16_t> unknown_required(const std::set<std::uint16_t>& understood) const;

  bool has_fingerprint() const noexcept { return fingerprint_; }
  // MESSAGE-INTEGRITY (HMAC-SHA1) / -SHA256 present and correct under `key`.
  bool check_integrity(byte_span key) const;
  bool check_integrity_sha256(byte_span key) const;

 private:
  bool check_mac(std::uint16_t type, byte_span key) const;

  bytes raw_;
  msg_class cls_ = msg_class::request;
  std::uint16_t method_ = 0;
  transaction_id id_{};
  std::vector<attribute> attrs_;
  bool fingerprint_ = false;
};

// Builds a message attribute by attribute; the header's length is kept
// current, so integrity and fingerprint attributes are computed over what
// came before them, as the receiver will check them.
class builder {
 public:
  builder(msg_class c, std::uint16_t method, const transaction_id& id);

  builder& add(std::uint16_t type, byte_span value);
  builder& add(std::uint16_t type, std::string_view value);
  // XOR-encoded for XOR-MAPPED-ADDRESS (and the draft type); plain for the
  // rest (MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS, ...).
  builder& add_address(std::uint16_t type, const udp_endpoint& ep);
  builder& add_error(int code, std::string_view reason);
  builder& add_unknown(const std::vector<std::uint16_t>& types);
  builder& add_padding(std::size_t value_length);
  builder& add_integrity(byte_span key);         // HMAC-SHA1, 20 bytes
  builder& add_integrity_sha256(byte_span key);  // HMAC-SHA256, 32 bytes
  builder& add_fingerprint();

  std::size_t size() const noexcept { return out_.size(); }
  bytes finish() && { return std::move(out_); }

  // What an attribute with a value of that length adds to a message.
  static constexpr std::size_t attribute_size(std::size_t value_length) noexcept {
    return 4 + ((value_length + 3) & ~std::size_t{3});
  }
  static std::size_t address_size(const udp_endpoint& ep) noexcept {
    return attribute_size(ep.address().is_v4() ? 8 : 20);
  }

 private:
  void set_length();

  bytes out_;
  transaction_id id_;
};

transaction_id random_transaction_id();
// The long-term credential key (§9.2.2): MD5(username ":" realm ":"
// password), the password already prepared with OpaqueString.
bytes long_term_key(std::string_view username, std::string_view realm, std::string_view password);
// FINGERPRINT's value for these bytes: CRC-32 XOR 0x5354554e.
std::uint32_t fingerprint_of(byte_span data) noexcept;

std::string_view default_reason(int code) noexcept;

}  // namespace crust::nat::stun
