// Thin wrappers over OpenSSL 3 for the primitives Noise and identities need:
// X25519, Ed25519, ChaCha20-Poly1305, SHA-256 and HMAC-SHA-256 (and
// STUN's HMAC-SHA1 and MD5). No primitive
// is implemented here; OpenSSL headers stay out of this header.
#pragma once

#include "crust/base/bytes.hpp"
#include "crust/base/error.hpp"

#include <memory>

struct evp_pkey_st;
struct evp_cipher_ctx_st;

namespace crust::secure {

using key32 = byte_array<32>;
using signature64 = byte_array<64>;
inline constexpr std::size_t aead_tag_size = 16;

void random_fill(mutable_byte_span out);
key32 sha256(byte_span data);
key32 sha256(byte_span a, byte_span b);
key32 hmac_sha256(byte_span key, byte_span data);
// For STUN only (RFC 8489's MESSAGE-INTEGRITY and long-term key), which
// fixes these older algorithms; Crust's own protocol never uses them.
byte_array<20> hmac_sha1(byte_span key, byte_span data);
byte_array<16> md5(byte_span data);

struct x25519_keypair {
  key32 priv{};
  key32 pub{};
  // The loaded OpenSSL key (made with the pair; shared by copies, never
  // changed). Loading a raw private key derives its public half, a scalar
  // multiplication as dear as the DH itself, so each DH with a pair from
  // generate() or from_private() reuses this one.
  std::shared_ptr<evp_pkey_st> loaded;
  static x25519_keypair generate();
  // Derives the public key; any 32 bytes are a valid X25519 private key.
  static x25519_keypair from_private(const key32& priv);
};

// How many X25519 scalar multiplications this thread has done (a DH, or
// the public half derived from a private key), so tests can count what a
// handshake costs.
std::uint64_t x25519_operations() noexcept;

// X25519(priv, peer_pub). Fails (crypto_failure) on a low-order peer key,
// whose shared secret would be all zero.
result<key32> x25519(const key32& priv, const key32& peer_pub);
// The same with a key pair, through its loaded key when it has one.
result<key32> x25519(const x25519_keypair& mine, const key32& peer_pub);

// An Ed25519 signing key; keeps the OpenSSL key object so signing does not
// re-parse it each time.
class ed25519_key {
 public:
  static ed25519_key generate();
  static ed25519_key from_seed(const key32& seed);

  const key32& seed() const noexcept { return seed_; }
  const key32& public_key() const noexcept { return pub_; }
  signature64 sign(byte_span message) const;

  ed25519_key(const ed25519_key& other);
  ed25519_key& operator=(const ed25519_key& other);
  ed25519_key(ed25519_key&&) noexcept = default;
  ed25519_key& operator=(ed25519_key&&) noexcept = default;
  ~ed25519_key();

 private:
  ed25519_key() = default;
  struct pkey_free {
    void operator()(evp_pkey_st* p) const noexcept;
  };
  key32 seed_{};
  key32 pub_{};
  std::unique_ptr<evp_pkey_st, pkey_free> pkey_;
};

bool ed25519_verify(const key32& pub, byte_span message, const signature64& sig);

// ChaCha20-Poly1305 (RFC 8439) with Noise's nonce layout: 4 zero bytes, then
// the 64-bit counter little-endian. Keeps one OpenSSL context for reuse.
class chacha20_poly1305 {
 public:
  chacha20_poly1305();
  ~chacha20_poly1305();
  chacha20_poly1305(const chacha20_poly1305&) = delete;
  chacha20_poly1305& operator=(const chacha20_poly1305&) = delete;
  chacha20_poly1305(chacha20_poly1305&& other) noexcept;
  chacha20_poly1305& operator=(chacha20_poly1305&& other) noexcept;

  // Writes plaintext.size() + 16 bytes to `out` (which may alias plaintext).
  void seal(const key32& key, std::uint64_t nonce, byte_span ad, byte_span plaintext, byte* out);
  // Writes ciphertext.size() - 16 bytes to `out` (which may alias
  // ciphertext); false if the tag does not verify or the input is short.
  [[nodiscard]] bool open(const key32& key, std::uint64_t nonce, byte_span ad, byte_span ciphertext,
                          byte* out);

 private:
  evp_cipher_ctx_st* ctx_ = nullptr;
};

}  // namespace crust::secure
