// The Noise Protocol Framework (revision 34) with 25519, ChaChaPoly and
// SHA256: CipherState, SymmetricState and HandshakeState for the
// interactive fundamental patterns. Crust uses XK (dialling a known key) and
// XX (dialling a bare address); the others exist so the conformance test can
// replay more of the cacophony vectors against the same engine.
#pragma once

#include "crust/secure/crypto.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crust::secure::noise {

inline constexpr std::size_t dh_len = 32;
inline constexpr std::size_t max_message_len = 65535;

enum class pattern { NN, NK, NX, XN, XK, XX, KN, KK, KX, IN, IK, IX };

std::string_view pattern_name(pattern p) noexcept;
std::optional<pattern> pattern_from_name(std::string_view name) noexcept;
// "Noise_<P>_25519_ChaChaPoly_SHA256"
std::string protocol_name(pattern p);

class cipher_state {
 public:
  void initialize_key(const key32& k) noexcept {
    k_ = k;
    has_key_ = true;
    n_ = 0;
  }
  bool has_key() const noexcept { return has_key_; }
  std::uint64_t nonce() const noexcept { return n_; }
  void set_nonce(std::uint64_t n) noexcept { n_ = n; }

  // Appends ciphertext (plaintext + tag, or plaintext when there is no key).
  // Nonce exhaustion (2^64-1 is reserved) is a caller bug: crypto_failure.
  result<void> encrypt_with_ad(byte_span ad, byte_span plaintext, bytes& out);
  result<void> decrypt_with_ad(byte_span ad, byte_span ciphertext, bytes& out);

  // In-place variants for the frame layer: seal writes pt+16 bytes at `out`.
  result<void> seal_in_place(byte_span ad, byte* data, std::size_t plaintext_len);
  result<void> open_in_place(byte_span ad, byte* data, std::size_t ciphertext_len);

  // Noise §11.3: k = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros).
  void rekey();

 private:
  key32 k_{};
  bool has_key_ = false;
  std::uint64_t n_ = 0;
  chacha20_poly1305 aead_;
};

class symmetric_state {
 public:
  void initialize(std::string_view protocol_name);
  void mix_key(byte_span ikm);
  void mix_hash(byte_span data);
  result<void> encrypt_and_hash(byte_span plaintext, bytes& out);
  result<void> decrypt_and_hash(byte_span ciphertext, bytes& out);
  void split(cipher_state& c1, cipher_state& c2) const;

  const key32& handshake_hash() const noexcept { return h_; }
  bool has_key() const noexcept { return cs_.has_key(); }

 private:
  cipher_state cs_;
  key32 ck_{};
  key32 h_{};
};

struct handshake_config {
  pattern pat = pattern::XK;
  bool initiator = true;
  bytes prologue;
  std::optional<x25519_keypair> s;  // our static key, if the pattern has one
  std::optional<key32> rs;          // the remote static key, if known beforehand
  // Test hook: a fixed ephemeral key (the vectors fix them); random otherwise.
  std::optional<x25519_keypair> e;
};

// Transport keys after the handshake: `send` and `receive` already oriented
// for this side.
struct transport_keys {
  cipher_state send;
  cipher_state receive;
  key32 handshake_hash{};
};

class handshake_state {
 public:
  // Errors: bad_config if the pattern needs a key the config lacks.
  static result<handshake_state> create(handshake_config cfg);

  // Writes the next message. `make_payload` receives the handshake hash as it
  // stands just before the payload is encrypted, so the payload can sign it.
  result<bytes> write_message(const std::function<bytes(const key32& h)>& make_payload);
  result<bytes> write_message(byte_span payload);
  // Reads the next message and returns its payload. handshake_failed on a
  // message that does not authenticate or has the wrong length.
  result<bytes> read_message(byte_span message);

  // The handshake hash just before the payload of the last message read
  // (what its sender signed).
  const key32& hash_before_last_payload() const noexcept { return h_before_payload_; }

  bool my_turn_to_write() const noexcept;
  bool finished() const noexcept { return next_ >= messages_count(); }
  transport_keys split() const;

  const std::optional<key32>& remote_static() const noexcept { return rs_; }
  const key32& handshake_hash() const noexcept { return ss_.handshake_hash(); }

 private:
  handshake_state() = default;
  std::size_t messages_count() const noexcept;
  result<void> dh_token(int token);

  pattern pat_{};
  bool initiator_ = true;
  symmetric_state ss_;
  std::optional<x25519_keypair> s_;
  std::optional<x25519_keypair> e_;
  std::optional<key32> rs_;
  std::optional<key32> re_;
  std::size_t next_ = 0;
  key32 h_before_payload_{};
};

}  // namespace crust::secure::noise
