/// \file
/// Connection info (Crust's prepare_connection_info), without I/O: where a
/// node can be reached, signed by its id key, for a peer that wants to
/// connect through NATs. The owner keeps a private part (the punch key's
/// secret half); the public part is handed to the other side, out of band
/// or through a peer both are connected to.
///
/// Binary form (v1), the wire's; all integers big-endian:
///
///   "CRCI" | u8 1 (version) | network tag (8)
///   | id (32) | Noise static key (32) | punch key: X25519 public (32)
///   | nonce (16) | u64 created (Unix seconds) | u32 lifetime (seconds)
///   | u8 mapping | u8 allocation | u16 port step (two's complement)
///   | u8 filtering | u8 flags (bit 0: hairpinning known, bit 1: it works)
///   | u8 n (1..max_candidates)
///   | n x (u8 transport (1 tcp, 2 udp) | u8 kind (1 host, 2 reflexive,
///          3 mapped) | u8 family (4, 6) | address (4 or 16) | u16 port)
///   | Ed25519 signature (64) by id over
///       "crust-conninfo-v1" | SHA-256("crust-conninfo-v1" | network name)
///       | everything above it
///
/// The 8-byte network tag (the first bytes of that hash) lets a reader say
/// "another network" instead of "bad signature"; the signature covers the
/// full hash. The Noise static key is bound to the id by that signature,
/// so a dialler can run Noise XK from this info alone.
///
/// The JSON form (to_json, from_json) carries the same fields for humans;
/// from_json rebuilds the binary form and checks it through decode, so both
/// forms pass the same checks.
#pragma once

#include "crust/base/bytes.hpp"
#include "crust/base/error.hpp"
#include "crust/secure/identity.hpp"
#include "nat/behaviour.hpp"

#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crust::nat {

inline constexpr std::size_t max_candidates = 16;
/// Clocks of the two sides may disagree by this much.
inline constexpr std::int64_t info_clock_skew = 300;
inline constexpr std::uint32_t info_max_lifetime = 24 * 3600;
inline constexpr std::uint32_t info_default_lifetime = 600;

enum class candidate_transport : std::uint8_t { tcp = 1, udp = 2 };
enum class candidate_kind : std::uint8_t {
  host = 1,       ///< a local address of the node
  reflexive = 2,  ///< where a STUN server saw the node (server-reflexive)
  mapped = 3,     ///< a port mapping on the gateway (UPnP-IGD, NAT-PMP, PCP)
};
std::string_view to_string(candidate_transport t) noexcept;
std::string_view to_string(candidate_kind k) noexcept;

struct candidate {
  candidate_transport transport = candidate_transport::udp;
  candidate_kind kind = candidate_kind::host;
  boost::asio::ip::address address;
  std::uint16_t port = 0;

  std::string endpoint_string() const;  ///< "1.2.3.4:5" or "[::1]:5"
  bool operator==(const candidate&) const = default;
};

/// The wire form of one candidate, as connection infos and contact records
/// (bootstrap/contact_record.hpp) carry it: u8 transport | u8 kind | u8
/// family (4, 6) | address (4 or 16) | u16 port.
void encode_candidate(bytes& out, const candidate& k);
/// Reads `n` candidates at `at` into `out` and moves `at` past them.
/// Returns why the bytes are not `n` distinct unicast candidates, naming
/// the form they belong to (`what`: "a connection info"), or nullopt.
std::optional<std::string> decode_candidates(byte_span d, std::size_t& at, std::size_t n,
                                             std::string_view what, std::vector<candidate>& out);

/// What signed forms (connection infos, contact records) sign: a domain
/// string, the SHA-256 of the domain and the network name, then the body.
/// The first 8 bytes of that hash, carried in clear, are the network tag.
namespace signed_form {
secure::key32 network_hash(std::string_view domain, std::string_view network);
byte_array<8> network_tag(std::string_view domain, std::string_view network);
bytes message(std::string_view domain, std::string_view network, byte_span body);
}  // namespace signed_form

/// What the owner's NAT does, as far as it knows (a nat_report's summary):
/// the other side uses it to choose punching strategies (port prediction
/// needs the step).
struct nat_hint {
  mapping_behaviour mapping = mapping_behaviour::unknown;
  allocation_behaviour allocation = allocation_behaviour::unknown;
  int port_step = 0;  ///< -32768..32767
  filtering_behaviour filtering = filtering_behaviour::unknown;
  std::optional<bool> hairpinning;

  static nat_hint from(const nat_report& r);
  bool operator==(const nat_hint&) const = default;
};

/// Why an info was refused: the code (malformed, wrong_network,
/// bad_signature, expired) and a sentence naming what was wrong.
struct info_error {
  error_code code;
  std::string message;
};

struct connection_info {
  byte_array<8> network_tag{};  ///< the first bytes of the network's hash
  peer_key key;
  secure::key32 punch_key{};  ///< X25519 public half; the secret stays with the owner
  byte_array<16> nonce{};     ///< names this info (and the connection attempt)
  std::int64_t created = 0;   ///< the owner's clock, Unix seconds
  std::uint32_t lifetime = info_default_lifetime;
  nat_hint nat;
  std::vector<candidate> candidates;  ///< in the owner's order of preference
  secure::signature64 signature{};

  /// The binary form (the signature as it is: sign() first).
  bytes encode() const;
  std::string to_json() const;
  /// Checks everything, in this order: layout (malformed), network,
  /// signature, then time (expired: created more than info_clock_skew ahead
  /// of `now`, or older than its lifetime plus that skew).
  static boost::system::result<connection_info, info_error> decode(byte_span wire,
                                                                   std::string_view network_name,
                                                                   std::int64_t now);
  static boost::system::result<connection_info, info_error> from_json(std::string_view text,
                                                                      std::string_view network_name,
                                                                      std::int64_t now);
  bool expired(std::int64_t now) const noexcept;
};

/// The owner's side: the public info and the punch key's secret half.
class private_connection_info {
 public:
  /// Signs an info for `candidates` (at most max_candidates, duplicates
  /// removed, order kept) with a fresh punch key and nonce. Lifetime is
  /// clamped to 1..info_max_lifetime seconds.
  static private_connection_info prepare(const identity& me, std::string_view network_name,
                                         std::vector<candidate> candidates, nat_hint nat,
                                         std::int64_t now,
                                         std::uint32_t lifetime = info_default_lifetime);
  /// The same with a given punch key and nonce (tests and fuzzing).
  static private_connection_info prepare(const identity& me, std::string_view network_name,
                                         std::vector<candidate> candidates, nat_hint nat,
                                         std::int64_t now, std::uint32_t lifetime,
                                         const secure::x25519_keypair& punch,
                                         const byte_array<16>& nonce);

  const connection_info& pub() const noexcept { return pub_; }
  /// The key both sides derive for authenticating punch probes between this
  /// info and `theirs`: HMAC-SHA256 keyed by both nonces (the lower first)
  /// over DH(our punch key, theirs) and both punch keys (the lower first).
  /// Equal on both sides; differs for any other pair of infos. Errors:
  /// crypto_failure (their punch key is a low-order point).
  result<secure::key32> punch_secret(const connection_info& theirs) const;

 private:
  connection_info pub_;
  secure::x25519_keypair punch_;
};

}  // namespace crust::nat
