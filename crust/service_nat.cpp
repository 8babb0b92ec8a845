// The service's NAT traversal: port mapping, connection info (with STUN
// over UDP and TCP), rendezvous (UDP punching with µTP over the path, TCP
// dials and simultaneous open), and its side of introductions and the
// relay (crust/detail/relay_agent.hpp).
#include "crust/detail/service_impl.hpp"

namespace crust {

void service::impl::on_relay(const std::shared_ptr<connection>& conn, bytes body) {
  // Only the registered connection speaks for its peer.
  auto it = peers_.find(conn->info().id);
  if (it == peers_.end() || it->second != conn || stopping_) return;
  relay_->on_record(conn->info().id, body);
}

// --- relay_host (crust/detail/relay_agent.hpp) ---
bool service::impl::send_relay(const public_id& to, bytes record) {
  auto it = peers_.find(to);
  return it != peers_.end() && it->second->send_control(std::move(record));
}

std::optional<peer_info> service::impl::peer(const public_id& id, bool direct_only) const {
  auto it = peers_.find(id);
  if (it == peers_.end()) return std::nullopt;
  if (direct_only && it->second->info().path == path_kind::relayed) return std::nullopt;
  return it->second->info();
}

void service::impl::accept_relayed(transport::stream s) {
  if (stopping_) return;
  take_inbound(std::move(s));
}

asio::awaitable<result<peer_info>> service::impl::dial_relayed(transport::stream s,
                                                               std::optional<peer_key> key,
                                                               public_id via) {
  auto self = shared_from_this();
  auto r = co_await establish(std::move(s), key, false, "relay via " + via.short_string(),
                              clock::now(), std::nullopt, transport::kind::relay);
  co_return r;
}

asio::awaitable<result<nat::private_connection_info>> service::impl::prepare_info() {
  auto self = shared_from_this();
  auto r = co_await prepare_connection_info(prepare_options{});
  co_return r;
}

std::optional<peer_info> service::impl::set_connect_time(const public_id& id, duration took) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return std::nullopt;
  it->second->set_path(it->second->info().path, took);
  return it->second->info();
}

// The registered connection to `id` unless it is relayed.
std::shared_ptr<connection> service::impl::direct_peer(const public_id& id) const {
  auto it = peers_.find(id);
  if (it == peers_.end() || it->second->info().path == path_kind::relayed) return nullptr;
  return it->second;
}

asio::awaitable<result<peer_info>> service::impl::connect_through(public_id via, public_id target,
                                                                  introduction_options o) {
  auto self = shared_from_this();
  if (stopping_) co_return make_error_code(errc::shutting_down);
  auto r = co_await relay_->connect_through(via, target, std::move(o));
  co_return r;
}

// --- port mapping on the gateway (nat/port_mapper.hpp) ---
// The TCP listener's and the UDP socket's ports, each kept mapped in the
// background (renewed at half the lease, asked for again when lost) and
// removed by stop(). A node on loopback has nothing to map.
void service::impl::start_port_mapping(const asio::ip::address& bound) {
  if (bound.is_loopback()) return;
  nat::mapping_options o;
  o.gateway = cfg_.port_mapping_gateway;
  o.methods.clear();
  for (const auto& m : cfg_.port_mapping_methods)
    if (auto method = nat::parse_mapping_method(m)) o.methods.push_back(*method);
  o.lifetime = static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(cfg_.port_mapping_lifetime).count());
  if (o.methods.empty()) return;
  o.threads = cfg_.port_mapping_threads;
  mapper_ = nat::port_mapper::create(ex_, std::move(o), blocking_pool_);
  mapping_internal_ = bound.is_unspecified() ? asio::ip::address() : transport::canonical(bound);
  if (auto tcp = local_endpoint()) acceptor_unmap_ = map_port(nat::pmp::protocol::tcp, tcp->port());
  // The UDP socket never moves: its signal is never raised.
  if (auto udp = local_udp_endpoint()) map_port(nat::pmp::protocol::udp, udp->port());
}

std::shared_ptr<service::impl::unmap_signal> service::impl::map_port(nat::pmp::protocol p,
                                                                     std::uint16_t port) {
  auto unmap = std::make_shared<unmap_signal>(ex_);
  ++mappings_unsettled_;
  mapping_tasks_.spawn(keep_mapped({p, mapping_internal_, port, 0}, unmap), "port mapping",
                       shared_from_this());
  return unmap;
}

asio::awaitable<void> service::impl::keep_mapped(nat::mapping_request r,
                                                 std::shared_ptr<unmap_signal> unmap) {
  using namespace asio::experimental::awaitable_operators;
  auto mapper = mapper_;
  bool settled = false;
  auto settle = [&] {
    if (settled) return;
    settled = true;
    --mappings_unsettled_;
    mapping_settled_.notify();
  };
  auto report = [&](const nat::mapping_change& c) {
    settle();
    events::port_mapping_changed ev;
    ev.kind = static_cast<events::port_mapping_changed::what>(c.kind);
    ev.protocol = std::string(nat::pmp::to_string(r.protocol));
    ev.internal_port = r.internal_port;
    if (c.mapping && c.kind != nat::mapping_change::what::failed) {
      const auto& m = *c.mapping;
      ev.external = m.external_address.is_unspecified()
                        ? "?:" + std::to_string(m.external_port)
                        : transport::to_string({m.external_address, m.external_port});
      ev.method = std::string(nat::to_string(m.method));
      ev.lifetime = m.lifetime;
    }
    ev.notes = c.notes;
    if (c.kind == nat::mapping_change::what::renewed)
      CRUST_LOG(debug, "service", describe(event{ev}));
    else
      CRUST_LOG(info, "service", describe(event{ev}));
    post_event(std::move(ev));
  };
  if (!unmap->raised) co_await (mapper->maintain(r, report) || unmap->wake.wait());
  settle();
  // The port closed (a rotation's grace ended): its mapping goes too. When
  // the service stops instead, stop() releases every mapping at once.
  if (unmap->raised && !stopping_) co_await mapper->release(r.protocol, r.internal_port);
}

// Waits (at most `bound`) until every port mapping has had its first
// answer, so a connection info made at start-up has its mapped candidates.
asio::awaitable<void> service::impl::mappings_settled(duration bound) {
  using namespace asio::experimental::awaitable_operators;
  timer t(ex_, clock::now() + bound);
  while (mappings_unsettled_ > 0 && clock::now() < t.expiry() && !stopping_) {
    co_await (mapping_settled_.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return;
  }
}

asio::awaitable<service::impl::tcp_opening> service::impl::sort_tcp(transport::stream& s,
                                                                    std::uint64_t ticket,
                                                                    time_point deadline) {
  bytes head(nat::stun::header_size);
  auto got = co_await with_timeout(read_exact(s, head), time_left(deadline));
  if (!got) {
    CRUST_LOG(debug, "service",
              "inbound connection from " << s.remote_description()
                                         << " ended early: " << got.error().message());
    co_return tcp_opening::failed;
  }
  if (nat::is_tcp_binding_head(head)) {
    auto from = s.tcp_remote_endpoint();
    if (!cfg_.enable_stun_server || !from) co_return tcp_opening::failed;
    auto r = co_await nat::serve_tcp_binding(s, std::move(head), *from, time_left(deadline));
    if (!r)
      CRUST_LOG(
          debug, "service",
          "STUN over TCP from " << transport::to_string(*from) << ": " << r.error().message());
    s.close();
    co_return tcp_opening::handled;
  }
  if (std::equal(so_magic.begin(), so_magic.end(), head.begin())) {
    // The rest of the peer's preamble, then ours.
    head.resize(so_preamble_size);
    auto rest = co_await with_timeout(
        read_exact(s, mutable_byte_span(head).subspan(nat::stun::header_size)),
        time_left(deadline));
    if (!rest) co_return tcp_opening::failed;
    public_id them{};
    std::copy_n(head.begin() + so_magic.size(), them.key.size(), them.key.begin());
    // Only a peer we are in a rendezvous with opens this way: anyone else
    // could name any id (one that wins we_control, say) to make us run an
    // initiator outside the limits on inbound handshakes.
    auto known = rendezvous_keys_.find(them);
    if (known == rendezvous_keys_.end()) {
      CRUST_LOG(debug, "service",
                "a simultaneous-open preamble from " << s.remote_description() << " names "
                                                     << them.short_string()
                                                     << ", with whom no rendezvous is running");
      co_return tcp_opening::failed;
    }
    const auto key = known->second;
    const auto ours = so_preamble();
    auto sent = co_await with_timeout(write_all(s, ours), time_left(deadline));
    if (!sent) co_return tcp_opening::failed;
    if (!we_control(them))
      co_return tcp_opening::noise;  // preamble consumed: the handshake follows
    // We run the initiator, with the key the rendezvous knows.
    drop_pending(ticket);
    spawn(initiate_on(std::move(s), key), "simultaneous open");
    co_return tcp_opening::handled;
  }
  s.unread(std::move(head));
  co_return tcp_opening::noise;
}

asio::awaitable<void> service::impl::initiate_on(transport::stream s, std::optional<peer_key> key) {
  const std::string where = s.remote_description();
  auto r = co_await establish(std::move(s), key, false, where, clock::now(), std::nullopt,
                              transport::kind::tcp);
  (void)r;  // reported by establish (events and the log)
}

bytes service::impl::so_preamble() const {
  // Sized first: GCC 12 warns falsely (-Warray-bounds) on growing a small vector.
  bytes b(so_preamble_size);
  std::copy(so_magic.begin(), so_magic.end(), b.begin());
  const auto me = id_.id();  // by value: one copy for both iterators
  std::copy(me.key.begin(), me.key.end(), b.begin() + so_magic.size());
  return b;
}

bool service::impl::we_control(const public_id& them) const {
  const auto me = id_.id();
  return std::lexicographical_compare(them.key.begin(), them.key.end(), me.key.begin(),
                                      me.key.end());
}

// One side of a TCP simultaneous open toward `to` (the peer's TCP
// reflexive endpoint), from our listening port, retried until `limit`:
// a SYN that finds no mapping yet is dropped, or refused by routers
// that answer with RST. On a connection, the preambles decide who runs
// the initiator; the other side's connection is registered through its
// inbound path, which this waits for.
asio::awaitable<result<peer_info>> service::impl::simultaneous_open(endpoint to, peer_key key,
                                                                    duration limit) {
  auto self = shared_from_this();
  const auto local = local_endpoint();
  if (!local) co_return make_error_code(asio::error::not_connected);
  const auto started = clock::now();
  const auto deadline = started + limit;
  const std::string where = "simultaneous open with " + transport::to_string(to);
  error_code last = make_error_code(errc::timed_out);
  while (clock::now() < deadline && !stopping_) {
    if (auto c = direct_peer(key.id)) co_return c->info();
    auto dial = transport::tcp_dial_from(*local, to);
    auto s =
        co_await with_timeout(std::move(dial), std::min(time_left(deadline), duration(seconds(1))));
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
    if (!s) {
      last = s.error();
      if (s.error() != errc::timed_out) co_await pause(milliseconds(100));
      continue;
    }
    const auto ours = so_preamble();
    auto sent = co_await with_timeout(write_all(*s, ours), time_left(deadline));
    bytes theirs(so_preamble_size);
    result<void> got = make_error_code(errc::timed_out);
    if (sent) got = co_await with_timeout(read_exact(*s, theirs), time_left(deadline));
    if (!sent || !got || !std::equal(so_magic.begin(), so_magic.end(), theirs.begin()) ||
        !std::equal(key.id.key.begin(), key.id.key.end(), theirs.begin() + so_magic.size())) {
      last = make_error_code(errc::handshake_failed);
      continue;  // not the peer's preamble: another try
    }
    if (we_control(key.id)) {
      auto r = co_await establish(std::move(*s), key, false, where, started, std::nullopt,
                                  transport::kind::tcp);
      co_return r;
    }
    spawn(inbound(std::move(*s), true), "simultaneous open");
    const auto until = clock::now() + cfg_.handshake_timeout;
    while (!direct_peer(key.id) && clock::now() < until && !stopping_) {
      using namespace asio::experimental::awaitable_operators;
      timer t(ex_, until);
      co_await (registered_.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
      const bool c2 = co_await cancel_requested();
      if (c2) co_return make_error_code(errc::cancelled);
    }
    if (auto c = direct_peer(key.id)) co_return c->info();
    co_return make_error_code(errc::timed_out);
  }
  co_return stopping_ ? make_error_code(errc::shutting_down) : last;
}

asio::awaitable<result<nat::binding_result>> service::impl::reflexive_address(
    asio::ip::udp::endpoint server, nat::stun::retransmission r) {
  if (!stun_) co_return make_error_code(asio::error::not_connected);
  auto agent = stun_;  // the agent outlives a stop() during the transaction
  co_return co_await agent->binding(server, r);
}

asio::awaitable<nat::nat_report> service::impl::discover_nat(nat::discover_options o) {
  if (!stun_ || !udp_) {
    auto r = nat::classify({}, {}, std::nullopt);
    r.notes.insert(r.notes.begin(),
                   "the node has no UDP socket (enable_utp is off or it is "
                   "not started)");
    co_return r;
  }
  auto self = shared_from_this();
  auto mux = udp_;
  auto agent = stun_;
  auto r = co_await nat::discover(mux, agent, std::move(o));
  last_nat_ = r;  // for status()
  co_return r;
}

asio::awaitable<result<nat::private_connection_info>> service::impl::prepare_connection_info(
    prepare_options o) {
  if (stopping_) co_return make_error_code(errc::shutting_down);
  const auto tcp = local_endpoint();
  const auto udp = local_udp_endpoint();
  if (!tcp && !udp) co_return make_error_code(asio::error::not_connected);
  std::vector<nat::candidate> cands;
  for (const auto& [ep, t] : {std::pair{tcp, nat::candidate_transport::tcp},
                              std::pair{udp, nat::candidate_transport::udp}})
    if (ep)
      for (const auto& a : host_addresses(ep->address()))
        cands.push_back({t, nat::candidate_kind::host, a, ep->port()});

  auto servers = o.stun_servers;
  for (const auto& text : cfg_.stun_servers)
    if (auto e = transport::parse_endpoint(text)) {
      const asio::ip::udp::endpoint u(e->address(), e->port());
      if (std::find(servers.begin(), servers.end(), u) == servers.end()) servers.push_back(u);
    }
  std::size_t from_peers = 0;
  for (const auto& [peer, c] : peers_) {
    if (from_peers == o.peer_servers) break;
    if (!c->info().udp_port || !c->remote_ip()) continue;
    const asio::ip::udp::endpoint s(transport::canonical(*c->remote_ip()), c->info().udp_port);
    if (std::find(servers.begin(), servers.end(), s) != servers.end()) continue;
    servers.push_back(s);
    ++from_peers;
  }
  nat::nat_hint hint;
  std::vector<std::string> notes;
  if (!udp) {
    notes.emplace_back("no UDP socket (enable_utp is off): TCP host candidates only");
  } else if (servers.empty()) {
    notes.emplace_back(
        "no STUN server: no reflexive candidate (name servers, or connect to a peer first)");
  } else {
    nat::discover_options d;
    d.observers = servers;
    if (!o.discover_nat) {
      d.extra_sockets = 0;
      d.hairpin = false;
      d.filtering = false;
    }
    auto report = co_await discover_nat(std::move(d));
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
    if (stopping_) co_return make_error_code(errc::shutting_down);
    if (o.discover_nat) hint = nat::nat_hint::from(report);
    for (const auto& e : report.external) {
      nat::candidate c{nat::candidate_transport::udp, nat::candidate_kind::reflexive,
                       transport::canonical(e.address()), e.port()};
      const bool is_host = std::any_of(cands.begin(), cands.end(), [&](const auto& h) {
        return h.transport == c.transport && h.address == c.address && h.port == c.port;
      });
      if (!is_host) cands.push_back(c);
    }
    if (report.external.empty())
      notes.push_back("no STUN server answered (" + std::to_string(servers.size()) + " asked)");
    for (auto& n : report.notes) notes.push_back(std::move(n));
  }
  // Mapped candidates: what the gateway granted (after the discovery
  // above, which gave it time; a node just started waits at most 2 s
  // more for its first answer).
  co_await mappings_settled(seconds(2));
  if (stopping_) co_return make_error_code(errc::shutting_down);
  for (const auto& m : port_mappings()) {
    if (m.external_address.is_unspecified()) continue;
    const auto t = m.protocol == nat::pmp::protocol::tcp ? nat::candidate_transport::tcp
                                                         : nat::candidate_transport::udp;
    const nat::candidate c{t, nat::candidate_kind::mapped, transport::canonical(m.external_address),
                           m.external_port};
    auto same = std::find_if(cands.begin(), cands.end(), [&](const nat::candidate& h) {
      return h.transport == c.transport && h.address == c.address && h.port == c.port;
    });
    // A port-preserving NAT maps to where STUN saw us: the endpoint is
    // both, and "mapped" says more (anyone may send to it).
    if (same == cands.end())
      cands.push_back(c);
    else if (same->kind == nat::candidate_kind::reflexive)
      same->kind = nat::candidate_kind::mapped;
  }

  if (tcp) {
    // TCP reflexive candidates, from the listener's own port.
    auto tcp_servers = o.tcp_stun_servers;
    std::size_t tcp_from_peers = 0;
    for (const auto& [peer, c] : peers_) {
      if (tcp_from_peers == o.tcp_peer_servers) break;
      if (c->info().inbound || c->info().transport != transport::kind::tcp) continue;
      auto ep = transport::parse_endpoint(c->info().remote);
      if (!ep || std::find(tcp_servers.begin(), tcp_servers.end(), *ep) != tcp_servers.end())
        continue;
      tcp_servers.push_back(*ep);
      ++tcp_from_peers;
    }
    for (const auto& server : tcp_servers) {
      auto m = co_await nat::tcp_binding(*tcp, server, seconds(2));
      const bool cancelled = co_await cancel_requested();
      if (cancelled) co_return make_error_code(errc::cancelled);
      if (!m) {
        notes.push_back("STUN over TCP to " + transport::to_string(server) + ": " +
                        m.error().message());
        continue;
      }
      const nat::candidate c{nat::candidate_transport::tcp, nat::candidate_kind::reflexive,
                             transport::canonical(m->address()), m->port()};
      if (std::none_of(cands.begin(), cands.end(), [&](const nat::candidate& h) {
            return h.transport == c.transport && h.address == c.address && h.port == c.port;
          }))
        cands.push_back(c);
    }
  }
  if (cands.empty()) co_return make_error_code(asio::error::not_connected);
  auto info = nat::private_connection_info::prepare(id_, cfg_.network_name, std::move(cands), hint,
                                                    unix_now(), o.lifetime);
  events::connection_info_prepared ev;
  ev.nonce = to_hex(info.pub().nonce);
  for (const auto& c : info.pub().candidates)
    ev.candidates.push_back(std::string(nat::to_string(c.transport)) + " " +
                            std::string(nat::to_string(c.kind)) + " " + c.endpoint_string());
  ev.nat = std::string(nat::to_string(hint.mapping)) + " mapping, " +
           std::string(nat::to_string(hint.allocation)) + " allocation";
  ev.notes = std::move(notes);
  CRUST_LOG(info, "service", describe(event{ev}));
  post_event(std::move(ev));
  co_return info;
}

// --- rendezvous: connection infos, punching, the race ---
asio::awaitable<result<peer_info>> service::impl::rendezvous(nat::private_connection_info mine,
                                                             nat::connection_info theirs,
                                                             rendezvous_options o) {
  auto self = shared_from_this();
  if (stopping_) co_return make_error_code(errc::shutting_down);
  if (!(mine.pub().key == id_.public_key()) || theirs.key.id == id_.id())
    co_return make_error_code(errc::wrong_peer_key);
  if (banned_ids_.contains(theirs.key.id)) co_return make_error_code(errc::blacklisted);
  std::vector<attempt<peer_info>> attempts;
  if (o.udp && udp_)
    attempts.push_back(
        [this, mine, theirs, pc = o.punch] { return punch_then_utp(mine, theirs, pc); });
  std::set<std::size_t> opens;  // which attempts are simultaneous opens
  for (const auto& c : theirs.candidates) {
    if (c.transport != nat::candidate_transport::tcp || banned(c.address)) continue;
    const endpoint to(c.address, c.port);
    if (o.tcp)
      attempts.push_back(
          [this, to, key = theirs.key] { return connect(to, key, false, transport::kind::tcp); });
    // A reflexive endpoint is a NAT's mapping: open it from both sides.
    if (o.tcp_simultaneous_open && c.kind == nat::candidate_kind::reflexive && acceptor_) {
      opens.insert(attempts.size());
      attempts.push_back([this, to, key = theirs.key, d = o.punch.deadline] {
        return simultaneous_open(to, key, d);
      });
    }
  }
  // Inbound simultaneous opens from this peer run Noise XK with its key.
  rendezvous_keys_[theirs.key.id] = theirs.key;
  struct forget_key {
    impl* owner;
    public_id id;
    ~forget_key() { owner->rendezvous_keys_.erase(id); }
  } forget{this, theirs.key.id};
  if (attempts.empty()) co_return make_error_code(errc::no_contacts);
  const auto n = attempts.size();
  const auto started = clock::now();
  auto out = co_await first_success(std::move(attempts), milliseconds(50), n);
  if (!out.value) co_return std::move(out.value);
  auto conn = direct_peer(theirs.key.id);
  if (!conn) co_return make_error_code(errc::not_connected);  // lost at once
  const auto took = clock::now() - started;
  conn->set_path(
      opens.contains(out.winner) ? path_kind::punched : path_to(*conn, theirs, mine.pub()), took);
  CRUST_LOG(info, "service",
            "rendezvous with " << theirs.key.id.short_string() << ": "
                               << transport::to_string(conn->info().transport) << " "
                               << conn->info().remote << " (" << to_string(conn->info().path)
                               << ") after "
                               << std::chrono::duration_cast<milliseconds>(took).count() << " ms");
  co_return conn->info();
}

// How a connection made by a rendezvous reaches the peer, from the
// candidates: to one of the peer's host endpoints is direct, to a port
// mapping is mapped, anything else went through the NATs (punched). An
// inbound TCP connection shows the peer's NAT, not what it dialled:
// mapped if we hold a TCP mapping, else direct (it reached one of our
// listening endpoints; a simultaneous open is told apart by the caller).
path_kind service::impl::path_to(const connection& c, const nat::connection_info& theirs,
                                 const nat::connection_info& mine) {
  auto remote = transport::parse_endpoint(c.info().remote);
  if (!remote) return path_kind::punched;
  const auto addr = transport::canonical(remote->address());
  const auto t = c.info().transport == transport::kind::tcp ? nat::candidate_transport::tcp
                                                            : nat::candidate_transport::udp;
  auto kind_of = [&](const nat::connection_info& info,
                     bool port_too) -> std::optional<nat::candidate_kind> {
    for (const auto& cand : info.candidates)
      if (cand.transport == t && cand.address == addr && (!port_too || cand.port == remote->port()))
        return cand.kind;
    return std::nullopt;
  };
  if (c.info().inbound && t == nat::candidate_transport::tcp) {
    const bool mapped =
        std::any_of(mine.candidates.begin(), mine.candidates.end(), [](const auto& x) {
          return x.transport == nat::candidate_transport::tcp &&
                 x.kind == nat::candidate_kind::mapped;
        });
    return mapped ? path_kind::mapped : path_kind::direct;
  }
  auto k = kind_of(theirs, true);
  if (k == nat::candidate_kind::host) return path_kind::direct;
  if (k == nat::candidate_kind::mapped) return path_kind::mapped;
  return path_kind::punched;
}

// A STUN datagram some punch in progress claims: it answers (checks
// from a blacklisted address get nothing) and is woken.
bool service::impl::intercept_punch(byte_span d, const asio::ip::udp::endpoint& from) {
  for (const auto& p : punches_) {
    if (!p->session.claims(d)) continue;
    if (banned(transport::canonical(from.address()))) return true;
    auto answer = p->session.on_datagram(d, from, clock::now());
    if (answer && udp_) udp_->send(*answer, from);
    p->wake.notify();
    return true;
  }
  return false;
}

// A dual-stack socket reaches IPv4 endpoints through mapped addresses.
asio::ip::udp::endpoint service::impl::for_socket(const asio::ip::udp::endpoint& e) const {
  if (udp_ && e.address().is_v4() && udp_->local_endpoint().address().is_v6())
    return {asio::ip::make_address_v6(asio::ip::v4_mapped, e.address().to_v4()), e.port()};
  return e;
}

// Runs one punch on the node's UDP socket: the peer's endpoint that
// answered. A session that succeeded keeps answering the peer's checks
// until its deadline (the peer may not have had our answer yet). Errors:
// not_connected (no UDP socket), timed_out (the session's deadline),
// malformed (no UDP candidate), duplicate_connection (the peer connected
// to us meanwhile, by any transport), shutting_down, cancelled.
asio::awaitable<result<service::impl::punched>> service::impl::punch_udp(
    const nat::private_connection_info& mine, const nat::connection_info& theirs,
    nat::punch_config pc) {
  auto self = shared_from_this();
  if (!udp_ || !stun_) co_return make_error_code(asio::error::not_connected);
  const auto local = udp_->local_endpoint();
  auto s = nat::punch_session::start(mine, theirs, local, clock::now(), pc);
  if (!s) co_return s.error();
  ++metrics_.punch_attempts;
  auto run = std::make_shared<punch_run>(std::move(*s), ex_);
  // Multi-socket probing: sockets of our own, each a new NAT mapping,
  // whose STUN goes straight to this session.
  const unsigned extra = run->session.extra_sockets();
  std::weak_ptr<punch_run> weak = run;
  for (unsigned i = 1; i <= extra; ++i) {
    auto mux = transport::udp_mux::open(ex_, {local.address(), 0});
    if (!mux) {
      CRUST_LOG(
          info, "service",
          "multi-socket probing: socket " << i << " of " << extra << ": " << mux.error().message());
      run->extra.push_back(nullptr);
      continue;
    }
    std::weak_ptr<transport::udp_mux> weak_mux = *mux;
    (*mux)->on(transport::datagram_kind::stun,
               [this, weak, weak_mux, i](byte_span d, const asio::ip::udp::endpoint& from) {
                 auto r = weak.lock();
                 auto m = weak_mux.lock();
                 if (!r || !m || banned(transport::canonical(from.address()))) return;
                 auto answer = r->session.on_datagram(d, from, clock::now(), i);
                 if (answer) m->send(*answer, from);
                 r->wake.notify();
               });
    udp_tasks_.spawn((*mux)->run(), "probe socket", self);
    run->extra.push_back(*mux);
  }
  if (extra > 0)
    CRUST_LOG(debug, "service",
              "multi-socket probing toward " << theirs.key.id.short_string() << ": " << extra
                                             << " sockets of ours");
  punches_.push_back(run);
  struct unregister {
    impl* owner;
    std::shared_ptr<punch_run> r;
    bool linger = false;
    ~unregister() {
      if (linger) return;
      std::erase(owner->punches_, r);
      r->close_extra();
    }
  } guard{this, run};
  timer t(ex_);
  using namespace asio::experimental::awaitable_operators;
  for (;;) {
    auto udp = udp_;
    if (!udp || stopping_) co_return make_error_code(errc::shutting_down);
    for (const auto& d : run->session.poll(clock::now())) {
      if (d.socket == 0)
        udp->send(d.data, for_socket(d.to));
      else if (d.socket <= run->extra.size() && run->extra[d.socket - 1])
        run->extra[d.socket - 1]->send(d.data, for_socket(d.to));
    }
    if (run->session.state() == nat::punch_state::succeeded) {
      ++metrics_.punch_successes;
      punched out{*run->session.path(), nullptr, run->session.spray()};
      if (const auto i = run->session.path_socket(); i > 0 && i <= run->extra.size())
        out.socket = run->handed_on = run->extra[i - 1];  // shared with the lingering session
      guard.linger = true;
      spawn(linger(run, clock::now() + pc.deadline), "punch linger");
      CRUST_LOG(debug, "service",
                "punched to " << theirs.key.id.short_string() << " at "
                              << transport::to_string({out.path.address(), out.path.port()})
                              << (out.socket ? " from an extra socket" : "") << " after "
                              << run->session.checks_sent() << " checks");
      co_return out;
    }
    if (run->session.state() == nat::punch_state::failed)
      co_return make_error_code(errc::timed_out);
    if (direct_peer(theirs.key.id)) co_return make_error_code(errc::duplicate_connection);
    t.expires_at(run->session.next_wakeup());
    co_await (run->wake.wait() || registered_.wait() ||
              t.async_wait(asio::as_tuple(asio::use_awaitable)));
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
  }
}

// Keeps a succeeded punch answering until `until`, then forgets it.
asio::awaitable<void> service::impl::linger(std::shared_ptr<punch_run> run, time_point until) {
  timer t(ex_);
  // In short steps, so that stop() does not wait for it.
  while (clock::now() < until && !stopping_) {
    t.expires_at(std::min(until, clock::now() + milliseconds(50)));
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) break;
  }
  std::erase(punches_, run);
  // The socket a path went through was handed on (and its holder keeps
  // it open); the others close.
  run->close_extra();
}

// The UDP attempt of a rendezvous: punch, then the controlling side (the
// larger id) dials µTP over the path while the other waits for it (or
// for any connection from that peer) within the handshake timeout.
asio::awaitable<result<peer_info>> service::impl::punch_then_utp(nat::private_connection_info mine,
                                                                 nat::connection_info theirs,
                                                                 nat::punch_config pc) {
  auto self = shared_from_this();
  auto path = co_await punch_udp(mine, theirs, pc);
  // The peer's connection may have come first (its µTP dial over a path
  // our side had not confirmed yet, or TCP): that is the result.
  if (auto c = direct_peer(theirs.key.id)) co_return c->info();
  if (!path) co_return path.error();
  // Who dials µTP over the path: under multi-socket probing the side with
  // the many sockets, from the one its path goes through (the other side
  // cannot know which of them that is); otherwise the larger id.
  bool controlling = we_control(theirs.key.id);
  if (path->spray != nat::spray_role::none) controlling = path->spray == nat::spray_role::sockets;
  if (path->socket) {
    auto r = co_await utp_over_extra(*path, theirs.key);
    co_return r;
  }
  if (controlling)
    co_return co_await connect(endpoint(path->path.address(), path->path.port()), theirs.key, false,
                               transport::kind::utp);
  timer t(ex_);
  t.expires_after(cfg_.handshake_timeout);
  using namespace asio::experimental::awaitable_operators;
  const auto deadline = clock::now() + cfg_.handshake_timeout;
  while (!direct_peer(theirs.key.id) && clock::now() < deadline && !stopping_) {
    co_await (registered_.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
  }
  if (auto c = direct_peer(theirs.key.id)) co_return c->info();
  co_return make_error_code(stopping_ ? errc::shutting_down : errc::timed_out);
}

asio::awaitable<result<peer_info>> service::impl::utp_over_extra(punched p, peer_key key) {
  auto self = shared_from_this();
  auto mgr = utp::attach(p.socket, utp_options());
  udp_tasks_.spawn(mgr->run(), "probe socket utp", self);
  const auto started = clock::now();
  const auto where = transport::to_string({p.path.address(), p.path.port()});
  auto dial = mgr->connect(p.path);
  auto s = co_await with_timeout(std::move(dial), cfg_.connect_timeout);
  result<peer_info> out = make_error_code(errc::timed_out);
  if (s)
    out = co_await establish(transport::stream(std::move(*s)), key, false, where, started,
                             std::nullopt, transport::kind::utp);
  else
    out = s.error();
  const auto& st = mgr->stats();
  CRUST_LOG(debug, "service",
            "µTP from a probe socket to "
                << where << ": " << (out ? "connected" : out.error().message()) << " (datagrams in "
                << st.datagrams_in << ", out " << st.datagrams_out << ")");
  // Keep the socket while the connection over it lives; otherwise close it.
  auto conn = direct_peer(key.id);
  const bool ours =
      conn && conn->info().transport == transport::kind::utp && conn->info().remote == where;
  if (ours) {
    spawn(keep_socket(p.socket, mgr, conn), "probe socket keeper");
  } else {
    mgr->shutdown();
    p.socket->close();
  }
  co_return out;
}

asio::awaitable<void> service::impl::keep_socket(std::shared_ptr<transport::udp_mux> mux,
                                                 std::shared_ptr<utp::manager> mgr,
                                                 std::shared_ptr<connection> conn) {
  co_await asio::this_coro::throw_if_cancelled(false);
  co_await conn->wait_ended();
  mgr->shutdown();
  mux->close();
}

// The addresses a listener bound to `bound` is reachable at: itself, or
// for a wildcard every up interface's (IPv4 only for 0.0.0.0; IPv6
// link-local ones left out, as they need a scope), loopback only when
// there is nothing else.
std::vector<asio::ip::address> service::impl::host_addresses(const asio::ip::address& bound) {
  if (!bound.is_unspecified()) return {transport::canonical(bound)};
  std::vector<asio::ip::address> out, loop;
  for (const auto& i : bootstrap::lan_interfaces())
    for (const auto& a : i.addresses) {
      if (bound.is_v4() && !a.is_v4()) continue;
      if (a.is_v6() && (a.to_v6().is_link_local() || a.to_v6().is_v4_mapped())) continue;
      auto& into = a.is_loopback() || i.loopback ? loop : out;
      if (std::find(into.begin(), into.end(), a) == into.end()) into.push_back(a);
    }
  return out.empty() ? loop : out;
}

}  // namespace crust
