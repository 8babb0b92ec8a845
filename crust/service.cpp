#include "crust/service.hpp"

#include "bootstrap/beacon.hpp"
#include "bootstrap/lan.hpp"

#include "crust/base/log.hpp"
#include "crust/base/notifier.hpp"
#include "crust/base/race.hpp"
#include "crust/base/task_group.hpp"
#include "crust/detail/connection.hpp"
#include "crust/detail/relay_agent.hpp"
#include "nat/port_mapper.hpp"
#include "nat/stun_agent.hpp"
#include "nat/tcp_stun.hpp"
#include "transports/stream_io.hpp"
#include "transports/tcp.hpp"
#include "transports/udp.hpp"
#include "transports/utp/manager.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/udp.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <random>
#include <set>

namespace crust {

namespace asio = boost::asio;
using detail::connection;
using transport::read_exact;
using transport::write_all;

namespace {
constexpr auto replacement_wait = seconds(2);

// Cache entries outlive the process, so they carry wall-clock time.
std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bootstrap::cache_limits cache_limits_of(const config& c) {
  bootstrap::cache_limits l;
  l.capacity = c.bootstrap_cache_size;
  l.per_group = c.bootstrap_cache_per_group;
  l.per_source = c.bootstrap_cache_per_source;
  l.ttl_seconds = std::chrono::duration_cast<std::chrono::seconds>(c.bootstrap_cache_ttl).count();
  return l;
}

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

}  // namespace

class service::impl final : public detail::connection_owner,
                            public detail::relay_host,
                            public std::enable_shared_from_this<service::impl> {
 public:
  impl(asio::any_io_executor ex, config cfg, identity id)
      : ex_(std::move(ex)),
        cfg_(std::move(cfg)),
        id_(std::move(id)),
        tasks_(ex_),
        udp_tasks_(ex_),
        mapping_tasks_(ex_),
        mapping_settled_(ex_),
        event_ready_(ex_),
        event_space_(ex_),
        registered_(ex_),
        cache_(cache_limits_of(cfg_)),
        relay_(std::make_unique<detail::relay_agent>(ex_, *this, cfg_, id_.id())) {}

  // --- connection_owner ---
  asio::awaitable<void> deliver(event ev, bool is_message) override {
    while (is_message && queued_messages_ >= cfg_.event_queue_messages && !stopping_) {
      co_await event_space_.wait();
      const bool cancelled = co_await cancel_requested();
      if (cancelled) co_return;
    }
    if (stopping_) co_return;
    if (is_message) ++queued_messages_;
    events_.push_back(std::move(ev));
    event_ready_.notify();
  }
  void post_event(event ev) override {
    if (stopping_) return;
    events_.push_back(std::move(ev));
    event_ready_.notify();
  }
  const identity& me() const override { return id_; }
  std::uint16_t udp_port() const override { return udp_ ? udp_->local_endpoint().port() : 0; }

  asio::awaitable<std::optional<std::string>> admit(const std::shared_ptr<connection>& conn,
                                                    const secure::incoming_hello& hello) override {
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
  std::optional<std::string> admission_refusal(const connection& conn,
                                               const secure::incoming_hello& hello) const {
    if (stopping_) return "service stopping";
    if (banned_ids_.contains(conn.info().id) || banned(conn.remote_ip())) return "blacklisted";
    const auto& list =
        hello.role == node_role::client ? cfg_.whitelisted_client_ips : cfg_.whitelisted_node_ips;
    if (!listed(list, conn.remote_ip()))
      return std::string("not whitelisted as a ") + to_string(hello.role);
    if (hello.bootstrap && !cfg_.accept_bootstrap) return "not accepting bootstrap connections";
    return std::nullopt;
  }

  void on_relay(const std::shared_ptr<connection>& conn, bytes body) override {
    // Only the registered connection speaks for its peer.
    auto it = peers_.find(conn->info().id);
    if (it == peers_.end() || it->second != conn || stopping_) return;
    relay_->on_record(conn->info().id, body);
  }

  // --- relay_host (crust/detail/relay_agent.hpp) ---
  bool send_relay(const public_id& to, bytes record) override {
    auto it = peers_.find(to);
    return it != peers_.end() && it->second->send_control(std::move(record));
  }
  std::optional<peer_info> peer(const public_id& id, bool direct_only) const override {
    auto it = peers_.find(id);
    if (it == peers_.end()) return std::nullopt;
    if (direct_only && it->second->info().path == path_kind::relayed) return std::nullopt;
    return it->second->info();
  }
  void accept_relayed(transport::stream s) override {
    if (stopping_) return;
    take_inbound(std::move(s));
  }
  asio::awaitable<result<peer_info>> dial_relayed(transport::stream s, std::optional<peer_key> key,
                                                  public_id via) override {
    auto self = shared_from_this();
    auto r = co_await establish(std::move(s), key, false, "relay via " + via.short_string(),
                                clock::now(), std::nullopt, transport::kind::relay);
    co_return r;
  }
  asio::awaitable<result<nat::private_connection_info>> prepare_info() override {
    auto self = shared_from_this();
    auto r = co_await prepare_connection_info(prepare_options{});
    co_return r;
  }
  std::optional<peer_info> set_connect_time(const public_id& id, duration took) override {
    auto it = peers_.find(id);
    if (it == peers_.end()) return std::nullopt;
    it->second->set_path(it->second->info().path, took);
    return it->second->info();
  }
  bool refused(const public_id& id) const override { return banned_ids_.contains(id); }
  bool stopping() const override { return stopping_; }
  std::shared_ptr<void> keep_alive() override { return shared_from_this(); }

  // The registered connection to `id` unless it is relayed.
  std::shared_ptr<connection> direct_peer(const public_id& id) const {
    auto it = peers_.find(id);
    if (it == peers_.end() || it->second->info().path == path_kind::relayed) return nullptr;
    return it->second;
  }

  asio::awaitable<result<peer_info>> connect_through(public_id via, public_id target,
                                                     introduction_options o) {
    auto self = shared_from_this();
    if (stopping_) co_return make_error_code(errc::shutting_down);
    auto r = co_await relay_->connect_through(via, target, std::move(o));
    co_return r;
  }

  // The external-reachability check: a TCP connect to where the peer says
  // it listens, and a Noise XK handshake that only the holder of `key`
  // completes; then the socket is closed (the peer sees a handshake with no
  // hello, which it never announces). Within half the handshake timeout, so
  // the answer reaches the dialler before its own admission deadline.
  // Returns nullopt when it worked, else what went wrong, for the refusal.
  asio::awaitable<std::optional<std::string>> dial_back(const std::optional<asio::ip::address>& ip,
                                                        std::uint16_t port, peer_key key) {
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
  asio::awaitable<result<endpoint>> start() {
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
    acceptor_.emplace(std::move(*acc));
    auto bound = acceptor_->local_endpoint();
    CRUST_LOG(
        info, "service",
        "listening on tcp " << transport::to_string(bound) << " as " << id_.id().short_string());
    post_event(events::listener_started{"tcp " + transport::to_string(bound)});
    spawn(accept_loop(), "accept loop");
    if (cfg_.enable_utp) start_utp(addr);
    if (cfg_.enable_lan_discovery) start_beacon();
    if (cfg_.enable_port_mapping) start_port_mapping(addr);
    co_return bound;
  }

  // --- port mapping on the gateway (nat/port_mapper.hpp) ---
  // The TCP listener's and the UDP socket's ports, each kept mapped in the
  // background (renewed at half the lease, asked for again when lost) and
  // removed by stop(). A node on loopback has nothing to map.
  void start_port_mapping(const asio::ip::address& bound) {
    if (bound.is_loopback()) return;
    nat::mapping_options o;
    o.gateway = cfg_.port_mapping_gateway;
    o.methods.clear();
    for (const auto& m : cfg_.port_mapping_methods)
      if (auto method = nat::parse_mapping_method(m)) o.methods.push_back(*method);
    o.lifetime = static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::seconds>(cfg_.port_mapping_lifetime).count());
    if (o.methods.empty()) return;
    mapper_ = nat::port_mapper::create(ex_, std::move(o));
    const auto internal =
        bound.is_unspecified() ? asio::ip::address() : transport::canonical(bound);
    std::vector<nat::mapping_request> wanted;
    if (auto tcp = local_endpoint())
      wanted.push_back({nat::pmp::protocol::tcp, internal, tcp->port(), 0});
    if (auto udp = local_udp_endpoint())
      wanted.push_back({nat::pmp::protocol::udp, internal, udp->port(), 0});
    auto self = shared_from_this();
    for (const auto& r : wanted) {
      ++mappings_unsettled_;
      mapping_tasks_.spawn(keep_mapped(r), "port mapping", self);
    }
  }

  asio::awaitable<void> keep_mapped(nat::mapping_request r) {
    auto mapper = mapper_;
    bool settled = false;
    auto settle = [&] {
      if (settled) return;
      settled = true;
      --mappings_unsettled_;
      mapping_settled_.notify();
    };
    co_await mapper->maintain(r, [&](const nat::mapping_change& c) {
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
    });
    settle();
  }

  // Waits (at most `bound`) until every port mapping has had its first
  // answer, so a connection info made at start-up has its mapped candidates.
  asio::awaitable<void> mappings_settled(duration bound) {
    using namespace asio::experimental::awaitable_operators;
    timer t(ex_, clock::now() + bound);
    while (mappings_unsettled_ > 0 && clock::now() < t.expiry() && !stopping_) {
      co_await (mapping_settled_.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
      const bool cancelled = co_await cancel_requested();
      if (cancelled) co_return;
    }
  }

  std::vector<nat::port_mapping> port_mappings() const {
    return mapper_ ? mapper_->active() : std::vector<nat::port_mapping>{};
  }

  // --- the LAN beacon (bootstrap/lan.hpp moves the bytes) ---
  void start_beacon() {
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

  std::optional<bytes> answer_beacon(byte_span request, const asio::ip::udp::endpoint& from) {
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

  asio::awaitable<std::vector<bootstrap::beacon_contact>> discover_lan(duration window) {
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

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto s = co_await transport::tcp_accept(*acceptor_);
      if (stopping_ || !acceptor_ || !acceptor_->is_open()) co_return;
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

  // --- µTP: the node's UDP socket and its manager ---
  void start_utp(const asio::ip::address& addr) {
    const asio::ip::udp::endpoint at(addr, cfg_.udp_port);
    const std::string where = "utp " + transport::to_string({at.address(), at.port()});
    auto mux = transport::udp_mux::open(ex_, at);
    if (!mux) {
      CRUST_LOG(warn, "service", "no µTP: " << where << ": " << mux.error().message());
      post_event(events::listener_failed{where, mux.error()});
      return;
    }
    udp_ = std::move(*mux);
    utp_ = utp::attach(udp_);
    utp_->listen(true);
    // STUN shares the socket: every node answers Binding requests (bootstrap
    // nodes are the rendezvous servers), and asks through the same socket,
    // so what it learns is this socket's mapping.
    nat::stun_agent::options so;
    so.serve = cfg_.enable_stun_server;
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

  asio::awaitable<void> utp_accept_loop() {
    for (;;) {
      auto s = co_await utp_->accept();
      if (!s || stopping_) co_return;  // shutting down, or cancelled
      take_inbound(transport::stream(std::move(*s)));
    }
  }

  // An accepted stream of any transport: refused by address before any
  // cryptography, or handed to an inbound handshake.
  void take_inbound(transport::stream s) {
    if (auto why = refuse_address(s.remote_address())) {
      // Before any cryptography: refusing costs us nothing.
      CRUST_LOG(debug, "service",
                "refused a connection from " << s.remote_description() << ": " << *why);
      s.close();
      return;
    }
    if (pending_.size() >= cfg_.max_pending_handshakes) {
      // Full: close the oldest handshake rather than refuse the newest. A
      // real peer finishes within a round trip or two, so stalled sockets
      // (a slowloris) are what gets evicted, and new peers still get in.
      auto oldest = pending_.begin();
      CRUST_LOG(warn, "service",
                "too many handshakes in progress; closing the oldest, from "
                    << oldest->second->remote_description());
      oldest->second->close();
      pending_.erase(oldest);
    }
    spawn(inbound(std::move(s)), "inbound handshake");
  }

  // A transport stream to `to`, over TCP or µTP.
  asio::awaitable<result<transport::stream>> open_stream(endpoint to, transport::kind via) {
    if (via != transport::kind::utp) co_return co_await transport::tcp_dial(to);
    if (!utp_) co_return make_error_code(asio::error::operation_not_supported);
    auto s = co_await utp_->connect({to.address(), to.port()});
    if (!s) co_return s.error();
    co_return transport::stream(std::move(*s));
  }

  // An accepted stream: the responder's handshake, then run_connection.
  // `sorted`: a TCP stream's first bytes were already looked at.
  asio::awaitable<void> inbound(transport::stream s, bool sorted = false) {
    const auto ticket = next_ticket_++;
    pending_.emplace(ticket, &s);  // s lives in this frame until it returns
    const auto t0 = clock::now();
    const auto deadline = t0 + cfg_.handshake_timeout;
    std::string from = s.remote_description();
    if (!sorted && s.transport() == transport::kind::tcp) {
      auto opening = co_await sort_tcp(s, ticket, deadline);
      if (opening != tcp_opening::noise) {
        pending_.erase(ticket);
        co_return;
      }
    }
    auto machine = secure::handshake::responder(id_, cfg_.network_name, cfg_.accept_address_only);
    auto op = secure::run_handshake(s, std::move(machine));
    auto hs = co_await with_timeout(std::move(op), time_left(deadline));
    pending_.erase(ticket);  // a no-op if it was evicted
    if (!hs) {
      CRUST_LOG(info, "service",
                "inbound handshake from " << from << " failed: " << hs.error().message());
      co_return;
    }
    if (stopping_) co_return;
    auto conn =
        std::make_shared<connection>(std::move(s), std::move(*hs), cfg_, *this, clock::now() - t0);
    // The dialler's hello comes next; admit() registers the connection.
    co_await run_connection(conn);
  }

  static duration time_left(time_point deadline) {
    return std::max(deadline - clock::now(), duration::zero());
  }

  // --- what an accepted TCP connection starts with ---
  // Its first 20 bytes: a STUN Binding request over TCP (nat/tcp_stun.hpp:
  // answered, then closed), the preamble of a TCP simultaneous open (sorted
  // out by ids, below), or a Noise handshake (the bytes go back for it).
  enum class tcp_opening { noise, handled, failed };
  asio::awaitable<tcp_opening> sort_tcp(transport::stream& s, std::uint64_t ticket,
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
      const auto ours = so_preamble();
      auto sent = co_await with_timeout(write_all(s, ours), time_left(deadline));
      if (!sent) co_return tcp_opening::failed;
      if (!we_control(them))
        co_return tcp_opening::noise;  // preamble consumed: the handshake follows
      // We run the initiator: with the key if a rendezvous knows it.
      pending_.erase(ticket);
      std::optional<peer_key> key;
      if (auto it = rendezvous_keys_.find(them); it != rendezvous_keys_.end()) key = it->second;
      spawn(initiate_on(std::move(s), key), "simultaneous open");
      co_return tcp_opening::handled;
    }
    s.unread(std::move(head));
    co_return tcp_opening::noise;
  }

  asio::awaitable<void> initiate_on(transport::stream s, std::optional<peer_key> key) {
    const std::string where = s.remote_description();
    auto r = co_await establish(std::move(s), key, false, where, clock::now(), std::nullopt,
                                transport::kind::tcp);
    (void)r;  // reported by establish (events and the log)
  }

  // TCP simultaneous open's preamble: "CRUSTSO1" and the sender's id, from
  // both ends (a tie-break only: the handshake that follows authenticates).
  // The larger id runs the Noise initiator.
  static constexpr std::string_view so_magic = "CRUSTSO1";
  static constexpr std::size_t so_preamble_size = 8 + 32;
  bytes so_preamble() const {
    // Sized first: GCC 12 warns falsely (-Warray-bounds) on growing a small vector.
    bytes b(so_preamble_size);
    std::copy(so_magic.begin(), so_magic.end(), b.begin());
    const auto me = id_.id();  // by value: one copy for both iterators
    std::copy(me.key.begin(), me.key.end(), b.begin() + so_magic.size());
    return b;
  }
  bool we_control(const public_id& them) const {
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
  asio::awaitable<result<peer_info>> simultaneous_open(endpoint to, peer_key key, duration limit) {
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
      auto s = co_await with_timeout(std::move(dial),
                                     std::min(time_left(deadline), duration(seconds(1))));
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

  static asio::awaitable<void> pause(duration d) {
    timer t(co_await asio::this_coro::executor);
    t.expires_after(d);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }

  // --- dialling ---
  asio::awaitable<result<peer_info>> connect(endpoint to, std::optional<peer_key> key,
                                             bool for_bootstrap = false,
                                             transport::kind via = transport::kind::tcp) {
    if (stopping_) co_return make_error_code(errc::shutting_down);
    if (key && key->id == id_.id()) co_return make_error_code(errc::wrong_peer_key);
    if ((key && banned_ids_.contains(key->id)) || banned(to.address()))
      co_return make_error_code(errc::blacklisted);
    if (key) {
      // A relayed connection does not stop a dial: a direct one replaces it.
      if (auto c = direct_peer(key->id)) co_return c->info();
      if (auto d = dialling_.find(key->id); d != dialling_.end()) {
        // Join the dial in flight: one connection per peer from this end.
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
      std::optional<public_id> id;
      std::shared_ptr<dial_in_flight> mark;
      ~mark_guard() {
        if (!mark) return;
        owner->dialling_.erase(*id);
        mark->finished = true;
        mark->done.notify();
      }
    } guard{this, std::nullopt, nullptr};
    if (key) {
      guard.id = key->id;
      guard.mark = std::make_shared<dial_in_flight>(ex_);
      dialling_.emplace(key->id, guard.mark);
    }
    auto outcome = co_await dial(to, key, for_bootstrap, via);
    if (guard.mark) guard.mark->outcome = outcome;
    co_return outcome;
  }

  asio::awaitable<result<peer_info>> dial(endpoint to, std::optional<peer_key> key,
                                          bool for_bootstrap, transport::kind via) {
    const auto started = clock::now();
    auto attempt = open_stream(to, via);
    auto s = co_await with_timeout(std::move(attempt), cfg_.connect_timeout);
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
    if (!s) co_return dial_failed(transport::to_string(to), key, s.error());
    auto r = co_await establish(std::move(*s), key, for_bootstrap, transport::to_string(to),
                                started, to, via);
    co_return r;
  }

  result<peer_info> dial_failed(const std::string& where, const std::optional<peer_key>& key,
                                error_code ec, std::string detail = {}) {
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
  asio::awaitable<result<peer_info>> establish(transport::stream s, std::optional<peer_key> key,
                                               bool for_bootstrap, std::string where,
                                               time_point started, std::optional<endpoint> to,
                                               transport::kind via) {
    auto fail = [&](error_code ec, std::string detail = {}) -> result<peer_info> {
      return dial_failed(where, key, ec, std::move(detail));
    };
    const auto t0 = clock::now();
    auto machine = secure::handshake::initiator(id_, cfg_.network_name, key);
    auto op = secure::run_handshake(s, std::move(machine));
    auto hs = co_await with_timeout(std::move(op), cfg_.handshake_timeout);
    const bool cancelled_in_handshake = co_await cancel_requested();
    if (cancelled_in_handshake) co_return make_error_code(errc::cancelled);
    if (!hs) co_return fail(hs.error());
    if (hs->remote.id == id_.id()) co_return fail(make_error_code(errc::wrong_peer_key));
    if (banned_ids_.contains(hs->remote.id)) co_return fail(make_error_code(errc::blacklisted));
    if (stopping_) co_return make_error_code(errc::shutting_down);
    const peer_key remote = hs->remote;
    auto conn =
        std::make_shared<connection>(std::move(s), std::move(*hs), cfg_, *this, clock::now() - t0);
    const auto listening = local_endpoint();
    conn->send_hello(cfg_.role, for_bootstrap, listening ? listening->port() : 0);
    spawn(run_connection(conn), "connection");
    auto admission = co_await with_timeout(conn->wait_admitted(), cfg_.handshake_timeout);
    const bool cancelled_in_admission = co_await cancel_requested();
    if (cancelled_in_admission || !admission) conn->abort();
    if (cancelled_in_admission) co_return make_error_code(errc::cancelled);
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
  asio::awaitable<result<peer_info>> bootstrap() {
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
    CRUST_LOG(info, "service",
              "bootstrapped off " << outcome->value->id.short_string() << " at "
                                  << outcome->value->remote);
    post_event(events::bootstrap_connect{*outcome->value});
    co_return *outcome->value;
  }

  // What one bootstrap's dials share: the first peer to admit us, and the
  // peers connected before it began.
  struct bootstrap_claim {
    std::optional<public_id> winner;
    std::set<public_id> before;
  };

  // One bootstrap dial. A dial that succeeds after another has won is
  // closed, unless that connection existed before the bootstrap began.
  asio::awaitable<result<peer_info>> bootstrap_dial(endpoint to, std::optional<peer_key> key,
                                                    std::shared_ptr<bootstrap_claim> claim) {
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
  std::shared_ptr<connection> adopt(const std::shared_ptr<connection>& conn) {
    const auto id = conn->info().id;
    auto it = peers_.find(id);
    if (it == peers_.end()) {
      peers_.emplace(id, conn);
      registered_.notify();
      return conn;
    }
    auto initiator = [this](const connection& c) {
      return c.initiated_by_us() ? id_.id() : c.info().id;
    };
    const bool new_relayed = conn->info().path == path_kind::relayed;
    const bool old_relayed = it->second->info().path == path_kind::relayed;
    const auto mine = initiator(*conn), theirs = initiator(*it->second);
    const bool replace =
        new_relayed != old_relayed ? old_relayed : (mine == theirs || mine > theirs);
    if (replace) {
      CRUST_LOG(debug, "service",
                "duplicate connection to " << id.short_string() << ": keeping the new one ("
                                           << to_string(conn->info().path) << ")");
      it->second->close(close_reason::duplicate, "replaced");
      conn->deliver_after(it->second);
      it->second = conn;
      registered_.notify();
      return conn;
    }
    CRUST_LOG(debug, "service",
              "duplicate connection to " << id.short_string() << ": keeping the existing one");
    conn->close(close_reason::duplicate, "simultaneous dial");
    return it->second;
  }

  asio::awaitable<void> run_connection(std::shared_ptr<connection> conn) {
    auto why = co_await conn->run();
    const auto id = conn->info().id;
    auto it = peers_.find(id);
    if (it == peers_.end() || it->second != conn) co_return;  // replaced or disconnected
    peers_.erase(it);
    if (stopping_) co_return;
    if (why == errc::duplicate_connection) {
      // The peer kept another connection that has not reached us yet: give
      // it a moment before calling the peer lost.
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
    relay_->on_peer_gone(id);
    auto detail = conn->peer_close_detail();
    CRUST_LOG(info, "service",
              "lost peer " << id.short_string() << ": " << why.message()
                           << (detail.empty() ? "" : " - " + detail));
    post_event(events::lost_peer{id, why, std::move(detail)});
  }

  // --- application calls ---
  result<void> send(const public_id& peer, bytes payload, send_options opts) {
    auto it = peers_.find(peer);
    if (it == peers_.end()) return make_error_code(errc::not_connected);
    return it->second->send(std::move(payload), opts.prio, opts.sign);
  }

  asio::awaitable<result<void>> flush(const public_id& peer) {
    auto it = peers_.find(peer);
    if (it == peers_.end()) co_return make_error_code(errc::not_connected);
    auto conn = it->second;
    co_return co_await conn->flush();
  }

  void disconnect(const public_id& peer) {
    auto it = peers_.find(peer);
    if (it == peers_.end()) return;
    auto conn = it->second;
    peers_.erase(it);
    conn->close(close_reason::normal, "disconnect");
    relay_->on_peer_gone(peer);
  }

  // --- admission ---
  void blacklist(const blacklist_entries& e) {
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
    for (auto& [ticket, stream] : pending_)
      if (banned(stream->remote_address())) stream->close();
  }

  void unblacklist(const blacklist_entries& e) {
    for (const auto& id : e.peers) banned_ids_.erase(id);
    for (const auto& a : e.addresses) banned_ips_.erase(transport::canonical(a));
  }

  bool is_blacklisted(const public_id& id) const { return banned_ids_.contains(id); }
  bool banned(const std::optional<asio::ip::address>& a) const {
    return a && banned_ips_.contains(transport::canonical(*a));
  }

  void set_accept_bootstrap(bool accept) { cfg_.accept_bootstrap = accept; }

  std::vector<std::string> reload(const config& next) {
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
      CRUST_LOG(warn, "service",
                "config key \"" << key << "\" changed; it applies after a restart");
    return restart;
  }

  asio::awaitable<void> watch_config(std::filesystem::path path, duration interval) {
    auto stamp =
        [&]() -> std::optional<std::pair<std::filesystem::file_time_type, std::uintmax_t>> {
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

  void watch_config_file(std::filesystem::path path, duration interval) {
    spawn(watch_config(std::move(path), interval), "config watcher");
  }

  std::vector<bootstrap::cache_entry> cached_peers() const {
    return {cache_.entries().begin(), cache_.entries().end()};
  }

  asio::awaitable<result<event>> next_event() {
    while (events_.empty()) {
      if (stopping_) co_return make_error_code(errc::shutting_down);
      co_await event_ready_.wait();
      const bool cancelled = co_await cancel_requested();
      if (cancelled) co_return make_error_code(errc::cancelled);
    }
    event ev = std::move(events_.front());
    events_.pop_front();
    if (std::holds_alternative<events::new_message>(ev)) {
      --queued_messages_;
      event_space_.notify();
    }
    co_return ev;
  }

  asio::awaitable<void> stop(duration grace) {
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
  }

  void stop_udp() {
    if (stun_) stun_->close();
    if (utp_) utp_->shutdown();
    if (udp_) udp_->close();
    udp_tasks_.cancel_all();
  }

  // Immediate teardown, for a service destroyed without stop().
  void stop_now() {
    if (!stopping_) begin_stop();
    relay_->stop_now();
    for (auto& [id, conn] : peers_) conn->abort();
    peers_.clear();
    tasks_.cancel_all();
    stop_udp();
  }

  std::vector<peer_info> peers() const {
    std::vector<peer_info> out;
    for (const auto& [id, conn] : peers_) out.push_back(conn->info());
    return out;
  }
  std::optional<peer_stats> stats(const public_id& peer) const {
    auto it = peers_.find(peer);
    if (it == peers_.end()) return std::nullopt;
    return it->second->stats();
  }
  std::optional<endpoint> local_endpoint() const {
    if (!acceptor_ || !acceptor_->is_open()) return std::nullopt;
    error_code ec;
    auto ep = acceptor_->local_endpoint(ec);
    if (ec) return std::nullopt;
    return ep;
  }
  std::optional<endpoint> local_udp_endpoint() const {
    if (!udp_) return std::nullopt;
    const auto ep = udp_->local_endpoint();
    return endpoint(ep.address(), ep.port());
  }
  const identity& id() const { return id_; }
  const config& cfg() const { return cfg_; }

  asio::awaitable<result<nat::binding_result>> reflexive_address(asio::ip::udp::endpoint server,
                                                                 nat::stun::retransmission r) {
    if (!stun_) co_return make_error_code(asio::error::not_connected);
    auto agent = stun_;  // the agent outlives a stop() during the transaction
    co_return co_await agent->binding(server, r);
  }

  asio::awaitable<nat::nat_report> discover_nat(nat::discover_options o) {
    if (!stun_ || !udp_) {
      auto r = nat::classify({}, {}, std::nullopt);
      r.notes.insert(r.notes.begin(),
                     "the node has no UDP socket (enable_utp is off or it is "
                     "not started)");
      co_return r;
    }
    auto mux = udp_;
    auto agent = stun_;
    co_return co_await nat::discover(mux, agent, std::move(o));
  }

  asio::awaitable<result<nat::private_connection_info>> prepare_connection_info(prepare_options o) {
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
      const nat::candidate c{t, nat::candidate_kind::mapped,
                             transport::canonical(m.external_address), m.external_port};
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
    auto info = nat::private_connection_info::prepare(id_, cfg_.network_name, std::move(cands),
                                                      hint, unix_now(), o.lifetime);
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
  asio::awaitable<result<peer_info>> rendezvous(nat::private_connection_info mine,
                                                nat::connection_info theirs,
                                                rendezvous_options o) override {
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
                                 << std::chrono::duration_cast<milliseconds>(took).count()
                                 << " ms");
    co_return conn->info();
  }

  // How a connection made by a rendezvous reaches the peer, from the
  // candidates: to one of the peer's host endpoints is direct, to a port
  // mapping is mapped, anything else went through the NATs (punched). An
  // inbound TCP connection shows the peer's NAT, not what it dialled:
  // mapped if we hold a TCP mapping, else direct (it reached one of our
  // listening endpoints; a simultaneous open is told apart by the caller).
  static path_kind path_to(const connection& c, const nat::connection_info& theirs,
                           const nat::connection_info& mine) {
    auto remote = transport::parse_endpoint(c.info().remote);
    if (!remote) return path_kind::punched;
    const auto addr = transport::canonical(remote->address());
    const auto t = c.info().transport == transport::kind::tcp ? nat::candidate_transport::tcp
                                                              : nat::candidate_transport::udp;
    auto kind_of = [&](const nat::connection_info& info,
                       bool port_too) -> std::optional<nat::candidate_kind> {
      for (const auto& cand : info.candidates)
        if (cand.transport == t && cand.address == addr &&
            (!port_too || cand.port == remote->port()))
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

 private:
  struct punch_run {
    punch_run(nat::punch_session s, const asio::any_io_executor& ex)
        : session(std::move(s)), wake(ex) {}
    nat::punch_session session;
    notifier wake;
  };

  // A STUN datagram some punch in progress claims: it answers (checks
  // from a blacklisted address get nothing) and is woken.
  bool intercept_punch(byte_span d, const asio::ip::udp::endpoint& from) {
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
  asio::ip::udp::endpoint for_socket(const asio::ip::udp::endpoint& e) const {
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
  asio::awaitable<result<asio::ip::udp::endpoint>> punch_udp(
      const nat::private_connection_info& mine, const nat::connection_info& theirs,
      nat::punch_config pc) {
    auto self = shared_from_this();
    if (!udp_ || !stun_) co_return make_error_code(asio::error::not_connected);
    auto s = nat::punch_session::start(mine, theirs, udp_->local_endpoint(), clock::now(), pc);
    if (!s) co_return s.error();
    auto run = std::make_shared<punch_run>(std::move(*s), ex_);
    punches_.push_back(run);
    struct unregister {
      impl* owner;
      std::shared_ptr<punch_run> r;
      bool linger = false;
      ~unregister() {
        if (!linger) std::erase(owner->punches_, r);
      }
    } guard{this, run};
    timer t(ex_);
    using namespace asio::experimental::awaitable_operators;
    for (;;) {
      auto udp = udp_;
      if (!udp || stopping_) co_return make_error_code(errc::shutting_down);
      for (const auto& d : run->session.poll(clock::now())) udp->send(d.data, for_socket(d.to));
      if (run->session.state() == nat::punch_state::succeeded) {
        guard.linger = true;
        spawn(linger(run, clock::now() + pc.deadline), "punch linger");
        CRUST_LOG(debug, "service",
                  "punched to " << theirs.key.id.short_string() << " at "
                                << transport::to_string({run->session.path()->address(),
                                                         run->session.path()->port()})
                                << " after " << run->session.checks_sent() << " checks");
        co_return *run->session.path();
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
  asio::awaitable<void> linger(std::shared_ptr<punch_run> run, time_point until) {
    timer t(ex_);
    // In short steps, so that stop() does not wait for it.
    while (clock::now() < until && !stopping_) {
      t.expires_at(std::min(until, clock::now() + milliseconds(50)));
      auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) break;
    }
    std::erase(punches_, run);
  }

  // The UDP attempt of a rendezvous: punch, then the controlling side (the
  // larger id) dials µTP over the path while the other waits for it (or
  // for any connection from that peer) within the handshake timeout.
  asio::awaitable<result<peer_info>> punch_then_utp(nat::private_connection_info mine,
                                                    nat::connection_info theirs,
                                                    nat::punch_config pc) {
    auto self = shared_from_this();
    auto path = co_await punch_udp(mine, theirs, pc);
    // The peer's connection may have come first (its µTP dial over a path
    // our side had not confirmed yet, or TCP): that is the result.
    if (auto c = direct_peer(theirs.key.id)) co_return c->info();
    if (!path) co_return path.error();
    const auto& me = mine.pub().key.id.key;
    const auto& them = theirs.key.id.key;
    const bool controlling =
        std::lexicographical_compare(them.begin(), them.end(), me.begin(), me.end());
    if (controlling)
      co_return co_await connect(endpoint(path->address(), path->port()), theirs.key, false,
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

  // The addresses a listener bound to `bound` is reachable at: itself, or
  // for a wildcard every up interface's (IPv4 only for 0.0.0.0; IPv6
  // link-local ones left out, as they need a scope), loopback only when
  // there is nothing else.
  static std::vector<asio::ip::address> host_addresses(const asio::ip::address& bound) {
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

  // Why a connection from `ip` is refused before the handshake, if it is.
  std::optional<std::string> refuse_address(const std::optional<asio::ip::address>& ip) const {
    if (banned(ip)) return "blacklisted";
    if (cfg_.whitelisted_node_ips && cfg_.whitelisted_client_ips &&
        !listed(cfg_.whitelisted_node_ips, ip) && !listed(cfg_.whitelisted_client_ips, ip))
      return "not whitelisted";
    return std::nullopt;
  }

  // Closes (with not_allowed) every registered connection `pred` picks.
  template <class Pred>
  void close_where(Pred pred, const char* why, bool tell) {
    for (auto it = peers_.begin(); it != peers_.end();) {
      if (!pred(*it->second)) {
        ++it;
        continue;
      }
      auto conn = it->second;
      it = peers_.erase(it);
      relay_->on_peer_gone(conn->info().id);
      CRUST_LOG(info, "service", "closing " << conn->info().id.short_string() << ": " << why);
      conn->close(close_reason::not_allowed, why);
      if (tell)
        post_event(events::lost_peer{conn->info().id, make_error_code(errc::not_allowed), why});
    }
  }

  bool is_contact(const endpoint& to, const public_id& id) const {
    for (const auto& c : cfg_.hard_coded_contacts) {
      if (c.key && c.key->id == id) return true;
      auto ep = transport::parse_endpoint(c.endpoint);
      if (ep && *ep == to) return true;
    }
    return false;
  }

  void drop_contacts_from_cache() {
    std::vector<public_id> drop;
    for (const auto& e : cache_.entries())
      if (is_contact(e.endpoint, e.key.id)) drop.push_back(e.key.id);
    for (const auto& id : drop) cache_.remove(id);
  }

  void load_cache() {
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

  void save_cache() {
    if (cfg_.bootstrap_cache_path.empty()) return;
    if (auto r = cache_.save(cfg_.bootstrap_cache_path, cfg_.network_name); !r)
      CRUST_LOG(warn, "service",
                "cannot write the bootstrap cache " << cfg_.bootstrap_cache_path << ": "
                                                    << r.error().message());
  }

  void spawn(asio::awaitable<void> task, const char* what) {
    tasks_.spawn(std::move(task), what, shared_from_this());
  }
  void begin_stop() {
    stopping_ = true;
    if (acceptor_) {
      error_code ec;
      acceptor_->close(ec);
    }
    if (beacon_) beacon_->close();
    if (utp_) utp_->listen(false);
    // Renewals stop; stop() then deletes the mappings on the gateway (a
    // service destroyed without stop() leaves them to expire).
    mapping_tasks_.cancel_all();
    event_ready_.notify();
    event_space_.notify();
  }

  asio::any_io_executor ex_;
  config cfg_;
  identity id_;
  task_group tasks_;
  std::optional<asio::ip::tcp::acceptor> acceptor_;
  std::shared_ptr<transport::udp_mux> udp_;
  std::shared_ptr<utp::manager> utp_;
  std::shared_ptr<nat::stun_agent> stun_;
  std::vector<std::shared_ptr<punch_run>> punches_;  // punches in progress
  task_group udp_tasks_;  // the socket, µTP's timers and accepts: stopped after the connections
  std::shared_ptr<nat::port_mapper> mapper_;  // when port mapping is on
  task_group mapping_tasks_;                  // keep_mapped(), one per port
  std::size_t mappings_unsettled_ = 0;        // without their first answer yet
  notifier mapping_settled_;
  std::map<public_id, std::shared_ptr<connection>> peers_;
  std::deque<event> events_;
  std::size_t queued_messages_ = 0;
  notifier event_ready_;
  notifier event_space_;
  notifier registered_;
  struct dial_in_flight {
    explicit dial_in_flight(const asio::any_io_executor& ex) : done(ex) {}
    notifier done;
    bool finished = false;
    result<peer_info> outcome = make_error_code(errc::not_connected);
  };
  std::map<public_id, std::shared_ptr<dial_in_flight>> dialling_;
  // Inbound handshakes in progress, oldest first (by ticket).
  std::map<std::uint64_t, transport::stream*> pending_;
  std::uint64_t next_ticket_ = 0;
  bool stopping_ = false;
  bootstrap::cache cache_;
  std::unique_ptr<bootstrap::beacon_responder> beacon_;
  transport::rate_limiter beacon_limiter_;
  std::set<public_id> banned_ids_;
  std::set<asio::ip::address> banned_ips_;
  std::map<public_id, peer_key> rendezvous_keys_;  // peers a rendezvous is running with
  std::unique_ptr<detail::relay_agent> relay_;     // last: its coroutines use the rest
};

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
