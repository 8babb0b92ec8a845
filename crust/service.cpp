#include "crust/detail/service_impl.hpp"

namespace crust {

namespace {
constexpr auto replacement_wait = seconds(2);

bool listed(const std::optional<std::vector<asio::ip::address>>& list,
            const std::optional<asio::ip::address>& ip) {
  if (!list) return true;  // no whitelist: everyone
  if (!ip) return false;
  return std::find(list->begin(), list->end(), transport::canonical(*ip)) != list->end();
}

// The keys reload() applies to a running node.
const std::set<std::string, std::less<>> live_keys = {
    "whitelisted_node_ips",        "whitelisted_client_ips",  "accept_bootstrap",
    "hard_coded_contacts",         "bootstrap_timeout_ms",    "bootstrap_concurrency",
    "bootstrap_stagger_ms",        "bootstrap_cache_size",    "bootstrap_cache_per_group",
    "bootstrap_cache_per_source",  "bootstrap_cache_ttl_s",   "lan_discovery_window_ms",
    "external_reachability_check", "enable_stun_server",      "enable_relay",
    "relay_max_circuits",          "relay_circuits_per_peer", "relay_circuit_bytes",
};

// Adds one connection's message and byte counters to `m`.
void add_payload(node_metrics& m, const peer_stats& s) {
  m.messages_sent += s.messages_sent;
  m.bytes_sent += s.bytes_sent;
  m.messages_received += s.messages_received;
  m.bytes_received += s.bytes_received;
  m.messages_dropped += s.messages_dropped;
}

}  // namespace

// --- connection_owner ---
asio::awaitable<void> service::impl::deliver(event ev, bool is_message) {
  // Messages wait for room (back-pressure: the connection stops reading,
  // and flow control reaches the peer), by count and by bytes for all
  // peers together. One message larger than the byte bound still goes
  // alone into an empty queue.
  const std::size_t size =
      is_message ? std::get<events::new_message>(ev).payload.size() : std::size_t{0};
  while (is_message && !stopping_ &&
         (queued_messages_ >= cfg_.event_queue_messages ||
          (queued_messages_ > 0 && queued_message_bytes_ + size > cfg_.event_queue_bytes))) {
    co_await event_space_.wait();
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return;
  }
  if (stopping_) co_return;
  if (!is_message) {
    post_event(std::move(ev));
    co_return;
  }
  ++queued_messages_;
  queued_message_bytes_ += size;
  events_.push_back(std::move(ev));
  event_ready_.notify();
}

void service::impl::post_event(event ev) {
  if (stopping_) return;
  if (queued_other_events_ >= cfg_.event_queue_other) {
    // The application reads no events: drop the oldest that is not a
    // message (messages are bounded above, and dropping one would lose
    // data), rather than grow without bound.
    auto oldest = std::find_if(events_.begin(), events_.end(), [](const event& e) {
      return !std::holds_alternative<events::new_message>(e);
    });
    if (oldest != events_.end()) {
      if (metrics_.events_dropped++ == 0)
        CRUST_LOG(warn, "service",
                  "the application has left " << cfg_.event_queue_other
                                              << " events unread; dropping the oldest");
      events_.erase(oldest);
      --queued_other_events_;
    }
  }
  ++queued_other_events_;
  events_.push_back(std::move(ev));
  event_ready_.notify();
}

asio::awaitable<std::optional<std::string>> service::impl::admit(
    const std::shared_ptr<connection>& conn, const secure::incoming_hello& hello) {
  auto refusal = admission_refusal(*conn, hello);
  if (refusal) co_return refusal;
  if (cfg_.external_reachability_check && hello.bootstrap && hello.role == node_role::node) {
    auto self = shared_from_this();
    auto unreachable = co_await dial_back(conn->remote_ip(), hello.listen_port, conn->info().key);
    if (unreachable) co_return "not reachable from outside: " + *unreachable;
    // Things may have changed while we dialled.
    refusal = admission_refusal(*conn, hello);
    if (refusal) co_return refusal;
  }
  auto current = adopt(conn);
  if (current == conn) post_event(events::bootstrap_accept{conn->info()});
  co_return std::nullopt;
}

std::optional<std::string> service::impl::admission_refusal(
    const connection& conn, const secure::incoming_hello& hello) const {
  if (stopping_) return "service stopping";
  if (banned_ids_.contains(conn.info().id) || banned(conn.remote_ip())) return "blacklisted";
  const auto& list =
      hello.role == node_role::client ? cfg_.whitelisted_client_ips : cfg_.whitelisted_node_ips;
  if (!listed(list, conn.remote_ip()))
    return std::string("not whitelisted as a ") + to_string(hello.role);
  if (hello.bootstrap && !cfg_.accept_bootstrap) return "not accepting bootstrap connections";
  return std::nullopt;
}

// The external-reachability check: a TCP connect to where the peer says
// it listens, and a Noise XK handshake that only the holder of `key`
// completes; then the socket is closed (the peer sees a handshake with no
// hello, which it never announces). Within half the handshake timeout, so
// the answer reaches the dialler before its own admission deadline.
// Returns nullopt when it worked, else what went wrong, for the refusal.
asio::awaitable<std::optional<std::string>> service::impl::dial_back(
    const std::optional<asio::ip::address>& ip, std::uint16_t port, peer_key key) {
  if (!ip || port == 0) co_return std::string("it named no listening port");
  const endpoint to(*ip, port);
  auto attempt = [&]() -> asio::awaitable<result<void>> {
    auto s = co_await transport::tcp_dial(to);
    if (!s) co_return s.error();
    auto hs = co_await secure::run_handshake(
        *s, secure::handshake::initiator(id_, cfg_.network_name, key));
    if (!hs) co_return hs.error();
    if (hs->remote.id != key.id) co_return make_error_code(errc::wrong_peer_key);
    co_return result<void>{};
  };
  auto r = co_await with_timeout(attempt(), cfg_.handshake_timeout / 2);
  if (r) {
    CRUST_LOG(debug, "service", "dial-back to " << transport::to_string(to) << " succeeded");
    co_return std::nullopt;
  }
  CRUST_LOG(info, "service",
            "dial-back to " << transport::to_string(to) << " failed: " << r.error().message());
  co_return transport::to_string(to) + ": " + r.error().message();
}

// --- listening ---
asio::awaitable<result<service::endpoint>> service::impl::start() {
  if (stopping_) co_return make_error_code(errc::shutting_down);
  if (acceptor_) co_return acceptor_->local_endpoint();
  load_cache();
  error_code ec;
  auto addr = asio::ip::make_address(cfg_.listen_address, ec);
  if (ec) co_return make_error_code(errc::bad_config);
  endpoint at(addr, cfg_.tcp_acceptor_port);
  auto acc = transport::tcp_listen(ex_, at);
  if (!acc) {
    post_event(events::listener_failed{transport::to_string(at), acc.error()});
    co_return acc.error();
  }
  acceptor_ = std::make_shared<asio::ip::tcp::acceptor>(std::move(*acc));
  auto bound = acceptor_->local_endpoint();
  CRUST_LOG(
      info, "service",
      "listening on tcp " << transport::to_string(bound) << " as " << id_.id().short_string());
  post_event(events::listener_started{"tcp " + transport::to_string(bound)});
  spawn(accept_loop(acceptor_), "accept loop");
  if (cfg_.enable_utp) start_utp(addr);
  if (cfg_.enable_lan_discovery) start_beacon();
  if (cfg_.enable_port_mapping) start_port_mapping(addr);
  start_gossip();
  if (cfg_.port_rotation_interval > duration::zero()) spawn(rotation_loop(), "port rotation");
  co_return bound;
}

// --- the LAN beacon (bootstrap/lan.hpp moves the bytes) ---
void service::impl::start_beacon() {
  beacon_ = std::make_unique<bootstrap::beacon_responder>(ex_, cfg_.service_discovery_port);
  for (const auto& o : beacon_->open()) {
    if (o.ok) {
      post_event(events::listener_started{o.what});
    } else {
      CRUST_LOG(warn, "service", "no LAN beacon: " << o.what << ": " << o.error.message());
      post_event(events::listener_failed{o.what, o.error});
    }
  }
  if (!beacon_->is_open()) return;
  spawn(beacon_->serve([this](byte_span request, const asio::ip::udp::endpoint& from) {
    return answer_beacon(request, from);
  }),
        "beacon");
}

std::optional<bytes> service::impl::answer_beacon(byte_span request,
                                                  const asio::ip::udp::endpoint& from) {
  // Blacklisted, or admitted by no whitelist: no answer.
  if (stopping_ || refuse_address(from.address())) return std::nullopt;
  if (!beacon_limiter_.allow(transport::canonical(from.address()), clock::now()))
    return std::nullopt;
  auto tcp = local_endpoint();
  if (!tcp) return std::nullopt;
  auto eps = bootstrap::advertised_endpoints(*tcp, from.address());
  if (eps.empty()) return std::nullopt;
  // nullopt for another network, malformed, or too small to answer.
  return bootstrap::beacon_answer(request, cfg_.network_name, id_, eps, unix_now());
}

asio::awaitable<std::vector<bootstrap::beacon_contact>> service::impl::discover_lan(
    duration window) {
  bootstrap::beacon_query query(cfg_.network_name);
  auto found = co_await bootstrap::discover_lan(
      query, cfg_.service_discovery_port, window, [this](const bootstrap::beacon_contact& c) {
        return c.key.id != id_.id() && !banned_ids_.contains(c.key.id);
      });
  CRUST_LOG(
      info, "service",
      "LAN discovery: " << found.size() << " peers of \"" << cfg_.network_name << "\" answered");
  co_return found;
}

asio::awaitable<void> service::impl::accept_loop(
    std::shared_ptr<asio::ip::tcp::acceptor> acceptor) {
  for (;;) {
    auto s = co_await transport::tcp_accept(*acceptor);
    if (stopping_ || !acceptor->is_open()) co_return;
    if (!s) {
      if (s.error() == asio::error::operation_aborted) co_return;
      // EMFILE and friends: back off briefly rather than spin.
      CRUST_LOG(warn, "service", "accept failed: " << s.error().message());
      timer t(ex_);
      t.expires_after(milliseconds(50));
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    take_inbound(std::move(*s));
  }
}

// --- port rotation ---
asio::awaitable<result<service::endpoint>> service::impl::rotate_port() {
  if (stopping_) co_return make_error_code(errc::shutting_down);
  const auto old = local_endpoint();
  if (!old) co_return make_error_code(asio::error::not_connected);
  auto self = shared_from_this();
  // A random port from the kernel, on the same address.
  const endpoint at(old->address(), 0);
  auto acc = transport::tcp_listen(ex_, at);
  if (!acc) {
    CRUST_LOG(warn, "service", "port rotation: no new listener: " << acc.error().message());
    post_event(events::listener_failed{transport::to_string(at), acc.error()});
    co_return acc.error();  // the old listener stays
  }
  auto prev = std::exchange(acceptor_, std::make_shared<asio::ip::tcp::acceptor>(std::move(*acc)));
  auto prev_unmap = std::exchange(acceptor_unmap_, nullptr);
  const auto bound = acceptor_->local_endpoint();
  ++rotations_;
  spawn(accept_loop(acceptor_), "accept loop");
  CRUST_LOG(
      info, "service",
      "port rotation " << rotations_ << ": listening on tcp " << transport::to_string(bound) << ", "
                       << transport::to_string(*old) << " closes in "
                       << std::chrono::duration_cast<milliseconds>(cfg_.port_rotation_grace).count()
                       << " ms");
  post_event(events::listener_started{"tcp " + transport::to_string(bound)});
  const auto serial = rotations_;
  retiring_.push_back({serial, std::move(prev), *old, std::move(prev_unmap)});
  while (retiring_.size() > cfg_.port_rotation_max_retiring)
    retire(retiring_.front().serial, "more old ports than port_rotation_max_retiring");
  // Finds nothing to close if the bound above closed it already.
  spawn(retire_after(serial, clock::now() + cfg_.port_rotation_grace), "port retirement");
  if (mapper_) {
    acceptor_unmap_ = map_port(nat::pmp::protocol::tcp, bound.port());
    // The new port's mapping (its first answer) belongs in what we advertise.
    co_await mappings_settled(seconds(5));
    if (stopping_) co_return make_error_code(errc::shutting_down);
  }
  // Advertised at once to every gossip partner (not only this round's
  // fan-out): they are the ones who would otherwise dial the old port.
  if (gossip_) {
    refresh_own_record(true);
    for (const auto& [id, c] : peers_)
      if (gossip_partner(*c)) send_gossip(*c, gossip_->make_push(false));
  }
  co_return bound;
}

asio::awaitable<void> service::impl::rotation_loop() {
  std::mt19937_64 rng{std::random_device{}()};
  const auto every = std::chrono::duration_cast<milliseconds>(cfg_.port_rotation_interval).count();
  // Give or take a fifth, so the schedule is not itself a fingerprint.
  std::uniform_int_distribution<std::int64_t> jitter(-every / 5, every / 5);
  timer t(ex_);
  for (;;) {
    t.expires_after(milliseconds(every + jitter(rng)));
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || stopping_) co_return;
    auto r = co_await rotate_port();
    if (stopping_) co_return;
    (void)r;  // a failure is logged and posted; the next turn tries again
  }
}

asio::awaitable<void> service::impl::retire_after(std::uint64_t serial, time_point when) {
  timer t(ex_, when);
  auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  if (ec || stopping_) co_return;
  retire(serial, "rotated out, grace period over");
}

void service::impl::retire(std::uint64_t serial, const char* why) {
  auto it = std::find_if(retiring_.begin(), retiring_.end(),
                         [&](const retiring_listener& l) { return l.serial == serial; });
  if (it == retiring_.end()) return;  // closed early already
  auto l = std::move(*it);
  retiring_.erase(it);
  error_code ec;
  l.acceptor->close(ec);  // its accept loop ends; accepted connections stay
  if (l.unmap) l.unmap->raise();
  CRUST_LOG(info, "service", "closed tcp " << transport::to_string(l.at) << ": " << why);
  post_event(events::listener_stopped{"tcp " + transport::to_string(l.at), why});
}

std::vector<service::endpoint> service::impl::retiring_endpoints() const {
  std::vector<endpoint> out;
  for (const auto& l : retiring_) out.push_back(l.at);
  return out;
}

// --- µTP: the node's UDP socket and its manager ---
void service::impl::start_utp(const asio::ip::address& addr) {
  const asio::ip::udp::endpoint at(addr, cfg_.udp_port);
  const std::string where = "utp " + transport::to_string({at.address(), at.port()});
  auto mux = transport::udp_mux::open(ex_, at);
  if (!mux) {
    CRUST_LOG(warn, "service", "no µTP: " << where << ": " << mux.error().message());
    post_event(events::listener_failed{where, mux.error()});
    return;
  }
  udp_ = std::move(*mux);
  utp_ = utp::attach(udp_, utp_options());
  utp_->listen(true);
  // STUN shares the socket: every node answers Binding requests (bootstrap
  // nodes are the rendezvous servers), and asks through the same socket,
  // so what it learns is this socket's mapping.
  nat::stun_agent::options so;
  so.serve = cfg_.enable_stun_server;
  so.server.answer_floor = cfg_.stun_answer_floor;
  so.admit = [this](const asio::ip::address& from) { return !banned(from); };
  stun_ = nat::stun_agent::attach(udp_, std::move(so));
  stun_->intercept([this](byte_span d, const asio::ip::udp::endpoint& from) {
    return intercept_punch(d, from);
  });
  auto self = shared_from_this();
  udp_tasks_.spawn(udp_->run(), "udp socket", self);
  udp_tasks_.spawn(utp_->run(), "utp timers", self);
  udp_tasks_.spawn(utp_accept_loop(), "utp accept loop", self);
  const auto bound = udp_->local_endpoint();
  CRUST_LOG(info, "service",
            "listening on "
                << "utp " << transport::to_string({bound.address(), bound.port()}));
  post_event(
      events::listener_started{"utp " + transport::to_string({bound.address(), bound.port()})});
}

asio::awaitable<void> service::impl::utp_accept_loop() {
  for (;;) {
    auto s = co_await utp_->accept();
    if (!s || stopping_) co_return;  // shutting down, or cancelled
    take_inbound(transport::stream(std::move(*s)));
  }
}

// An accepted stream of any transport: refused by address before any
// cryptography, or handed to an inbound handshake.
void service::impl::take_inbound(transport::stream s) {
  if (auto why = refuse_address(s.remote_address())) {
    // Before any cryptography: refusing costs us nothing.
    CRUST_LOG(debug, "service",
              "refused a connection from " << s.remote_description() << ": " << *why);
    s.close();
    return;
  }
  // A source (an address, an IPv6 /64) whose handshakes keep failing has
  // its new connections closed unheard, before any cryptography, until
  // its rate of failures falls back: a flood of forged initiations costs
  // us one accept each, and real peers from other sources still get in.
  // (TCP's handshake has proven the source address: this is what a
  // stateless cookie buys over UDP.)
  if (auto src = limited_source(s); src && handshake_limiter_.exhausted(*src, clock::now())) {
    ++metrics_.handshakes_shed;
    CRUST_LOG(debug, "service",
              "refused a connection from " << s.remote_description()
                                           << ": too many failed handshakes from there");
    s.close();
    return;
  }
  if (live_connections_ + pending_.size() >= cfg_.max_connections) {
    ++metrics_.connections_refused;
    CRUST_LOG(debug, "service",
              "refused a connection from " << s.remote_description() << ": " << cfg_.max_connections
                                           << " connections are open");
    s.close();
    return;
  }
  if (pending_.size() >= cfg_.max_pending_handshakes) evict_pending();
  spawn(inbound(std::move(s)), "inbound handshake");
}

std::optional<asio::ip::address> service::impl::limited_source(const transport::stream& s) const {
  if (cfg_.handshakes_per_source == 0 || s.transport() == transport::kind::relay) return {};
  auto a = s.remote_address();
  if (!a) return {};
  return transport::source_of(*a);
}

void service::impl::failed_from(const std::optional<asio::ip::address>& source) {
  if (source) (void)handshake_limiter_.allow(*source, clock::now());  // spends a token
}

void service::impl::add_pending(std::uint64_t ticket, transport::stream* s) {
  asio::ip::address source;  // unspecified: relayed, or no address
  if (auto a = s->remote_address(); a && s->transport() != transport::kind::relay)
    source = transport::source_of(*a);
  pending_.emplace(ticket, pending_handshake{s, source});
  ++pending_by_source_[source];
}

void service::impl::drop_pending(std::uint64_t ticket) {
  auto it = pending_.find(ticket);
  if (it == pending_.end()) return;  // evicted
  auto n = pending_by_source_.find(it->second.source);
  if (n != pending_by_source_.end() && --n->second == 0) pending_by_source_.erase(n);
  pending_.erase(it);
}

void service::impl::evict_pending() {
  // Full: close a handshake rather than refuse the newest. A real peer
  // finishes within a round trip or two, so stalled sockets (a slowloris)
  // are what gets evicted, and the busiest source's first: one attacker
  // cannot push out another source's peer.
  if (pending_.empty()) return;
  auto busiest = std::max_element(pending_by_source_.begin(), pending_by_source_.end(),
                                  [](const auto& a, const auto& b) { return a.second < b.second; });
  auto victim = std::find_if(pending_.begin(), pending_.end(),
                             [&](const auto& p) { return p.second.source == busiest->first; });
  CRUST_LOG(warn, "service",
            "too many handshakes in progress; closing the oldest from the busiest source, "
                << victim->second.stream->remote_description());
  ++metrics_.handshakes_shed;
  victim->second.stream->close();
  drop_pending(victim->first);
}

// A transport stream to `to`, over TCP or µTP.
asio::awaitable<result<transport::stream>> service::impl::open_stream(endpoint to,
                                                                      transport::kind via) {
  if (via != transport::kind::utp) co_return co_await transport::tcp_dial(to);
  if (!utp_) co_return make_error_code(asio::error::operation_not_supported);
  auto s = co_await utp_->connect({to.address(), to.port()});
  if (!s) co_return s.error();
  co_return transport::stream(std::move(*s));
}

// An accepted stream: the responder's handshake, then run_connection.
// `sorted`: a TCP stream's first bytes were already looked at.
asio::awaitable<void> service::impl::inbound(transport::stream s, bool sorted) {
  const auto ticket = next_ticket_++;
  add_pending(ticket, &s);  // s lives in this frame until it returns
  const auto t0 = clock::now();
  const auto deadline = t0 + cfg_.handshake_timeout;
  std::string from = s.remote_description();
  const auto source = limited_source(s);
  if (!sorted && s.transport() == transport::kind::tcp) {
    auto opening = co_await sort_tcp(s, ticket, deadline);
    if (opening != tcp_opening::noise) {
      drop_pending(ticket);
      if (opening == tcp_opening::failed) failed_from(source);
      co_return;
    }
  }
  auto machine = secure::handshake::responder(id_, cfg_.network_name, cfg_.accept_address_only);
  if (cfg_.address_only_per_second > 0)
    machine.set_address_only_gate([this] {
      if (address_only_limiter_.allow({}, clock::now())) return true;
      ++metrics_.handshakes_shed;
      return false;
    });
  auto op = secure::run_handshake(s, std::move(machine));
  auto hs = co_await with_timeout(std::move(op), time_left(deadline));
  drop_pending(ticket);  // a no-op if it was evicted
  ++(hs ? metrics_.handshakes_ok : metrics_.handshakes_failed);
  if (!hs) {
    failed_from(source);
    CRUST_LOG(info, "service",
              "inbound handshake from " << from << " failed: " << hs.error().message());
    co_return;
  }
  if (stopping_) co_return;
  auto conn =
      std::make_shared<connection>(std::move(s), std::move(*hs), cfg_, *this, clock::now() - t0);
  // The dialler's hello comes next; admit() registers the connection. Its
  // own task, so this frame (the handshake's) is freed while it runs.
  spawn(run_connection(std::move(conn)), "connection");
}

asio::awaitable<void> service::impl::pause(duration d) {
  timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

// --- dialling ---
asio::awaitable<result<peer_info>> service::impl::connect(endpoint to, std::optional<peer_key> key,
                                                          bool for_bootstrap, transport::kind via) {
  if (stopping_) co_return make_error_code(errc::shutting_down);
  if (key && key->id == id_.id()) co_return make_error_code(errc::wrong_peer_key);
  if ((key && banned_ids_.contains(key->id)) || banned(to.address()))
    co_return make_error_code(errc::blacklisted);
  if (key) {
    // A relayed connection does not stop a dial: a direct one replaces it.
    if (auto c = direct_peer(key->id)) co_return c->info();
    if (auto d = dialling_.find({key->id, via, to}); d != dialling_.end()) {
      // Join the dial in flight to the same place: one connection from
      // this end, not two handshakes racing each other.
      auto pending = d->second;
      while (!pending->finished) {
        co_await pending->done.wait();
        const bool cancelled = co_await cancel_requested();
        if (cancelled) co_return make_error_code(errc::cancelled);
      }
      co_return pending->outcome;
    }
  }
  auto self = shared_from_this();
  // Marks the dial in flight; however this coroutine ends, the mark is
  // removed and whoever joined is woken.
  struct mark_guard {
    impl* owner;
    std::optional<dial_key> id;
    std::shared_ptr<dial_in_flight> mark;
    ~mark_guard() {
      if (!mark) return;
      owner->dialling_.erase(*id);
      mark->finished = true;
      mark->done.notify();
    }
  } guard{this, std::nullopt, nullptr};
  if (key) {
    guard.id = dial_key{key->id, via, to};
    guard.mark = std::make_shared<dial_in_flight>(ex_);
    dialling_.emplace(*guard.id, guard.mark);
  }
  auto outcome = co_await dial(to, key, for_bootstrap, via);
  if (guard.mark) guard.mark->outcome = outcome;
  co_return outcome;
}

asio::awaitable<result<peer_info>> service::impl::dial(endpoint to, std::optional<peer_key> key,
                                                       bool for_bootstrap, transport::kind via) {
  const auto started = clock::now();
  auto attempt = open_stream(to, via);
  auto s = co_await with_timeout(std::move(attempt), cfg_.connect_timeout);
  const bool cancelled = co_await cancel_requested();
  if (cancelled) co_return make_error_code(errc::cancelled);
  if (!s) co_return dial_failed(transport::to_string(to), key, s.error());
  auto r = co_await establish(std::move(*s), key, for_bootstrap, transport::to_string(to), started,
                              to, via);
  co_return r;
}

result<peer_info> service::impl::dial_failed(const std::string& where,
                                             const std::optional<peer_key>& key, error_code ec,
                                             std::string detail) {
  std::optional<public_id> who;
  if (key) who = key->id;
  if (key && ec != errc::cancelled && ec != errc::shutting_down && ec != errc::blacklisted &&
      cache_.record_failure(key->id, unix_now()))
    save_cache();
  CRUST_LOG(info, "service",
            "connect to " << where << " failed: " << ec.message()
                          << (detail.empty() ? "" : " - " + detail));
  post_event(events::connect_failure{where, who, ec, std::move(detail)});
  return ec;
}

// The secure part of a dial over an open stream: the Noise handshake,
// hello, admission, registration. `to` is where the stream goes (for
// the cache; none for a relay circuit).
asio::awaitable<result<peer_info>> service::impl::establish(
    transport::stream s, std::optional<peer_key> key, bool for_bootstrap, std::string where,
    time_point started, std::optional<endpoint> to, transport::kind via) {
  auto fail = [&](error_code ec, std::string detail = {}) -> result<peer_info> {
    return dial_failed(where, key, ec, std::move(detail));
  };
  const auto t0 = clock::now();
  auto machine = secure::handshake::initiator(id_, cfg_.network_name, key);
  auto op = secure::run_handshake(s, std::move(machine));
  auto hs = co_await with_timeout(std::move(op), cfg_.handshake_timeout);
  const bool cancelled_in_handshake = co_await cancel_requested();
  if (cancelled_in_handshake) co_return make_error_code(errc::cancelled);
  ++(hs ? metrics_.handshakes_ok : metrics_.handshakes_failed);
  if (!hs) co_return fail(hs.error());
  if (hs->remote.id == id_.id()) co_return fail(make_error_code(errc::wrong_peer_key));
  if (banned_ids_.contains(hs->remote.id)) co_return fail(make_error_code(errc::blacklisted));
  if (stopping_) co_return make_error_code(errc::shutting_down);
  const peer_key remote = hs->remote;
  // The hello commits the peer to this connection: it keeps the newest
  // one we initiate, so a race's slower path that said hello after the
  // winner would replace it there. One hello at a time per peer, then:
  // a later path waits for the earlier one's admission, and yields to the
  // connection that is registered by then.
  while (hello_out_.contains(remote.id) && !stopping_) {
    co_await hello_done_.wait();
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
  }
  if (stopping_) co_return make_error_code(errc::shutting_down);
  if (auto won = direct_peer(remote.id)) {
    CRUST_LOG(debug, "service",
              "handshake with " << remote.id.short_string() << " at " << where
                                << " done, but another path won: closed");
    s.close();
    co_return won->info();
  }
  hello_out_.insert(remote.id);
  struct hello_guard {
    impl* owner;
    public_id id;
    ~hello_guard() {
      owner->hello_out_.erase(id);
      owner->hello_done_.notify();
    }
  } hello_pending{this, remote.id};
  auto conn =
      std::make_shared<connection>(std::move(s), std::move(*hs), cfg_, *this, clock::now() - t0);
  const auto listening = local_endpoint();
  conn->send_hello(cfg_.role, for_bootstrap, listening ? listening->port() : 0);
  spawn(run_connection(conn), "connection");
  auto admission = co_await with_timeout(conn->wait_admitted(), cfg_.handshake_timeout);
  const bool cancelled_in_admission = co_await cancel_requested();
  if (cancelled_in_admission || !admission) conn->abort();
  if (cancelled_in_admission) co_return make_error_code(errc::cancelled);
  if (!admission && admission.error() == errc::duplicate_connection) {
    // The peer kept its own dial to us (the simultaneous-dial rule): that
    // connection is the one, and its hello may still be on its way.
    timer t(ex_);
    t.expires_after(replacement_wait);
    using namespace asio::experimental::awaitable_operators;
    const auto deadline = clock::now() + replacement_wait;
    while (!direct_peer(remote.id) && clock::now() < deadline && !stopping_) {
      co_await (registered_.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
      const bool cancelled = co_await cancel_requested();
      if (cancelled) co_return make_error_code(errc::cancelled);
    }
    if (auto kept = direct_peer(remote.id)) co_return kept->info();
  }
  if (!admission) co_return fail(admission.error(), conn->peer_close_detail());
  if (stopping_) co_return make_error_code(errc::shutting_down);
  conn->set_path(conn->info().path, clock::now() - started);
  auto current = adopt(conn);
  // The cache holds TCP endpoints: a µTP dial's UDP port is not one.
  if (to && via == transport::kind::tcp && !is_contact(*to, remote.id) &&
      cache_.record_success(remote, *to, unix_now()))
    save_cache();
  post_event(events::connect_success{current->info()});
  co_return current->info();
}

// --- bootstrap ---
asio::awaitable<result<peer_info>> service::impl::bootstrap() {
  if (stopping_) co_return make_error_code(errc::shutting_down);
  struct candidate {
    endpoint to;
    std::optional<peer_key> key;
  };
  // Cache (most recent first) and contacts (shuffled), interleaved so that
  // a long stale cache cannot starve the contacts.
  std::vector<candidate> from_cache, from_contacts, all;
  for (const auto& e : cache_.candidates(unix_now())) from_cache.push_back({e.endpoint, e.key});
  for (const auto& c : cfg_.hard_coded_contacts) {
    auto ep = transport::parse_endpoint(c.endpoint);
    if (ep) from_contacts.push_back({*ep, c.key});
  }
  std::shuffle(from_contacts.begin(), from_contacts.end(), std::random_device{});
  std::set<std::string> seen;
  std::size_t skipped = 0;
  for (std::size_t i = 0; i < std::max(from_cache.size(), from_contacts.size()); ++i) {
    for (auto* list : {&from_cache, &from_contacts}) {
      if (i >= list->size()) continue;
      const auto& c = (*list)[i];
      if (!seen.insert(transport::to_string(c.to)).second) continue;
      if (banned(c.to.address()) ||
          (c.key && (banned_ids_.contains(c.key->id) || c.key->id == id_.id()))) {
        ++skipped;
        continue;
      }
      all.push_back(c);
    }
  }
  const bool lan = cfg_.enable_lan_discovery;
  if (all.empty() && !lan) {
    const std::string detail =
        skipped ? std::to_string(skipped) + " candidates skipped as blacklisted" : "";
    post_event(events::bootstrap_failed{make_error_code(errc::no_contacts), 0, detail});
    co_return make_error_code(errc::no_contacts);
  }
  CRUST_LOG(info, "service",
            "bootstrap: " << all.size() << " candidates (" << from_cache.size() << " cached, "
                          << from_contacts.size() << " contacts)");
  auto claim = std::make_shared<bootstrap_claim>();
  for (const auto& [id, conn] : peers_) claim->before.insert(id);
  std::vector<attempt<peer_info>> attempts;
  if (lan) {
    // First in line: listen for LAN answers, then race dials to them.
    attempts.push_back([this, claim]() -> asio::awaitable<result<peer_info>> {
      auto found = co_await discover_lan(cfg_.lan_discovery_window);
      std::vector<attempt<peer_info>> dials;
      for (const auto& c : found) {
        dials.push_back(
            [this, c, claim] { return bootstrap_dial(c.endpoints.front(), c.key, claim); });
      }
      if (dials.empty()) co_return make_error_code(errc::no_contacts);
      auto out =
          co_await first_success(std::move(dials), milliseconds(50), cfg_.bootstrap_concurrency);
      co_return std::move(out.value);
    });
  }
  for (const auto& c : all)
    attempts.push_back([this, c, claim] { return bootstrap_dial(c.to, c.key, claim); });
  const std::size_t attempt_count = attempts.size();
  auto race =
      first_success(std::move(attempts), cfg_.bootstrap_stagger, cfg_.bootstrap_concurrency);
  auto outcome = co_await within(std::move(race), cfg_.bootstrap_timeout);
  const bool cancelled = co_await cancel_requested();
  if (cancelled) co_return make_error_code(errc::cancelled);
  if (!outcome) {
    post_event(events::bootstrap_failed{make_error_code(errc::timed_out), attempt_count,
                                        "deadline passed"});
    co_return make_error_code(errc::timed_out);
  }
  const bool nobody = std::all_of(outcome->errors.begin(), outcome->errors.end(),
                                  [](const error_code& e) { return e == errc::no_contacts; });
  if (!outcome->value && nobody) {
    post_event(events::bootstrap_failed{make_error_code(errc::no_contacts), 0,
                                        "no LAN peer answered and no cache entries or contacts"});
    co_return make_error_code(errc::no_contacts);
  }
  if (!outcome->value) {
    std::map<std::string, int> why;
    for (const auto& e : outcome->errors) ++why[e.message()];
    std::string detail;
    for (const auto& [m, n] : why)
      detail += (detail.empty() ? "" : "; ") + std::to_string(n) + "x " + m;
    post_event(events::bootstrap_failed{outcome->value.error(), attempt_count, detail});
    co_return outcome->value.error();
  }
  CRUST_LOG(
      info, "service",
      "bootstrapped off " << outcome->value->id.short_string() << " at " << outcome->value->remote);
  post_event(events::bootstrap_connect{*outcome->value});
  co_return *outcome->value;
}

// One bootstrap dial. A dial that succeeds after another has won is
// closed, unless that connection existed before the bootstrap began.
asio::awaitable<result<peer_info>> service::impl::bootstrap_dial(
    endpoint to, std::optional<peer_key> key, std::shared_ptr<bootstrap_claim> claim) {
  auto r = co_await connect(to, key, true);
  if (!r) co_return r;
  if (!claim->winner)
    claim->winner = r->id;
  else if (*claim->winner != r->id && !claim->before.contains(r->id))
    disconnect(r->id);
  co_return r;
}

// --- the simultaneous-dial rule ---
// Two connections to one peer:
// - dialled by different ends (a simultaneous dial): both ends keep the one
//   dialled by the larger id, which each computes alike from what it sees;
// - dialled by the same end: the newer wins. That end redialled because it
//   closed the old one (connect() joins a dial already in flight rather
//   than dialling twice), and its close may reach us after the new
//   handshake does.
// The loser is flushed and closed with reason "duplicate", so nothing sent
// on it is lost.
// - a direct connection always replaces a relayed one (and a relayed one
//   never replaces a direct one), whoever dialled, as both ends see the
//   same transports; the new connection delivers nothing until the
//   relayed one has delivered what the peer sent on it before its close.
std::shared_ptr<connection> service::impl::adopt(const std::shared_ptr<connection>& conn) {
  const auto id = conn->info().id;
  auto it = peers_.find(id);
  auto registered = [&] {
    conn->set_registered(clock::now());
    ++metrics_.connections_opened;
    if (conn->info().path == path_kind::relayed) ++metrics_.relayed_connections;
  };
  if (it == peers_.end()) {
    registered();
    peers_.emplace(id, conn);
    unpark(id, *conn);
    registered_.notify();
    gossip_greet(conn);
    return conn;
  }
  auto initiator = [this](const connection& c) {
    return c.initiated_by_us() ? id_.id() : c.info().id;
  };
  const bool new_relayed = conn->info().path == path_kind::relayed;
  const bool old_relayed = it->second->info().path == path_kind::relayed;
  const auto mine = initiator(*conn), theirs = initiator(*it->second);
  const bool replace = new_relayed != old_relayed ? old_relayed : (mine == theirs || mine > theirs);
  if (replace) {
    CRUST_LOG(debug, "service",
              "duplicate connection to " << id.short_string() << ": keeping the new one ("
                                         << to_string(conn->info().path) << ")");
    it->second->close(close_reason::duplicate, "replaced");
    registered();
    conn->deliver_after(it->second);
    it->second = conn;
    unpark(id, *conn);
    registered_.notify();
    return conn;
  }
  CRUST_LOG(debug, "service",
            "duplicate connection to " << id.short_string() << ": keeping the existing one");
  conn->close(close_reason::duplicate, "simultaneous dial");
  return it->second;
}

asio::awaitable<void> service::impl::run_connection(std::shared_ptr<connection> conn) {
  struct counted {  // however this frame ends (a stop destroys it mid-wait)
    std::size_t& n;
    explicit counted(std::size_t& c) : n(c) { ++n; }
    ~counted() { --n; }
    counted(const counted&) = delete;
    counted& operator=(const counted&) = delete;
  };
  std::optional<counted> live(std::in_place, live_connections_);
  auto why = co_await conn->run();
  live.reset();
  add_payload(metrics_, conn->stats());  // what it carried outlives it in the totals
  const auto id = conn->info().id;
  auto it = peers_.find(id);
  if (it == peers_.end() || it->second != conn) co_return;  // replaced or disconnected
  peers_.erase(it);
  if (stopping_) co_return;
  if (why == errc::duplicate_connection) {
    // The peer kept another connection that has not reached us yet: give
    // it a moment before calling the peer lost (sends wait for it).
    awaiting_replacement_.insert(id);
    co_await asio::this_coro::throw_if_cancelled(false);
    timer t(ex_);
    t.expires_after(replacement_wait);
    using namespace asio::experimental::awaitable_operators;
    auto deadline = clock::now() + replacement_wait;
    while (!peers_.contains(id) && clock::now() < deadline && !stopping_) {
      co_await (registered_.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
    }
    if (peers_.contains(id) || stopping_) co_return;
  }
  drop_parked(id);
  relay_->on_peer_gone(id);
  auto detail = conn->peer_close_detail();
  CRUST_LOG(info, "service",
            "lost peer " << id.short_string() << ": " << why.message()
                         << (detail.empty() ? "" : " - " + detail));
  ++metrics_.connections_lost;
  post_event(events::lost_peer{id, why, std::move(detail)});
}

// --- application calls ---
result<void> service::impl::send(const public_id& peer, bytes payload, send_options opts) {
  auto it = peers_.find(peer);
  const bool replaced = it != peers_.end() && it->second->replaced_by_peer();
  if (replaced || (it == peers_.end() && awaiting_replacement_.contains(peer)))
    return park(peer, payload, opts);
  if (it == peers_.end()) return make_error_code(errc::not_connected);
  return it->second->send(std::move(payload), opts.prio, opts.sign);
}

result<void> service::impl::park(const public_id& peer, bytes& payload, send_options opts) {
  if (payload.size() > cfg_.max_message_size) return make_error_code(errc::message_too_large);
  auto& p = parked_[peer];
  if (p.bytes + payload.size() > cfg_.send_queue_bytes)
    return make_error_code(asio::error::no_buffer_space);
  p.bytes += payload.size();
  p.messages.push_back({std::move(payload), opts});
  return {};
}

void service::impl::unpark(const public_id& peer, connection& onto) {
  awaiting_replacement_.erase(peer);
  auto it = parked_.find(peer);
  if (it == parked_.end()) return;
  auto p = std::move(it->second);
  parked_.erase(it);
  std::size_t refused = 0;
  std::uint64_t refused_bytes = 0;
  for (auto& m : p.messages) {
    const auto n = m.payload.size();
    if (!onto.send(std::move(m.payload), m.opts.prio, m.opts.sign)) {
      ++refused;
      refused_bytes += n;
    }
  }
  if (refused > 0) post_event(events::messages_dropped{peer, refused, refused_bytes, priority{}});
}

void service::impl::drop_parked(const public_id& peer) {
  awaiting_replacement_.erase(peer);
  auto it = parked_.find(peer);
  if (it == parked_.end()) return;
  const auto count = it->second.messages.size();
  const auto bytes = it->second.bytes;
  parked_.erase(it);
  CRUST_LOG(info, "service",
            "dropped " << count << " messages to " << peer.short_string()
                       << ": the connection that replaced ours never came");
  post_event(events::messages_dropped{peer, count, bytes, priority{}});
}

asio::awaitable<result<void>> service::impl::flush(const public_id& peer) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) co_return make_error_code(errc::not_connected);
  auto conn = it->second;
  co_return co_await conn->flush();
}

void service::impl::disconnect(const public_id& peer) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return;
  auto conn = it->second;
  peers_.erase(it);
  drop_parked(peer);
  conn->close(close_reason::normal, "disconnect");
  relay_->on_peer_gone(peer);
}

// --- admission ---
void service::impl::blacklist(const blacklist_entries& e) {
  for (const auto& id : e.peers) banned_ids_.insert(id);
  for (const auto& a : e.addresses) banned_ips_.insert(transport::canonical(a));
  std::vector<public_id> uncache = e.peers;
  for (const auto& x : cache_.entries())
    if (banned(x.endpoint.address())) uncache.push_back(x.key.id);
  bool cache_changed = false;
  for (const auto& id : uncache) cache_changed |= cache_.remove(id);
  if (cache_changed) save_cache();
  close_where(
      [&](const connection& c) {
        return banned_ids_.contains(c.info().id) || banned(c.remote_ip());
      },
      "blacklisted", false);
  for (auto& [ticket, p] : pending_)
    if (banned(p.stream->remote_address())) p.stream->close();
}

void service::impl::unblacklist(const blacklist_entries& e) {
  for (const auto& id : e.peers) banned_ids_.erase(id);
  for (const auto& a : e.addresses) banned_ips_.erase(transport::canonical(a));
}

std::vector<std::string> service::impl::reload(const config& next) {
  std::vector<std::string> restart;
  for (auto& key : cfg_.changed_keys(next)) {
    if (!live_keys.contains(key)) restart.push_back(std::move(key));
  }
  cfg_.whitelisted_node_ips = next.whitelisted_node_ips;
  cfg_.whitelisted_client_ips = next.whitelisted_client_ips;
  cfg_.accept_bootstrap = next.accept_bootstrap;
  cfg_.hard_coded_contacts = next.hard_coded_contacts;
  cfg_.bootstrap_timeout = next.bootstrap_timeout;
  cfg_.bootstrap_concurrency = next.bootstrap_concurrency;
  cfg_.bootstrap_stagger = next.bootstrap_stagger;
  cfg_.bootstrap_cache_size = next.bootstrap_cache_size;
  cfg_.bootstrap_cache_per_group = next.bootstrap_cache_per_group;
  cfg_.bootstrap_cache_per_source = next.bootstrap_cache_per_source;
  cfg_.bootstrap_cache_ttl = next.bootstrap_cache_ttl;
  cfg_.lan_discovery_window = next.lan_discovery_window;
  cfg_.external_reachability_check = next.external_reachability_check;
  cfg_.enable_stun_server = next.enable_stun_server;
  if (stun_) stun_->serve(cfg_.enable_stun_server);
  cfg_.enable_relay = next.enable_relay;
  cfg_.relay_max_circuits = next.relay_max_circuits;
  cfg_.relay_circuits_per_peer = next.relay_circuits_per_peer;
  cfg_.relay_circuit_bytes = next.relay_circuit_bytes;
  relay_->reconfigure(cfg_);
  cache_.set_limits(cache_limits_of(cfg_));
  drop_contacts_from_cache();
  // Inbound peers the whitelists no longer allow.
  close_where(
      [&](const connection& c) {
        if (!c.info().inbound) return false;
        const auto& list = c.info().role == node_role::client ? cfg_.whitelisted_client_ips
                                                              : cfg_.whitelisted_node_ips;
        return !listed(list, c.remote_ip());
      },
      "no longer whitelisted", true);
  for (const auto& key : restart)
    CRUST_LOG(warn, "service", "config key \"" << key << "\" changed; it applies after a restart");
  return restart;
}

asio::awaitable<void> service::impl::watch_config(std::filesystem::path path, duration interval) {
  auto stamp = [&]() -> std::optional<std::pair<std::filesystem::file_time_type, std::uintmax_t>> {
    std::error_code ec;
    auto t = std::filesystem::last_write_time(path, ec);
    if (ec) return std::nullopt;
    auto n = std::filesystem::file_size(path, ec);
    if (ec) return std::nullopt;
    return std::pair{t, n};
  };
  auto last = stamp();
  timer t(ex_);
  while (!stopping_) {
    t.expires_after(interval);
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || stopping_) co_return;
    auto now = stamp();
    if (now == last) continue;
    last = now;
    auto next = config::load(path);
    if (!next) {
      CRUST_LOG(warn, "service",
                "config change ignored, the running config stays: " << next.error().message);
      continue;
    }
    CRUST_LOG(info, "service", "config reloaded from " << path.string());
    reload(*next);
  }
}

asio::awaitable<result<event>> service::impl::next_event() {
  while (events_.empty()) {
    if (stopping_) co_return make_error_code(errc::shutting_down);
    co_await event_ready_.wait();
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
  }
  event ev = std::move(events_.front());
  events_.pop_front();
  if (auto* m = std::get_if<events::new_message>(&ev)) {
    --queued_messages_;
    queued_message_bytes_ -= m->payload.size();
    event_space_.notify();
  } else {
    --queued_other_events_;
  }
  co_return ev;
}

asio::awaitable<void> service::impl::stop(duration grace) {
  if (stopping_) {
    co_await tasks_.wait_all();
    co_return;
  }
  auto self = shared_from_this();
  begin_stop();
  co_await relay_->stop();
  for (auto& [id, conn] : peers_) conn->close(close_reason::shutdown, "service stopping");
  using namespace asio::experimental::awaitable_operators;
  timer t(ex_);
  t.expires_after(grace);
  co_await (tasks_.wait_all() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
  for (auto& [id, conn] : peers_) conn->abort();
  tasks_.cancel_all();
  co_await tasks_.wait_all();
  co_await mapping_tasks_.wait_all();
  if (mapper_) co_await mapper_->release_all(grace);
  // The UDP side last: closing µTP connections needed it running.
  stop_udp();
  co_await udp_tasks_.wait_all();
  peers_.clear();
  events_.clear();
  queued_messages_ = queued_message_bytes_ = queued_other_events_ = 0;
}

void service::impl::stop_udp() {
  if (stun_) stun_->close();
  if (utp_) utp_->shutdown();
  if (udp_) udp_->close();
  udp_tasks_.cancel_all();
}

// Immediate teardown, for a service destroyed without stop().
void service::impl::stop_now() {
  if (!stopping_) begin_stop();
  relay_->stop_now();
  for (auto& [id, conn] : peers_) conn->abort();
  peers_.clear();
  tasks_.cancel_all();
  stop_udp();
}

std::vector<peer_info> service::impl::peers() const {
  std::vector<peer_info> out;
  for (const auto& [id, conn] : peers_) out.push_back(conn->info());
  return out;
}

node_status service::impl::status() const {
  node_status s;
  s.id = id_.id();
  s.key = id_.public_key();
  s.network = cfg_.network_name;
  s.version = crust::version;
  s.protocol_version = wire_protocol_version;
  const auto now = clock::now();
  s.uptime = now - created_;
  s.tcp = local_endpoint();
  s.retiring_tcp = retiring_endpoints();
  s.port_rotations = rotations_;
  s.udp = local_udp_endpoint();
  s.nat = last_nat_;
  s.port_mappings = port_mappings();
  s.metrics = metrics_;  // payload totals of the connections that have ended
  s.queued_messages = queued_messages_;
  s.queued_message_bytes = queued_message_bytes_;
  s.queued_other_events = queued_other_events_;
  auto& m = s.metrics;
  for (const auto& [id, conn] : peers_) {
    peer_status p{conn->info(), conn->stats(), now - conn->registered_at()};
    add_payload(m, p.stats);
    s.peers.push_back(std::move(p));
  }
  const auto& r = relay_->relay_stats();
  m.relay_circuits = r.circuits_opened;
  m.relay_bytes = r.bytes_relayed;
  m.relay_introductions = r.introductions;
  return s;
}

std::optional<peer_stats> service::impl::stats(const public_id& peer) const {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return std::nullopt;
  return it->second->stats();
}

std::optional<service::endpoint> service::impl::local_endpoint() const {
  if (!acceptor_ || !acceptor_->is_open()) return std::nullopt;
  error_code ec;
  auto ep = acceptor_->local_endpoint(ec);
  if (ec) return std::nullopt;
  return ep;
}

std::optional<service::endpoint> service::impl::local_udp_endpoint() const {
  if (!udp_) return std::nullopt;
  const auto ep = udp_->local_endpoint();
  return endpoint(ep.address(), ep.port());
}

// Why a connection from `ip` is refused before the handshake, if it is.
std::optional<std::string> service::impl::refuse_address(
    const std::optional<asio::ip::address>& ip) const {
  if (banned(ip)) return "blacklisted";
  if (cfg_.whitelisted_node_ips && cfg_.whitelisted_client_ips &&
      !listed(cfg_.whitelisted_node_ips, ip) && !listed(cfg_.whitelisted_client_ips, ip))
    return "not whitelisted";
  return std::nullopt;
}

bool service::impl::is_contact(const endpoint& to, const public_id& id) const {
  for (const auto& c : cfg_.hard_coded_contacts) {
    if (c.key && c.key->id == id) return true;
    auto ep = transport::parse_endpoint(c.endpoint);
    if (ep && *ep == to) return true;
  }
  return false;
}

void service::impl::drop_contacts_from_cache() {
  std::vector<public_id> drop;
  for (const auto& e : cache_.entries())
    if (is_contact(e.endpoint, e.key.id)) drop.push_back(e.key.id);
  for (const auto& id : drop) cache_.remove(id);
}

void service::impl::load_cache() {
  if (cfg_.bootstrap_cache_path.empty()) return;
  const std::filesystem::path path = cfg_.bootstrap_cache_path;
  auto report = cache_.load(path, cfg_.network_name);
  drop_contacts_from_cache();
  if (report.problem.empty()) {
    CRUST_LOG(info, "service",
              "bootstrap cache " << path.string() << ": " << report.loaded << " peers");
    return;
  }
  CRUST_LOG(warn, "service",
            "bootstrap cache " << path.string() << ": " << report.problem << "; " << report.loaded
                               << " peers kept");
  // Keep what we could not read for the user, then write a clean file.
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    auto bad = path;
    bad += ".bad";
    std::filesystem::copy_file(path, bad, std::filesystem::copy_options::overwrite_existing, ec);
  }
  save_cache();
}

void service::impl::save_cache() {
  if (cfg_.bootstrap_cache_path.empty()) return;
  if (auto r = cache_.save(cfg_.bootstrap_cache_path, cfg_.network_name); !r)
    CRUST_LOG(warn, "service",
              "cannot write the bootstrap cache " << cfg_.bootstrap_cache_path << ": "
                                                  << r.error().message());
}

void service::impl::begin_stop() {
  stopping_ = true;
  if (acceptor_) {
    error_code ec;
    acceptor_->close(ec);
  }
  for (auto& l : retiring_) {
    error_code ec;
    l.acceptor->close(ec);
  }
  if (beacon_) beacon_->close();
  if (utp_) utp_->listen(false);
  // Renewals stop; stop() then deletes the mappings on the gateway (a
  // service destroyed without stop() leaves them to expire).
  mapping_tasks_.cancel_all();
  for (auto& [query, f] : finds_) f->done.notify();
  event_ready_.notify();
  event_space_.notify();
  hello_done_.notify();
}

service::service(asio::any_io_executor ex, config cfg, identity id)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(cfg), std::move(id))) {}

service::~service() {
  if (impl_) impl_->stop_now();
}

service::service(service&&) noexcept = default;
service& service::operator=(service&& other) noexcept {
  if (this != &other) {
    if (impl_) impl_->stop_now();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

asio::awaitable<result<service::endpoint>> service::start() {
  return impl_->start();
}
asio::awaitable<void> service::stop(duration grace) {
  return impl_->stop(grace);
}
asio::awaitable<result<peer_info>> service::connect(endpoint to, peer_key key) {
  return impl_->connect(to, key);
}
asio::awaitable<result<peer_info>> service::connect(endpoint to) {
  return impl_->connect(to, std::nullopt);
}
asio::awaitable<result<peer_info>> service::connect(endpoint to, std::optional<peer_key> key,
                                                    transport::kind via) {
  return impl_->connect(to, key, false, via);
}
asio::awaitable<result<peer_info>> service::connect(const nat::private_connection_info& mine,
                                                    const nat::connection_info& theirs,
                                                    rendezvous_options o) {
  return impl_->rendezvous(mine, theirs, std::move(o));
}
asio::awaitable<result<peer_info>> service::bootstrap() {
  return impl_->bootstrap();
}
asio::awaitable<std::vector<bootstrap::beacon_contact>> service::discover_lan(duration window) {
  return impl_->discover_lan(window);
}
void service::blacklist(const blacklist_entries& entries) {
  impl_->blacklist(entries);
}
void service::unblacklist(const blacklist_entries& entries) {
  impl_->unblacklist(entries);
}
bool service::is_blacklisted(const public_id& peer) const {
  return impl_->is_blacklisted(peer);
}
bool service::is_blacklisted(const boost::asio::ip::address& a) const {
  return impl_->banned(a);
}
void service::set_accept_bootstrap(bool accept) {
  impl_->set_accept_bootstrap(accept);
}
std::vector<std::string> service::reload(const config& next) {
  return impl_->reload(next);
}
void service::watch_config_file(std::filesystem::path path, duration interval) {
  impl_->watch_config_file(std::move(path), interval);
}
std::vector<bootstrap::cache_entry> service::cached_peers() const {
  return impl_->cached_peers();
}
std::vector<bootstrap::gossip_entry> service::known_peers() const {
  return impl_->known_peers();
}
std::vector<bootstrap::contact_record> service::sample_peers(std::size_t count) {
  return impl_->sample_peers(count);
}
asio::awaitable<result<std::vector<bootstrap::contact_record>>> service::find_peers_near(
    public_id target, std::size_t count) {
  return impl_->find_peers_near(target, count);
}
asio::awaitable<result<peer_info>> service::connect(public_id target) {
  return impl_->connect_to(target);
}
asio::awaitable<result<service::endpoint>> service::rotate_port() {
  return impl_->rotate_port();
}
result<void> service::send(const public_id& peer, bytes payload, send_options opts) {
  return impl_->send(peer, std::move(payload), opts);
}
asio::awaitable<result<void>> service::flush(const public_id& peer) {
  return impl_->flush(peer);
}
void service::disconnect(const public_id& peer) {
  impl_->disconnect(peer);
}
asio::awaitable<result<event>> service::next_event() {
  return impl_->next_event();
}
std::vector<peer_info> service::peers() const {
  return impl_->peers();
}
std::optional<peer_stats> service::stats(const public_id& peer) const {
  return impl_->stats(peer);
}
std::optional<service::endpoint> service::local_endpoint() const {
  return impl_->local_endpoint();
}
std::optional<service::endpoint> service::local_udp_endpoint() const {
  return impl_->local_udp_endpoint();
}
std::vector<nat::port_mapping> service::port_mappings() const {
  return impl_->port_mappings();
}
node_status service::status() const {
  return impl_->status();
}
service::watcher service::watch() const {
  watcher w;
  w.impl_ = impl_;
  return w;
}
std::optional<node_status> service::watcher::status() const {
  if (auto i = impl_.lock()) return i->status();
  return std::nullopt;
}
void service::set_blocking_pool(asio::thread_pool& pool) {
  impl_->set_blocking_pool(pool);
}

asio::awaitable<result<peer_info>> service::connect_through(public_id via, public_id target,
                                                            introduction_options o) {
  return impl_->connect_through(via, target, std::move(o));
}

asio::awaitable<nat::nat_report> service::discover_nat(nat::discover_options o) {
  return impl_->discover_nat(std::move(o));
}
asio::awaitable<result<nat::binding_result>> service::reflexive_address(
    asio::ip::udp::endpoint server, nat::stun::retransmission r) {
  return impl_->reflexive_address(server, r);
}
asio::awaitable<result<nat::private_connection_info>> service::prepare_connection_info(
    prepare_options o) {
  return impl_->prepare_connection_info(std::move(o));
}
const identity& service::id() const {
  return impl_->id();
}
const config& service::cfg() const {
  return impl_->cfg();
}

}  // namespace crust
