#include "nat/punch.hpp"

#include "transports/endpoint.hpp"

#include <algorithm>
#include <random>

namespace crust::nat {

namespace {
constexpr std::size_t max_pending = 4096;
constexpr std::size_t username_bytes = 8;

std::string half(const byte_array<16>& nonce) {
  return to_hex(byte_span(nonce).first(username_bytes));
}

udp_endpoint plain(const udp_endpoint& e) {
  return {transport::canonical(e.address()), e.port()};
}

// A NAT that gives every destination a new random port: nothing can guess
// the port it opens toward us.
bool hard(const nat_hint& h) {
  const bool dependent = h.mapping == mapping_behaviour::address_dependent ||
                         h.mapping == mapping_behaviour::address_and_port_dependent ||
                         h.mapping == mapping_behaviour::dependent;
  return dependent && h.allocation == allocation_behaviour::random;
}
// One mapping for every destination, behind filtering: checks must come
// from where it sent (a full cone or a public host needs no probing).
bool easy(const nat_hint& h) {
  return h.mapping == mapping_behaviour::endpoint_independent &&
         h.filtering != filtering_behaviour::endpoint_independent;
}
std::optional<udp_endpoint> first_udp(const connection_info& info, candidate_kind kind) {
  for (const auto& c : info.candidates)
    if (c.transport == candidate_transport::udp && c.kind == kind)
      return udp_endpoint(c.address, c.port);
  return std::nullopt;
}
// Whether multi-socket probing is the way between `h` (hard) and `e`
// (easy): only when nothing better exists (a port mapping on the easy
// side opens it to anyone) and both reflexive addresses are known. Both
// sides compute it from the same two infos, so they agree on the roles.
bool spray_between(const connection_info& h, const connection_info& e) {
  return hard(h.nat) && easy(e.nat) && first_udp(h, candidate_kind::reflexive) &&
         first_udp(e, candidate_kind::reflexive) && !first_udp(e, candidate_kind::mapped);
}
}  // namespace

bool hard_to_punch(const connection_info& info) {
  const bool mapped =
      std::any_of(info.candidates.begin(), info.candidates.end(),
                  [](const candidate& c) { return c.kind == candidate_kind::mapped; });
  return hard(info.nat) && !mapped;
}

bool probing_between(const connection_info& a, const connection_info& b) {
  return spray_between(a, b) || spray_between(b, a);
}

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
  for (const auto& c : theirs.candidates)
    if (c.transport == candidate_transport::udp)
      s.add_target({c.address, c.port}, target::origin::candidate, now, false);
  const auto reflexive = first_udp(theirs, candidate_kind::reflexive);
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
  if (reflexive && cfg.spray_sockets > 0) {
    if (spray_between(mine.pub(), theirs)) {
      s.spray_ = spray_role::sockets;
      s.spray_to_ = *reflexive;
    } else if (spray_between(theirs, mine.pub())) {
      s.spray_ = spray_role::ports;
      s.spray_to_ = {reflexive->address(), 0};
      // Every port from 1024 up, in an order keyed by the pair's secret.
      for (std::uint32_t p = 1024; p <= 65535; ++p)
        s.probe_ports_.push_back(static_cast<std::uint16_t>(p));
      std::seed_seq seed(s.key_.begin(), s.key_.end());
      std::mt19937 rng(seed);
      std::shuffle(s.probe_ports_.begin(), s.probe_ports_.end(), rng);
      s.probe_ports_.resize(std::min<std::size_t>(cfg.spray_probes, s.probe_ports_.size()));
    }
    s.next_spray_ = s.round_start_ = now;
  }
  return s;
}

bool punch_session::add_target(const udp_endpoint& raw, target::origin o, time_point when,
                               bool first, unsigned socket) {
  const auto ep = plain(raw);
  if (ep.port() == 0 || ep.address().is_unspecified() || ep.address().is_multicast()) return false;
  if (local_v4_ && ep.address().is_v6()) return false;
  if (targets_.size() >= cfg_.max_targets) return false;
  if (std::any_of(targets_.begin(), targets_.end(),
                  [&](const target& t) { return t.endpoint == ep && t.socket == socket; }))
    return false;
  target t{ep, o, when, 0, socket};
  if (first)
    targets_.insert(targets_.begin(), t);
  else
    targets_.push_back(t);
  return true;
}

bytes punch_session::check_to(const udp_endpoint& to, unsigned socket) {
  const auto id = stun::random_transaction_id();
  pending_.push_back({id, to, socket});
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
    out.push_back({due->endpoint, check_to(due->endpoint, due->socket), due->socket});
    ++due->checks;
    due->next_check = now + cfg_.retransmit;
    next_send_ = now + cfg_.pace;  // a late poll does not catch up in a burst
  }
  emit_spray(now, out);
  return out;
}

void punch_session::emit_spray(time_point now, std::vector<datagram>& out) {
  if (spray_ == spray_role::none || next_spray_ > now) return;
  // One datagram per spray_pace. A late poll catches up, with at most
  // spray_burst at once: the odds in punch.hpp count probes, and an event
  // loop that wakes every few milliseconds would otherwise send a fraction
  // of them in the time the caller allows before it takes the relay.
  const auto burst = std::max(1u, cfg_.spray_burst);
  const auto earliest = now - cfg_.spray_pace * (burst - 1);
  if (next_spray_ < earliest) next_spray_ = earliest;  // older debt is forgiven
  for (unsigned n = 0; n < burst && next_spray_ <= now; ++n) {
    if (spray_ == spray_role::sockets) {
      out.push_back({spray_to_, check_to(spray_to_, spray_cursor_), spray_cursor_});
      next_spray_ += cfg_.spray_pace;
      if (++spray_cursor_ > cfg_.spray_sockets) {
        spray_cursor_ = 1;
        round_start_ += cfg_.spray_repeat;
        next_spray_ = std::max(round_start_, next_spray_);
      }
      continue;
    }
    if (probes_sent_ >= probe_ports_.size()) return;
    const udp_endpoint to(spray_to_.address(), probe_ports_[probes_sent_++]);
    out.push_back({to, check_to(to, 0), 0});
    next_spray_ += cfg_.spray_pace;
  }
}

time_point punch_session::next_wakeup() const noexcept {
  if (state_ != punch_state::running) return time_point::max();
  time_point due = deadline_;
  for (const auto& t : targets_) due = std::min(due, std::max(t.next_check, next_send_));
  const bool spraying = spray_ == spray_role::sockets ||
                        (spray_ == spray_role::ports && probes_sent_ < probe_ports_.size());
  if (spraying) due = std::min(due, next_spray_);
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
                                                time_point now, unsigned socket) {
  auto m = stun::message::parse(d);
  if (!m || m->method() != stun::binding) return std::nullopt;
  const auto from = plain(raw_from);
  if (m->cls() == stun::msg_class::request) {
    if (m->text(stun::attr::username) != our_username_ || !m->check_integrity_sha256(key_))
      return std::nullopt;
    // A check from the peer: answer it, and check back at once where it
    // came from, learning that endpoint if it is new.
    if (state_ == punch_state::running) {
      auto it = std::find_if(targets_.begin(), targets_.end(), [&](const target& t) {
        return t.endpoint == from && t.socket == socket;
      });
      if (it != targets_.end())
        it->next_check = now;
      else
        add_target(from, target::origin::learnt, now, true, socket);
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
  if (it == pending_.end() || it->to != from || it->socket != socket ||
      !m->check_integrity_sha256(key_))
    return std::nullopt;
  pending_.erase(it);
  ++answered_;
  if (state_ == punch_state::running) {
    state_ = punch_state::succeeded;
    path_ = from;
    path_socket_ = socket;
    if (auto seen = m->address(stun::attr::xor_mapped_address)) seen_as_ = plain(*seen);
  }
  return std::nullopt;
}

}  // namespace crust::nat
