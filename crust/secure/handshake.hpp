// Crust's handshake over Noise, as a state machine without I/O, and the
// coroutine that drives it over a stream.
//
// Wire (docs/PROTOCOL.md has the full description):
//   prologue  = "CRUST" || u16be protocol version || u8 len || network name
//   XK (the dialler knows the responder's peer_key):
//     -> e, es              48 bytes (empty payload)
//     <- e, ee              144 bytes (payload: identity proof)
//     -> s, se              160 bytes (payload: identity proof)
//   XX (address-only dial), padded so its first message has XK's size:
//     -> e                  48 bytes (payload: 16 random bytes)
//     <- e, ee, s, es       192 bytes
//     -> s, se              160 bytes
//   identity proof = Ed25519 id (32) || Ed25519 signature (64) over
//     "crust-handshake-v1" || h || sender's Noise static key,
//   where h is the handshake hash just before the payload.
// The responder tries XK on the first message and falls back to XX if it
// accepts address-only dials; nothing on the wire is plaintext but the
// ephemeral keys (and XX's random padding).
#pragma once

#include "crust/base/version.hpp"
#include "crust/secure/identity.hpp"
#include "crust/secure/noise.hpp"

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <optional>
#include <string>

namespace crust::transport {
class stream;
}

namespace crust::secure {

inline constexpr std::uint16_t protocol_version = wire_protocol_version;
inline constexpr std::size_t max_network_name = 255;

bytes make_prologue(std::string_view network, std::uint16_t version = protocol_version);

struct handshake_result {
  noise::transport_keys keys;
  peer_key remote;
  bool initiator = false;
  bool address_only = false;  // XX was used
};

class handshake {
 public:
  struct step {
    bytes send;              // bytes to write now (may be empty)
    std::size_t expect = 0;  // exact size of the next message to read; 0 = none
    bool done = false;
  };

  // Dial: XK when `expected` is set, XX otherwise.
  static handshake initiator(const identity& me, std::string_view network,
                             std::optional<peer_key> expected);
  static handshake responder(const identity& me, std::string_view network, bool accept_xx);
  // Responder: asked, when a first message does not authenticate as XK and
  // XX is accepted, whether to answer it as XX now. Answering costs a key
  // pair, two more DHs and a signature for a message anyone can send; a
  // node under a flood says no, and the message has cost one DH.
  void set_address_only_gate(std::function<bool()> gate) { xx_gate_ = std::move(gate); }

  // First step: the initiator's first message, or what the responder awaits.
  result<step> start();
  // Feeds one whole message of the size the last step asked for. Errors:
  // handshake_failed (does not authenticate), wrong_peer_key, bad_signature.
  result<step> receive(byte_span message);
  // After a step with done == true.
  result<handshake_result> finish();

  // Test hook: fixed ephemeral keys, used in the order the machine needs them.
  void set_ephemeral_for_test(const x25519_keypair& e) { test_e_ = e; }

 private:
  handshake(const identity& me, std::string_view network)
      : me_(&me), prologue_(make_prologue(network)) {}
  result<noise::handshake_state> make_state(noise::pattern p, bool initiator,
                                            std::optional<key32> rs) const;
  bytes proof(const key32& h) const;
  result<void> check_proof(byte_span payload);

  // Stored for the duration of one handshake; the caller keeps the identity alive.
  const identity* me_;
  bytes prologue_;
  bool initiator_ = false;
  bool accept_xx_ = false;
  std::function<bool()> xx_gate_;
  std::optional<peer_key> expected_;
  std::optional<noise::handshake_state> hs_;
  std::optional<x25519_keypair> test_e_;
  std::optional<peer_key> remote_;
  bool xx_ = false;
  int stage_ = 0;
};

// Runs `hs` over `s`. No deadline of its own: wrap it in with_timeout.
// Errors: those of handshake::receive, handshake_rejected when the peer
// closes mid-handshake, or the stream's error; cancellation closes nothing
// but abandons the handshake (the caller closes the stream).
boost::asio::awaitable<result<handshake_result>> run_handshake(transport::stream& s, handshake hs);

}  // namespace crust::secure
