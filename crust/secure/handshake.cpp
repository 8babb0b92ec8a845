#include "crust/secure/handshake.hpp"

namespace crust::secure {

namespace {

constexpr std::string_view proof_domain = "crust-handshake-v1";
constexpr std::size_t proof_size = 32 + 64;
constexpr std::size_t first_message_size = 48;
constexpr std::size_t xx_padding = 16;
constexpr std::size_t xk_second_size = 32 + proof_size + aead_tag_size;                       // 144
constexpr std::size_t xx_second_size = 32 + 32 + aead_tag_size + proof_size + aead_tag_size;  // 192
constexpr std::size_t third_size = 32 + aead_tag_size + proof_size + aead_tag_size;           // 160

}  // namespace

bytes make_prologue(std::string_view network, std::uint16_t version) {
  auto name = network.substr(0, max_network_name);
  bytes p;
  p.reserve(8 + name.size());
  append(p, as_bytes("CRUST"));
  put_u16(p, version);
  p.push_back(static_cast<byte>(name.size()));
  append(p, as_bytes(name));
  return p;
}

handshake handshake::initiator(const identity& me, std::string_view network,
                               std::optional<peer_key> expected) {
  handshake h(me, network);
  h.initiator_ = true;
  h.expected_ = expected;
  h.xx_ = !expected.has_value();
  return h;
}

handshake handshake::responder(const identity& me, std::string_view network, bool accept_xx) {
  handshake h(me, network);
  h.accept_xx_ = accept_xx;
  return h;
}

result<noise::handshake_state> handshake::make_state(noise::pattern p, bool initiator,
                                                     std::optional<key32> rs) const {
  noise::handshake_config cfg;
  cfg.pat = p;
  cfg.initiator = initiator;
  cfg.prologue = prologue_;
  cfg.s = me_->static_key();
  cfg.rs = rs;
  cfg.e = test_e_;
  return noise::handshake_state::create(std::move(cfg));
}

bytes handshake::proof(const key32& h) const {
  bytes msg(proof_domain.begin(), proof_domain.end());
  append(msg, h);
  append(msg, me_->static_key().pub);
  const auto id = me_->id();  // by value: take begin and end of one object
  bytes out(id.key.begin(), id.key.end());
  append(out, me_->sign(msg));
  return out;
}

result<void> handshake::check_proof(byte_span payload) {
  if (payload.size() != proof_size || !hs_->remote_static())
    return make_error_code(errc::handshake_failed);
  peer_key remote;
  std::copy_n(payload.begin(), 32, remote.id.key.begin());
  remote.noise_static = *hs_->remote_static();
  signature64 sig{};
  std::copy_n(payload.begin() + 32, 64, sig.begin());
  bytes msg(proof_domain.begin(), proof_domain.end());
  append(msg, hs_->hash_before_last_payload());
  append(msg, remote.noise_static);
  if (!ed25519_verify(remote.id.key, msg, sig)) return make_error_code(errc::bad_signature);
  if (expected_ && !(remote == *expected_)) return make_error_code(errc::wrong_peer_key);
  remote_ = remote;
  return {};
}

result<handshake::step> handshake::start() {
  if (stage_ != 0) return make_error_code(errc::protocol_violation);
  stage_ = 1;
  if (!initiator_) return step{{}, first_message_size, false};
  auto st = xx_ ? make_state(noise::pattern::XX, true, std::nullopt)
                : make_state(noise::pattern::XK, true, expected_->noise_static);
  if (!st) return st.error();
  hs_.emplace(std::move(*st));
  bytes pad;
  if (xx_) {
    pad.resize(xx_padding);
    random_fill(pad);
  }
  auto m1 = hs_->write_message(pad);
  if (!m1) return m1.error();
  return step{std::move(*m1), xx_ ? xx_second_size : xk_second_size, false};
}

result<handshake::step> handshake::receive(byte_span message) {
  if (initiator_) {
    if (stage_ != 1) return make_error_code(errc::protocol_violation);
    auto p = hs_->read_message(message);
    if (!p) return p.error();
    if (auto c = check_proof(*p); !c) return c.error();
    auto m3 = hs_->write_message([this](const key32& h) { return proof(h); });
    if (!m3) return m3.error();
    stage_ = 2;
    return step{std::move(*m3), 0, true};
  }
  if (stage_ == 1) {
    if (message.size() != first_message_size) return make_error_code(errc::handshake_failed);
    // XK first: it authenticates the first message. Only if that fails and
    // address-only dials are allowed, read it as XX (which cannot fail).
    auto st = make_state(noise::pattern::XK, false, std::nullopt);
    if (!st) return st.error();
    hs_.emplace(std::move(*st));
    auto p = hs_->read_message(message);
    if (!p) {
      // One DH spent (es): beyond it only for an XX dial we choose to answer.
      if (!accept_xx_ || (xx_gate_ && !xx_gate_())) return p.error();
      auto xx = make_state(noise::pattern::XX, false, std::nullopt);
      if (!xx) return xx.error();
      hs_.emplace(std::move(*xx));
      xx_ = true;
      if (auto q = hs_->read_message(message); !q) return q.error();
    }
    auto m2 = hs_->write_message([this](const key32& h) { return proof(h); });
    if (!m2) return m2.error();
    stage_ = 2;
    return step{std::move(*m2), third_size, false};
  }
  if (stage_ == 2) {
    auto p = hs_->read_message(message);
    if (!p) return p.error();
    if (auto c = check_proof(*p); !c) return c.error();
    stage_ = 3;
    return step{{}, 0, true};
  }
  return make_error_code(errc::protocol_violation);
}

result<handshake_result> handshake::finish() {
  if (!hs_ || !hs_->finished() || !remote_) return make_error_code(errc::protocol_violation);
  handshake_result r;
  r.keys = hs_->split();
  r.remote = *remote_;
  r.initiator = initiator_;
  r.address_only = xx_;
  return r;
}

}  // namespace crust::secure
