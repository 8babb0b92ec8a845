// The LAN beacon, without I/O: who is on this LAN, on our network?
//
// An asker broadcasts a request on the service-discovery port; every node
// of the same network answers with a contact record signed by its id key
// and encrypted to the asker's one-time key. Wire format (v1):
//
//   request  = "CRSD" | u8 1 (version) | u8 1 (request)
//            | network tag (32) | asker ephemeral X25519 public key (32)
//            | nonce (16) | zero padding up to beacon_request_size
//   response = "CRSD" | u8 1 | u8 2 (response) | nonce (16)
//            | responder ephemeral X25519 public key (32)
//            | ChaCha20-Poly1305(record) (+16), keyed by
//              HMAC-SHA256(nonce, DH(ephemerals) | asker eph | responder eph),
//              nonce 0, the response header as associated data
//   record   = id (32) | Noise static key (32) | u32 time high | u32 time low
//            | u8 n | n x (u8 family 0/4/6 | address 0/4/16 | u16 port)
//            | Ed25519 signature (64) by id over "crust-beacon-v1" | tag
//              | nonce | asker eph | the record up to the signature
//   network tag = SHA-256("crust-beacon-v1" | network name)
//
// Family 0 means "the address this response came from" (a node listening
// on a wildcard address). Requests of another network are not answered;
// responses never exceed the request (no amplification), and the responder
// rate-limits per source (transport::rate_limiter).
#pragma once

#include "crust/base/clock.hpp"
#include "crust/secure/identity.hpp"
#include "transports/endpoint.hpp"
#include "transports/rate_limit.hpp"

#include <map>
#include <optional>
#include <string_view>
#include <vector>

namespace crust::bootstrap {

inline constexpr std::size_t beacon_request_size = 512;
inline constexpr std::size_t beacon_max_endpoints = 8;
inline constexpr std::uint16_t default_discovery_port = 5484;

// An endpoint a node advertises: no address = "where my answer came from".
struct advertised_endpoint {
  std::optional<boost::asio::ip::address> address;
  std::uint16_t port = 0;
};

struct beacon_contact {
  peer_key key;
  std::vector<transport::tcp_endpoint> endpoints;
  std::int64_t timestamp = 0;  // the responder's clock, Unix seconds
};

// One discovery round on the asking side: a fresh ephemeral key and nonce.
class beacon_query {
 public:
  explicit beacon_query(std::string_view network_name);
  // With a given key and nonce (fuzzing and tests).
  beacon_query(std::string_view network_name, secure::x25519_keypair eph, byte_array<16> nonce);
  bytes request() const;
  // The contact in a response to this query from `from`, or nullopt for
  // anything else: not a response, another query's, another network's,
  // tampered, or badly signed.
  std::optional<beacon_contact> accept(byte_span response,
                                       const boost::asio::ip::address& from) const;
  // True when `datagram` is this query's own request (heard back on a
  // broadcast we also listen to).
  bool is_own_request(byte_span datagram) const;

 private:
  secure::key32 tag_;
  secure::x25519_keypair eph_;
  byte_array<16> nonce_{};
};

// The responder's answer to `request`, or nullopt when it is not a request
// of `network_name`, is malformed, or the answer would be larger than it.
std::optional<bytes> beacon_answer(byte_span request, std::string_view network_name,
                                   const identity& me,
                                   const std::vector<advertised_endpoint>& endpoints,
                                   std::int64_t now);

}  // namespace crust::bootstrap
