// The service's contact gossip: our own signed record, the rounds, the
// dial-backs that prove what peers teach before it is passed on or cached,
// and lookups through the network. bootstrap/gossip.hpp makes every
// decision; this moves its messages.
#include "crust/detail/service_impl.hpp"

namespace crust {

namespace {
constexpr std::size_t lookup_alpha = 3, lookup_k = 8;
constexpr std::size_t lookup_max_dials = 8;  // nodes a lookup may dial that we are not connected to
constexpr auto find_timeout = seconds(5);    // for one node's answer
}  // namespace

void service::impl::start_gossip() {
  if (!cfg_.enable_gossip || gossip_) return;
  bootstrap::gossip_limits l;
  l.max_records = cfg_.gossip_max_records;
  l.per_source = cfg_.gossip_per_source;
  l.messages_per_minute = cfg_.gossip_messages_per_minute;
  l.fanout = cfg_.gossip_fanout;
  l.dial_backs_per_round = cfg_.gossip_dial_backs;
  gossip_ = std::make_unique<bootstrap::gossip>(id_.id(), cfg_.network_name, l);
  refresh_own_record(true);
  spawn(gossip_loop(), "gossip");
}

std::vector<nat::candidate> service::impl::own_candidates() const {
  std::vector<nat::candidate> out;
  auto add = [&](nat::candidate c) {
    if (out.size() < bootstrap::max_record_candidates &&
        std::find(out.begin(), out.end(), c) == out.end())
      out.push_back(std::move(c));
  };
  const auto tcp = local_endpoint();
  if (tcp)
    for (const auto& a : host_addresses(tcp->address()))
      add({nat::candidate_transport::tcp, nat::candidate_kind::host, a, tcp->port()});
  for (const auto& m : port_mappings())
    if (!m.external_address.is_unspecified())
      add({m.protocol == nat::pmp::protocol::tcp ? nat::candidate_transport::tcp
                                                 : nat::candidate_transport::udp,
           nat::candidate_kind::mapped, transport::canonical(m.external_address), m.external_port});
  if (const auto udp = local_udp_endpoint())
    for (const auto& a : host_addresses(udp->address()))
      add({nat::candidate_transport::udp, nat::candidate_kind::host, a, udp->port()});
  // The record's first TCP candidate is where dial-backs go: keep TCP first.
  std::stable_partition(out.begin(), out.end(), [](const nat::candidate& c) {
    return c.transport == nat::candidate_transport::tcp;
  });
  return out;
}

void service::impl::refresh_own_record(bool force) {
  if (!gossip_) return;
  auto cands = own_candidates();
  if (cands.empty()) return;
  const auto now = unix_now();
  const auto* own = gossip_->own();
  if (!force && own && own->candidates == cands &&
      now - own->issued < gossip_->limits().max_age / 2)
    return;
  gossip_->set_own(bootstrap::contact_record::make(id_, cfg_.network_name, std::move(cands), now));
}

bool service::impl::gossip_partner(const connection& c) const {
  // Clients take no part; a relayed peer is reached through another, and
  // its record would name endpoints we cannot prove.
  return c.info().role == node_role::node && c.info().path != path_kind::relayed && !c.ended();
}

bool service::impl::send_gossip(connection& c, const bytes& body) {
  bytes record{static_cast<byte>(secure::record_type::gossip)};
  append(record, body);
  return c.send_control(std::move(record));
}

void service::impl::gossip_greet(const std::shared_ptr<connection>& conn) {
  if (!gossip_ || stopping_ || !gossip_partner(*conn)) return;
  refresh_own_record(false);
  send_gossip(*conn, gossip_->make_push(conn->initiated_by_us()));
}

void service::impl::on_gossip(const std::shared_ptr<connection>& conn, bytes body) {
  // Only the registered connection speaks for its peer.
  auto it = peers_.find(conn->info().id);
  if (it == peers_.end() || it->second != conn || stopping_ || !gossip_) return;
  const auto from = conn->info().id;
  if (!gossip_partner(*conn)) return;  // a client's gossip is not listened to
  auto react = gossip_->on_message(from, body, unix_now());
  for (const auto& reply : react.replies) send_gossip(*conn, reply);
  if (react.violation && react.violation != errc::quota_exceeded) {
    // Forged or malformed records: the peer is disconnected and the
    // application told (it may blacklist the peer). Over the rate, the
    // messages are only dropped: a busy peer is not a hostile one.
    const auto why = "gossip: " + react.violation.message();
    CRUST_LOG(warn, "gossip", from.short_string() << " broke the rules (" << why << ")");
    peers_.erase(it);
    drop_parked(from);
    relay_->on_peer_gone(from);
    conn->close(close_reason::protocol_error, why);
    post_event(events::lost_peer{from, make_error_code(errc::protocol_violation), why});
    return;
  }
  // We dialled its listener where its record says it listens: proven.
  if (conn->initiated_by_us() && conn->info().transport == transport::kind::tcp)
    if (const auto* e = gossip_->find(from); e && !e->proven) {
      const auto ep = e->record.tcp_endpoint();
      if (ep && transport::to_string(*ep) == conn->info().remote) gossip_->mark_proven(from);
    }
  if (react.answer_to)
    if (auto f = finds_.find(*react.answer_to); f != finds_.end() && f->second->asked == from) {
      f->second->found = std::move(react.found);
      f->second->done.notify();
    }
}

asio::awaitable<void> service::impl::gossip_loop() {
  timer t(ex_);
  for (;;) {
    t.expires_after(cfg_.gossip_interval);
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || stopping_ || !gossip_) co_return;
    gossip_round();
  }
}

void service::impl::gossip_round() {
  refresh_own_record(false);
  std::vector<public_id> partners;
  for (const auto& [id, c] : peers_)
    if (gossip_partner(*c)) partners.push_back(id);
  for (const auto& [to, body] : gossip_->round(partners, unix_now()))
    if (auto it = peers_.find(to); it != peers_.end()) send_gossip(*it->second, body);
  for (auto& r : gossip_->dial_backs()) spawn(gossip_dial_back(std::move(r)), "gossip dial-back");
}

asio::awaitable<void> service::impl::gossip_dial_back(bootstrap::contact_record r) {
  std::optional<endpoint> reached;
  if (!banned_ids_.contains(r.key.id))
    for (const auto& ep : r.tcp_endpoints()) {
      if (banned(ep.address())) continue;
      auto failed = co_await dial_back(ep.address(), ep.port(), r.key);
      if (stopping_ || !gossip_) co_return;
      if (!failed) {
        reached = ep;
        break;
      }
    }
  const auto* e = gossip_->dial_back_done(r.key.id, reached.has_value());
  if (!e || !reached) co_return;
  // Proven: the cache takes it under its own bounds (per /16, per informant).
  const std::string source =
      e->source == r.key.id ? std::string(bootstrap::direct_source) : e->source.to_string();
  if (!is_contact(*reached, r.key.id) && cache_.record_success(r.key, *reached, unix_now(), source))
    save_cache();
}

std::vector<bootstrap::gossip_entry> service::impl::known_peers() const {
  std::vector<bootstrap::gossip_entry> out;
  if (!gossip_) return out;
  for (const auto& [id, e] : gossip_->entries()) out.push_back(e);
  return out;
}

std::vector<bootstrap::contact_record> service::impl::sample_peers(std::size_t count) {
  return gossip_ ? gossip_->sample(count) : std::vector<bootstrap::contact_record>{};
}

asio::awaitable<std::optional<std::vector<bootstrap::contact_record>>> service::impl::ask_near(
    const bootstrap::contact_record& r, const public_id& target, std::size_t& dials) {
  const auto id = r.key.id;
  auto it = peers_.find(id);
  if (it == peers_.end() || !gossip_partner(*it->second)) {
    if (dials >= lookup_max_dials || banned_ids_.contains(id)) co_return std::nullopt;
    const auto ep = r.tcp_endpoint();
    if (!ep) co_return std::nullopt;
    ++dials;
    auto c = co_await connect(*ep, r.key);
    if (!c || stopping_) co_return std::nullopt;
    it = peers_.find(id);
    if (it == peers_.end() || !gossip_partner(*it->second)) co_return std::nullopt;
  }
  const auto query = next_query_++;
  auto pending = std::make_shared<pending_find>(ex_, id);
  finds_[query] = pending;
  send_gossip(*it->second, bootstrap::gossip::make_find_near(query, target.key, lookup_k));
  timer t(ex_);
  t.expires_after(find_timeout);
  using namespace asio::experimental::awaitable_operators;
  while (!pending->found && !stopping_ && clock::now() < t.expiry()) {
    auto cancelled = co_await cancel_requested();
    if (cancelled) break;
    co_await (pending->done.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
  }
  finds_.erase(query);
  co_return std::move(pending->found);
}

asio::awaitable<result<std::vector<bootstrap::contact_record>>> service::impl::find_peers_near(
    public_id target, std::size_t count, std::int64_t newer_than) {
  if (stopping_) co_return make_error_code(errc::shutting_down);
  if (!cfg_.enable_gossip) co_return make_error_code(asio::error::operation_not_supported);
  if (!gossip_) co_return make_error_code(asio::error::not_connected);
  auto self = shared_from_this();
  bootstrap::gossip_lookup look(target, lookup_alpha, lookup_k, newer_than);
  for (const auto& r : gossip_->near(target.key, lookup_k, true)) look.add(r);
  std::size_t dials = 0;
  while (!look.done()) {
    auto batch = look.next();
    if (batch.empty()) break;
    for (const auto& r : batch) {
      auto found = co_await ask_near(r, target, dials);
      if (stopping_) co_return make_error_code(errc::shutting_down);
      auto cancelled = co_await cancel_requested();
      if (cancelled) co_return make_error_code(errc::cancelled);
      if (found)
        look.answered(r.key.id, *found);
      else
        look.failed(r.key.id);
    }
  }
  CRUST_LOG(debug, "gossip",
            "lookup of " << target.short_string() << ": asked " << look.asked() << ", "
                         << (look.result() ? "found" : "not found"));
  co_return look.nearest(count);
}

asio::awaitable<result<peer_info>> service::impl::connect_to(public_id target) {
  if (stopping_) co_return make_error_code(errc::shutting_down);
  if (auto it = peers_.find(target); it != peers_.end()) co_return it->second->info();
  if (target == id_.id()) co_return make_error_code(errc::wrong_peer_key);
  if (banned_ids_.contains(target)) co_return make_error_code(errc::blacklisted);
  auto self = shared_from_this();
  std::optional<bootstrap::contact_record> record;
  if (const auto* e = gossip_ ? gossip_->find(target) : nullptr) record = e->record;
  const bool held = record.has_value();  // else a lookup found it: a second one would not help
  if (!record) {
    auto near = co_await find_peers_near(target, 1);
    if (!near) co_return near.error();
    if (!near->empty() && near->front().key.id == target) record = near->front();
  }
  if (!record) {
    post_event(events::connect_failure{"", target, make_error_code(errc::not_found),
                                       "no record of it was found by gossip"});
    co_return make_error_code(errc::not_found);
  }
  auto dial = [&](const bootstrap::contact_record& rec) -> asio::awaitable<result<peer_info>> {
    result<peer_info> last = make_error_code(errc::not_found);
    for (const auto& ep : rec.tcp_endpoints()) {
      last = co_await connect(ep, rec.key);
      if (last || stopping_) co_return last;
      auto cancelled = co_await cancel_requested();
      if (cancelled) co_return make_error_code(errc::cancelled);
    }
    co_return last;
  };
  auto r = co_await dial(*record);
  if (r || !held || stopping_ || r.error() == errc::cancelled || r.error() == errc::blacklisted)
    co_return r;
  // The record may be stale (a peer that rotated its port): ask for a newer one.
  auto near = co_await find_peers_near(target, 1, record->issued);
  if (near && !near->empty() && near->front().key.id == target) {
    CRUST_LOG(info, "gossip",
              target.short_string() << " not reached where we knew it; trying its newer record");
    co_return co_await dial(near->front());
  }
  co_return r;
}

}  // namespace crust
