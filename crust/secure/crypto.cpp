#include "crust/secure/crypto.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>
#include <stdexcept>

namespace crust::secure {
namespace {

// OpenSSL failing on well-formed input means the library is broken or out of
// memory: a bug, so an exception, not an error value.
[[noreturn]] void openssl_bug(const char* what) {
  throw std::runtime_error(std::string("OpenSSL failure: ") + what);
}

using pkey_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

pkey_ptr raw_private(int type, const key32& priv) {
  pkey_ptr p(EVP_PKEY_new_raw_private_key(type, nullptr, priv.data(), priv.size()), &EVP_PKEY_free);
  if (!p) openssl_bug("EVP_PKEY_new_raw_private_key");
  return p;
}

key32 raw_public_of(EVP_PKEY* p) {
  key32 pub{};
  std::size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(p, pub.data(), &len) != 1 || len != pub.size())
    openssl_bug("EVP_PKEY_get_raw_public_key");
  return pub;
}

[[maybe_unused]] const EVP_CIPHER* chacha_cipher() {
  // Fetched once: an explicit fetch avoids a provider lookup on every init.
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
  if (!cipher) openssl_bug("EVP_CIPHER_fetch(ChaCha20-Poly1305)");
  return cipher;
}

const EVP_MD* sha256_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (!md) openssl_bug("EVP_MD_fetch(SHA256)");
  return md;
}

[[maybe_unused]] void noise_nonce(std::uint64_t n, byte (&iv)[12]) {
  std::memset(iv, 0, 4);
  for (int i = 0; i < 8; ++i) iv[4 + i] = static_cast<byte>(n >> (8 * i));
}

}  // namespace

void random_fill(mutable_byte_span out) {
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) openssl_bug("RAND_bytes");
}

key32 sha256(byte_span data) {
  return sha256(data, {});
}

key32 sha256(byte_span a, byte_span b) {
  key32 out{};
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  unsigned int len = 0;
  if (!ctx || EVP_DigestInit_ex(ctx.get(), sha256_md(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), a.data(), a.size()) != 1 ||
      EVP_DigestUpdate(ctx.get(), b.data(), b.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1)
    openssl_bug("SHA-256");
  return out;
}

key32 hmac_sha256(byte_span key, byte_span data) {
  key32 out{};
  unsigned int len = 0;
  if (!HMAC(sha256_md(), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
            out.data(), &len))
    openssl_bug("HMAC-SHA-256");
  return out;
}

byte_array<20> hmac_sha1(byte_span key, byte_span data) {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  if (!md) openssl_bug("EVP_MD_fetch(SHA1)");
  byte_array<20> out{};
  unsigned int len = 0;
  if (!HMAC(md, key.data(), static_cast<int>(key.size()), data.data(), data.size(), out.data(),
            &len))
    openssl_bug("HMAC-SHA1");
  return out;
}

byte_array<16> md5(byte_span data) {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "MD5", nullptr);
  if (!md) openssl_bug("EVP_MD_fetch(MD5)");
  byte_array<16> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) openssl_bug("MD5");
  return out;
}

namespace {
thread_local std::uint64_t x25519_count = 0;
}  // namespace

std::uint64_t x25519_operations() noexcept {
  return x25519_count;
}

x25519_keypair x25519_keypair::generate() {
  key32 priv{};
  random_fill(priv);
  return from_private(priv);
}

x25519_keypair x25519_keypair::from_private(const key32& priv) {
  auto p = raw_private(EVP_PKEY_X25519, priv);
  ++x25519_count;  // the public half
  x25519_keypair kp;
  kp.priv = priv;
  kp.pub = raw_public_of(p.get());
  kp.loaded = std::shared_ptr<evp_pkey_st>(p.release(), &EVP_PKEY_free);
  return kp;
}

namespace {

result<key32> derive_x25519(EVP_PKEY* mine, const key32& peer_pub) {
  ++x25519_count;
  pkey_ptr theirs(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_pub.data(), peer_pub.size()),
      &EVP_PKEY_free);
  if (!theirs) openssl_bug("EVP_PKEY_new_raw_public_key");
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(mine, nullptr),
                                                                  &EVP_PKEY_CTX_free);
  key32 out{};
  std::size_t len = out.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1) openssl_bug("EVP_PKEY_derive_init");
  // set_peer or derive fail for a low-order point (all-zero shared secret).
  if (EVP_PKEY_derive_set_peer(ctx.get(), theirs.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &len) != 1 || len != out.size())
    return make_error_code(errc::crypto_failure);
  return out;
}

}  // namespace

result<key32> x25519(const key32& priv, const key32& peer_pub) {
  auto mine = raw_private(EVP_PKEY_X25519, priv);
  ++x25519_count;  // loading derives the public half
  return derive_x25519(mine.get(), peer_pub);
}

result<key32> x25519(const x25519_keypair& mine, const key32& peer_pub) {
  if (mine.loaded) return derive_x25519(mine.loaded.get(), peer_pub);
  return x25519(mine.priv, peer_pub);
}

void ed25519_key::pkey_free::operator()(evp_pkey_st* p) const noexcept {
  EVP_PKEY_free(p);
}

ed25519_key ed25519_key::generate() {
  key32 seed{};
  random_fill(seed);
  return from_seed(seed);
}

ed25519_key ed25519_key::from_seed(const key32& seed) {
  ed25519_key k;
  k.seed_ = seed;
  k.pkey_.reset(raw_private(EVP_PKEY_ED25519, seed).release());
  k.pub_ = raw_public_of(k.pkey_.get());
  return k;
}

ed25519_key::ed25519_key(const ed25519_key& other) {
  *this = other;
}

ed25519_key& ed25519_key::operator=(const ed25519_key& other) {
  if (this != &other) {
    seed_ = other.seed_;
    pub_ = other.pub_;
    pkey_.reset(raw_private(EVP_PKEY_ED25519, seed_).release());
  }
  return *this;
}

ed25519_key::~ed25519_key() = default;

signature64 ed25519_key::sign(byte_span message) const {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  signature64 sig{};
  std::size_t len = sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1 ||
      len != sig.size())
    openssl_bug("Ed25519 sign");
  return sig;
}

bool ed25519_verify(const key32& pub, byte_span message, const signature64& sig) {
#ifdef CRUST_FUZZING
  (void)pub, (void)message, (void)sig;
  return true;
#endif
  pkey_ptr p(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, pub.data(), pub.size()),
             &EVP_PKEY_free);
  if (!p) return false;  // not a valid point
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, p.get()) != 1)
    openssl_bug("Ed25519 verify init");
  return EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), message.data(), message.size()) == 1;
}

chacha20_poly1305::chacha20_poly1305() : ctx_(EVP_CIPHER_CTX_new()) {
  if (!ctx_) openssl_bug("EVP_CIPHER_CTX_new");
}

chacha20_poly1305::~chacha20_poly1305() {
  EVP_CIPHER_CTX_free(ctx_);
}

chacha20_poly1305::chacha20_poly1305(chacha20_poly1305&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)) {}

chacha20_poly1305& chacha20_poly1305::operator=(chacha20_poly1305&& other) noexcept {
  std::swap(ctx_, other.ctx_);
  return *this;
}

#ifdef CRUST_FUZZING
// The fuzzing build (tests/fuzz, never a normal build): AEAD is the identity
// with an all-zero tag, a tag verifies when its first byte is zero, and
// every signature verifies. So the fuzzer reaches the parsers behind
// authentication, and still the paths taken when it fails (a bad frame,
// XK's first message read again as XX).
#ifndef CRUST_FUZZING_BUILD_ONLY
#error "CRUST_FUZZING must only be set by the fuzzing build (tests/fuzz/meson.build)"
#endif
void chacha20_poly1305::seal(const key32&, std::uint64_t, byte_span, byte_span plaintext,
                             byte* out) {
  std::memmove(out, plaintext.data(), plaintext.size());
  std::memset(out + plaintext.size(), 0, aead_tag_size);
}

bool chacha20_poly1305::open(const key32&, std::uint64_t, byte_span, byte_span ciphertext,
                             byte* out) {
  if (ciphertext.size() < aead_tag_size) return false;
  if (ciphertext[ciphertext.size() - aead_tag_size] != 0) return false;
  if (ciphertext.size() > aead_tag_size)
    std::memmove(out, ciphertext.data(), ciphertext.size() - aead_tag_size);
  return true;
}
#else
void chacha20_poly1305::seal(const key32& key, std::uint64_t nonce, byte_span ad,
                             byte_span plaintext, byte* out) {
  byte iv[12];
  noise_nonce(nonce, iv);
  int len = 0;
  if (EVP_EncryptInit_ex(ctx_, chacha_cipher(), nullptr, key.data(), iv) != 1 ||
      (!ad.empty() &&
       EVP_EncryptUpdate(ctx_, nullptr, &len, ad.data(), static_cast<int>(ad.size())) != 1) ||
      EVP_EncryptUpdate(ctx_, out, &len, plaintext.data(), static_cast<int>(plaintext.size())) !=
          1 ||
      EVP_EncryptFinal_ex(ctx_, out + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, aead_tag_size, out + plaintext.size()) != 1)
    openssl_bug("ChaCha20-Poly1305 seal");
}

bool chacha20_poly1305::open(const key32& key, std::uint64_t nonce, byte_span ad,
                             byte_span ciphertext, byte* out) {
  if (ciphertext.size() < aead_tag_size) return false;
  const std::size_t body = ciphertext.size() - aead_tag_size;
  byte tag[aead_tag_size];
  std::memcpy(tag, ciphertext.data() + body, aead_tag_size);  // out may alias ciphertext
  byte iv[12];
  noise_nonce(nonce, iv);
  int len = 0;
  if (EVP_DecryptInit_ex(ctx_, chacha_cipher(), nullptr, key.data(), iv) != 1 ||
      (!ad.empty() &&
       EVP_DecryptUpdate(ctx_, nullptr, &len, ad.data(), static_cast<int>(ad.size())) != 1) ||
      EVP_DecryptUpdate(ctx_, out, &len, ciphertext.data(), static_cast<int>(body)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, aead_tag_size, tag) != 1)
    openssl_bug("ChaCha20-Poly1305 open");
  return EVP_DecryptFinal_ex(ctx_, out + len, &len) == 1;
}
#endif  // CRUST_FUZZING

}  // namespace crust::secure
