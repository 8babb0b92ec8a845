#include "nat/punch.hpp"

#include "transports/endpoint.hpp"

#include <algorithm>

namespace crust::nat {

namespace {
constexpr std::size_t max_pending = 1024;
constexpr std::size_t username_bytes = 8;

std::string half(const byte_array<16>& nonce) {
  return to_hex(byte_span(nonce).first(username_bytes));
}

udp_endpoint plain(const udp_endpoint& e) {
  return {transport::canonical(e.address()), e.port()};
}
}  // namespace

result<punch_session> punch_session::start(const private_connection_info& mine,
                                           const connection_info& theirs, const udp_endpoint& local,
                                           time_point now, punch_config cfg) {
  auto key = mine.punch_secret(theirs);
  if (!key) return key.error();
  punch_session s;
  s.cfg_ = cfg;
  s.key_ = *key;
  s.our_username_ = half(mine.pub().nonce) + ":" + half(theirs.nonce);
  s.their_username_ = half(theirs.nonce) + ":" + half(mine.pub().nonce);
  s.local_v4_ = local.address().is_v4();
  // The larger id controls (DESIGN.md §5), compared as bytes.
  s.controlling_ =
      std::lexicographical_compare(theirs.key.id.key.begin(), theirs.key.id.key.end(),
                                   mine.pub().key.id.key.begin(), mine.pub().key.id.key.end());
  s.started_ = s.next_send_ = now;
  s.deadline_ = now + cfg.deadline;
  std::optional<udp_endpoint> reflexive;
  for (const auto& c : theirs.candidates) {
    if (c.transport != candidate_transport::udp) continue;
    const udp_endpoint ep(c.address, c.port);
    if (s.add_target(ep, target::origin::candidate, now, false) &&
        c.kind == candidate_kind::reflexive && !reflexive)
      reflexive = ep;
  }
  // A sequential NAT gives the peer's next mapping (the one toward us) the
  // reflexive port plus a step or a few.
  if (reflexive && theirs.nat.allocation == allocation_behaviour::sequential &&
      theirs.nat.port_step != 0)
    for (unsigned k = 1; k <= cfg.predicted_ports; ++k) {
      const long port = long{reflexive->port()} + long{theirs.nat.port_step} * long{k};
      if (port < 1 || port > 65535) break;
      s.add_target({reflexive->address(), static_cast<std::uint16_t>(port)},
                   target::origin::predicted, now, false);
    }
  if (s.targets_.empty()) return make_error_code(errc::malformed);
  return s;
}

bool punch_session::add_target(const udp_endpoint& raw, target::origin o, time_point when,
                               bool first) {
  const auto ep = plain(raw);
  if (ep.port() == 0 || ep.address().is_unspecified() || ep.address().is_multicast()) return false;
  if (local_v4_ && ep.address().is_v6()) return false;
  if (targets_.size() >= cfg_.max_targets) return false;
  if (std::any_of(targets_.begin(), targets_.end(),
                  [&](const target& t) { return t.endpoint == ep; }))
    return false;
  target t{ep, o, when, 0};
  if (first)
    targets_.insert(targets_.begin(), t);
  else
    targets_.push_back(t);
  return true;
}

bytes punch_session::check_to(const udp_endpoint& to) {
  const auto id = stun::random_transaction_id();
  pending_.push_back({id, to});
  if (pending_.size() > max_pending) pending_.pop_front();
  ++sent_;
  return std::move(stun::builder(stun::msg_class::request, stun::binding, id)
                       .add(stun::attr::username, their_username_)
                       .add_integrity_sha256(key_)
                       .add_fingerprint())
      .finish();
}

std::vector<punch_session::datagram> punch_session::poll(time_point now) {
  std::vector<datagram> out;
  if (state_ != punch_state::running) return out;
  if (now >= deadline_) {
    state_ = punch_state::failed;
    return out;
  }
  // One check per pace, at most: the target due first (the earliest in the list
  // among equals, so candidates go in the peer's order).
  while (next_send_ <= now) {
    auto due = std::min_element(
        targets_.begin(), targets_.end(),
        [](const target& a, const target& b) { return a.next_check < b.next_check; });
    if (due == targets_.end() || due->next_check > now) break;
    out.push_back({due->endpoint, check_to(due->endpoint)});
    ++due->checks;
    due->next_check = now + cfg_.retransmit;
    next_send_ = now + cfg_.pace;  // a late poll does not catch up in a burst
  }
  return out;
}

time_point punch_session::next_wakeup() const noexcept {
  if (state_ != punch_state::running) return time_point::max();
  time_point due = deadline_;
  for (const auto& t : targets_) due = std::min(due, std::max(t.next_check, next_send_));
  return due;
}

bool punch_session::claims(byte_span d) const {
  auto m = stun::message::parse(d);
  if (!m || m->method() != stun::binding) return false;
  if (m->cls() == stun::msg_class::request) return m->text(stun::attr::username) == our_username_;
  if (m->cls() != stun::msg_class::success) return false;
  return std::any_of(pending_.begin(), pending_.end(),
                     [&](const pending& p) { return p.id == m->id(); });
}

std::optional<bytes> punch_session::on_datagram(byte_span d, const udp_endpoint& raw_from,
                                                time_point now) {
  auto m = stun::message::parse(d);
  if (!m || m->method() != stun::binding) return std::nullopt;
  const auto from = plain(raw_from);
  if (m->cls() == stun::msg_class::request) {
    if (m->text(stun::attr::username) != our_username_ || !m->check_integrity_sha256(key_))
      return std::nullopt;
    // A check from the peer: answer it, and check back at once where it
    // came from, learning that endpoint if it is new.
    if (state_ == punch_state::running) {
      auto it = std::find_if(targets_.begin(), targets_.end(),
                             [&](const target& t) { return t.endpoint == from; });
      if (it != targets_.end())
        it->next_check = now;
      else
        add_target(from, target::origin::learnt, now, true);
    }
    return std::move(stun::builder(stun::msg_class::success, stun::binding, m->id())
                         .add_address(stun::attr::xor_mapped_address, from)
                         .add_integrity_sha256(key_)
                         .add_fingerprint())
        .finish();
  }
  if (m->cls() != stun::msg_class::success) return std::nullopt;
  auto it = std::find_if(pending_.begin(), pending_.end(),
                         [&](const pending& p) { return p.id == m->id(); });
  // Only from where the check went (ICE's symmetric-address rule), and
  // only authenticated.
  if (it == pending_.end() || it->to != from || !m->check_integrity_sha256(key_))
    return std::nullopt;
  pending_.erase(it);
  ++answered_;
  if (state_ == punch_state::running) {
    state_ = punch_state::succeeded;
    path_ = from;
    if (auto seen = m->address(stun::attr::xor_mapped_address)) seen_as_ = plain(*seen);
  }
  return std::nullopt;
}

}  // namespace crust::nat
