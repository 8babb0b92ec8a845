#include "crust/secure/noise.hpp"

#include <array>
#include <initializer_list>
#include <limits>

namespace crust::secure::noise {
namespace {

enum token : int { E, S, EE, ES, SE, SS };

struct pattern_def {
  pattern p;
  std::string_view name;
  bool initiator_pre_s;  // "-> s" before the handshake
  bool responder_pre_s;  // "<- s" before the handshake
  std::vector<std::vector<int>> messages;
};

const std::vector<pattern_def>& patterns() {
  static const std::vector<pattern_def> defs = {
      {pattern::NN, "NN", false, false, {{E}, {E, EE}}},
      {pattern::NK, "NK", false, true, {{E, ES}, {E, EE}}},
      {pattern::NX, "NX", false, false, {{E}, {E, EE, S, ES}}},
      {pattern::XN, "XN", false, false, {{E}, {E, EE}, {S, SE}}},
      {pattern::XK, "XK", false, true, {{E, ES}, {E, EE}, {S, SE}}},
      {pattern::XX, "XX", false, false, {{E}, {E, EE, S, ES}, {S, SE}}},
      {pattern::KN, "KN", true, false, {{E}, {E, EE, SE}}},
      {pattern::KK, "KK", true, true, {{E, ES, SS}, {E, EE, SE}}},
      {pattern::KX, "KX", true, false, {{E}, {E, EE, SE, S, ES}}},
      {pattern::IN, "IN", false, false, {{E, S}, {E, EE, SE}}},
      {pattern::IK, "IK", false, true, {{E, ES, S, SS}, {E, EE, SE}}},
      {pattern::IX, "IX", false, false, {{E, S}, {E, EE, SE, S, ES}}},
  };
  return defs;
}

const pattern_def& def_of(pattern p) {
  for (const auto& d : patterns())
    if (d.p == p) return d;
  return patterns().front();  // unreachable: every enumerator is listed
}

constexpr std::uint64_t max_nonce = std::numeric_limits<std::uint64_t>::max();

// HKDF as Noise §4.3 defines it, for two outputs.
std::array<key32, 2> hkdf2(const key32& ck, byte_span ikm) {
  key32 temp = hmac_sha256(ck, ikm);
  byte one = 0x01;
  key32 out1 = hmac_sha256(temp, byte_span(&one, 1));
  byte buf[33];
  std::copy(out1.begin(), out1.end(), buf);
  buf[32] = 0x02;
  key32 out2 = hmac_sha256(temp, byte_span(buf, 33));
  return {out1, out2};
}

}  // namespace

std::string_view pattern_name(pattern p) noexcept {
  return def_of(p).name;
}

std::optional<pattern> pattern_from_name(std::string_view name) noexcept {
  for (const auto& d : patterns())
    if (d.name == name) return d.p;
  return std::nullopt;
}

std::string protocol_name(pattern p) {
  return "Noise_" + std::string(pattern_name(p)) + "_25519_ChaChaPoly_SHA256";
}

// --- cipher_state -----------------------------------------------------------

result<void> cipher_state::encrypt_with_ad(byte_span ad, byte_span plaintext, bytes& out) {
  if (!has_key_) {
    append(out, plaintext);
    return {};
  }
  const std::size_t at = out.size();
  out.resize(at + plaintext.size() + aead_tag_size);
  std::copy(plaintext.begin(), plaintext.end(), out.begin() + static_cast<std::ptrdiff_t>(at));
  return seal_in_place(ad, out.data() + at, plaintext.size());
}

result<void> cipher_state::decrypt_with_ad(byte_span ad, byte_span ciphertext, bytes& out) {
  if (!has_key_) {
    append(out, ciphertext);
    return {};
  }
  if (ciphertext.size() < aead_tag_size) return make_error_code(errc::handshake_failed);
  const std::size_t at = out.size();
  out.resize(at + ciphertext.size());
  std::copy(ciphertext.begin(), ciphertext.end(), out.begin() + static_cast<std::ptrdiff_t>(at));
  auto r = open_in_place(ad, out.data() + at, ciphertext.size());
  out.resize(r ? out.size() - aead_tag_size : at);
  return r;
}

result<void> cipher_state::seal_in_place(byte_span ad, byte* data, std::size_t plaintext_len) {
  if (n_ == max_nonce) return make_error_code(errc::crypto_failure);
  aead_.seal(k_, n_, ad, byte_span(data, plaintext_len), data);
  ++n_;
  return {};
}

result<void> cipher_state::open_in_place(byte_span ad, byte* data, std::size_t ciphertext_len) {
  if (n_ == max_nonce) return make_error_code(errc::crypto_failure);
  if (!aead_.open(k_, n_, ad, byte_span(data, ciphertext_len), data))
    return make_error_code(errc::frame_corrupt);
  ++n_;  // only a message that authenticated consumes its nonce
  return {};
}

void cipher_state::rekey() {
  byte buf[32 + aead_tag_size] = {};
  aead_.seal(k_, max_nonce, {}, byte_span(buf, 32), buf);
  std::copy(buf, buf + 32, k_.begin());
}

// --- symmetric_state --------------------------------------------------------

void symmetric_state::initialize(std::string_view name) {
  if (name.size() <= h_.size()) {
    h_.fill(0);
    std::copy(name.begin(), name.end(), h_.begin());
  } else {
    h_ = sha256(as_bytes(name));
  }
  ck_ = h_;
  cs_ = cipher_state{};
}

void symmetric_state::mix_key(byte_span ikm) {
  auto [ck, k] = hkdf2(ck_, ikm);
  ck_ = ck;
  cs_.initialize_key(k);
}

void symmetric_state::mix_hash(byte_span data) {
  h_ = sha256(h_, data);
}

result<void> symmetric_state::encrypt_and_hash(byte_span plaintext, bytes& out) {
  const std::size_t at = out.size();
  auto r = cs_.encrypt_with_ad(h_, plaintext, out);
  if (!r) return r;
  mix_hash(byte_span(out).subspan(at));
  return {};
}

result<void> symmetric_state::decrypt_and_hash(byte_span ciphertext, bytes& out) {
  auto r = cs_.decrypt_with_ad(h_, ciphertext, out);
  if (!r) return make_error_code(errc::handshake_failed);
  mix_hash(ciphertext);
  return {};
}

void symmetric_state::split(cipher_state& c1, cipher_state& c2) const {
  auto [k1, k2] = hkdf2(ck_, {});
  c1.initialize_key(k1);
  c2.initialize_key(k2);
}

// --- handshake_state --------------------------------------------------------

result<handshake_state> handshake_state::create(handshake_config cfg) {
  const auto& d = def_of(cfg.pat);
  bool uses_s = false;
  for (std::size_t m = 0; m < d.messages.size(); ++m) {
    bool mine = (m % 2 == 0) == cfg.initiator;
    for (int t : d.messages[m]) {
      if (t == S && mine) uses_s = true;
      if (t == SS || (t == ES && cfg.initiator == false) || (t == SE && cfg.initiator))
        uses_s = true;
    }
  }
  bool my_pre = cfg.initiator ? d.initiator_pre_s : d.responder_pre_s;
  bool their_pre = cfg.initiator ? d.responder_pre_s : d.initiator_pre_s;
  if ((uses_s || my_pre) && !cfg.s) return make_error_code(errc::bad_config);
  if (their_pre && !cfg.rs) return make_error_code(errc::bad_config);

  handshake_state hs;
  hs.pat_ = cfg.pat;
  hs.initiator_ = cfg.initiator;
  hs.s_ = cfg.s;
  hs.e_ = cfg.e;
  hs.rs_ = cfg.rs;
  hs.ss_.initialize(protocol_name(cfg.pat));
  hs.ss_.mix_hash(cfg.prologue);
  // Pre-messages: the initiator's first, then the responder's.
  if (d.initiator_pre_s) hs.ss_.mix_hash(cfg.initiator ? hs.s_->pub : *hs.rs_);
  if (d.responder_pre_s) hs.ss_.mix_hash(cfg.initiator ? *hs.rs_ : hs.s_->pub);
  return hs;
}

std::size_t handshake_state::messages_count() const noexcept {
  return def_of(pat_).messages.size();
}

bool handshake_state::my_turn_to_write() const noexcept {
  return !finished() && ((next_ % 2 == 0) == initiator_);
}

result<void> handshake_state::dh_token(int t) {
  const x25519_keypair* mine = nullptr;
  const key32* theirs = nullptr;
  auto pick = [&](bool local_static, bool remote_static) {
    mine = local_static ? (s_ ? &*s_ : nullptr) : (e_ ? &*e_ : nullptr);
    theirs = remote_static ? (rs_ ? &*rs_ : nullptr) : (re_ ? &*re_ : nullptr);
  };
  switch (t) {
    case EE:
      pick(false, false);
      break;
    case SS:
      pick(true, true);
      break;
    case ES:
      initiator_ ? pick(false, true) : pick(true, false);
      break;
    case SE:
      initiator_ ? pick(true, false) : pick(false, true);
      break;
    default:
      return make_error_code(errc::protocol_violation);
  }
  if (!mine || !theirs) return make_error_code(errc::handshake_failed);
  auto shared = x25519(*mine, *theirs);
  if (!shared) return make_error_code(errc::handshake_failed);
  ss_.mix_key(*shared);
  return {};
}

result<bytes> handshake_state::write_message(byte_span payload) {
  bytes copy(payload.begin(), payload.end());
  return write_message([&copy](const key32&) { return copy; });
}

result<bytes> handshake_state::write_message(
    const std::function<bytes(const key32& h)>& make_payload) {
  if (!my_turn_to_write()) return make_error_code(errc::protocol_violation);
  bytes out;
  for (int t : def_of(pat_).messages[next_]) {
    if (t == E) {
      if (!e_) e_ = x25519_keypair::generate();
      append(out, e_->pub);
      ss_.mix_hash(e_->pub);
    } else if (t == S) {
      if (auto r = ss_.encrypt_and_hash(s_->pub, out); !r) return r.error();
    } else if (auto r = dh_token(t); !r) {
      return r.error();
    }
  }
  h_before_payload_ = ss_.handshake_hash();
  bytes payload = make_payload(h_before_payload_);
  if (auto r = ss_.encrypt_and_hash(payload, out); !r) return r.error();
  if (out.size() > max_message_len) return make_error_code(errc::message_too_large);
  ++next_;
  return out;
}

result<bytes> handshake_state::read_message(byte_span msg) {
  if (finished() || my_turn_to_write()) return make_error_code(errc::protocol_violation);
  if (msg.size() > max_message_len) return make_error_code(errc::handshake_failed);
  std::size_t at = 0;
  for (int t : def_of(pat_).messages[next_]) {
    if (t == E) {
      if (msg.size() - at < dh_len) return make_error_code(errc::handshake_failed);
      key32 re{};
      std::copy_n(msg.begin() + static_cast<std::ptrdiff_t>(at), dh_len, re.begin());
      re_ = re;
      ss_.mix_hash(re);
      at += dh_len;
    } else if (t == S) {
      std::size_t len = dh_len + (ss_.has_key() ? aead_tag_size : 0);
      if (msg.size() - at < len) return make_error_code(errc::handshake_failed);
      bytes rs;
      if (auto r = ss_.decrypt_and_hash(msg.subspan(at, len), rs); !r) return r.error();
      key32 k{};
      std::copy(rs.begin(), rs.end(), k.begin());
      rs_ = k;
      at += len;
    } else if (auto r = dh_token(t); !r) {
      return r.error();
    }
  }
  h_before_payload_ = ss_.handshake_hash();
  bytes payload;
  if (auto r = ss_.decrypt_and_hash(msg.subspan(at), payload); !r) return r.error();
  ++next_;
  return payload;
}

transport_keys handshake_state::split() const {
  transport_keys keys;
  if (initiator_)
    ss_.split(keys.send, keys.receive);
  else
    ss_.split(keys.receive, keys.send);
  keys.handshake_hash = ss_.handshake_hash();
  return keys;
}

}  // namespace crust::secure::noise
