/// \file
/// A contact record: where a node can be reached, signed by its id key, to
/// be passed on by gossip (bootstrap/gossip.hpp). Unlike a connection info
/// (nat/connection_info.hpp), which names one rendezvous and lives minutes,
/// a record is the node's standing advertisement: it carries no punch key,
/// and a newer one from the same id replaces it.
///
/// Binary form (v1); all integers big-endian:
///
///   "CRCR" | u8 1 (version) | network tag (8) | id (32) | Noise static key (32)
///   | u64 issued (Unix seconds) | u8 n (1..max_record_candidates)
///   | n x candidate (nat/connection_info.hpp: transport, kind, family,
///          address, u16 port)
///   | Ed25519 signature (64) by id over
///       "crust-contact-v1" | SHA-256("crust-contact-v1" | network name)
///       | everything above it
///
/// The signature binds the Noise static key to the id, so a dialler can run
/// Noise XK from a record alone.
#pragma once

#include "crust/base/bytes.hpp"
#include "crust/secure/identity.hpp"
#include "nat/connection_info.hpp"
#include "transports/endpoint.hpp"

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace crust::bootstrap {

inline constexpr std::size_t max_record_candidates = 8;
/// The largest record: 8 IPv6 candidates.
inline constexpr std::size_t max_record_size =
    4 + 1 + 8 + 32 + 32 + 8 + 1 + max_record_candidates * 21 + 64;

struct contact_record {
  byte_array<8> network_tag{};
  peer_key key;
  std::int64_t issued = 0;  ///< the owner's clock, Unix seconds
  std::vector<nat::candidate> candidates;
  secure::signature64 signature{};

  /// Signs a record of `candidates` (at most max_record_candidates, first
  /// ones kept, duplicates removed) issued at `now`.
  static contact_record make(const identity& me, std::string_view network_name,
                             std::vector<nat::candidate> candidates, std::int64_t now);

  bytes encode() const;
  /// Checks layout (malformed), network (wrong_network) and time (expired:
  /// issued more than `skew` ahead of `now`, or more than `max_age` ago),
  /// in that order, but not the signature: verify() does, so that a reader
  /// may skip it for bytes it has already verified.
  static boost::system::result<contact_record, nat::info_error> parse(byte_span wire,
                                                                      std::string_view network_name,
                                                                      std::int64_t now,
                                                                      std::int64_t max_age,
                                                                      std::int64_t skew = 300);
  /// Whether the signature is the id's over this record in `network_name`.
  bool verify(std::string_view network_name) const;

  /// The TCP candidates, in the record's order.
  std::vector<transport::tcp_endpoint> tcp_endpoints() const;
  /// The first TCP candidate (where a dial-back goes), if any.
  std::optional<transport::tcp_endpoint> tcp_endpoint() const;
  bool operator==(const contact_record&) const = default;
};

}  // namespace crust::bootstrap
