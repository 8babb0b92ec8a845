// service::impl, the service's state and workings: declared here for the
// two files that define it, crust/service.cpp (listening, dialling,
// bootstrap, admission, the application's calls) and
// crust/service_nat.cpp (port mapping, connection info, rendezvous,
// punching, TCP simultaneous open, introductions and the relay's host).
// Not installed: an implementation detail.
#pragma once

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
#include <tuple>

namespace crust {

namespace asio = boost::asio;
using detail::connection;
using transport::read_exact;
using transport::write_all;

namespace service_detail {
// Cache entries and infos outlive the process, so they carry wall-clock time.
inline std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline bootstrap::cache_limits cache_limits_of(const config& c) {
  bootstrap::cache_limits l;
  l.capacity = c.bootstrap_cache_size;
  l.per_group = c.bootstrap_cache_per_group;
  l.per_source = c.bootstrap_cache_per_source;
  l.ttl_seconds = std::chrono::duration_cast<std::chrono::seconds>(c.bootstrap_cache_ttl).count();
  return l;
}
}  // namespace service_detail
using service_detail::cache_limits_of;
using service_detail::unix_now;

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
        hello_done_(ex_),
        cache_(cache_limits_of(cfg_)),
        relay_(std::make_unique<detail::relay_agent>(ex_, *this, cfg_, id_.id())) {
    const double rate = cfg_.handshakes_per_source;
    handshake_limiter_ = transport::rate_limiter(rate, 2 * rate, 1e9, 4096);
    const double xx = cfg_.address_only_per_second;
    address_only_limiter_ = transport::rate_limiter(xx, 2 * xx, 1e9, 1);
  }

  // --- connection_owner ---
  asio::awaitable<void> deliver(event ev, bool is_message) override;
  void post_event(event ev) override;
  const identity& me() const override { return id_; }
  std::uint16_t udp_port() const override { return udp_ ? udp_->local_endpoint().port() : 0; }

  asio::awaitable<std::optional<std::string>> admit(const std::shared_ptr<connection>& conn,
                                                    const secure::incoming_hello& hello) override;
  std::optional<std::string> admission_refusal(const connection& conn,
                                               const secure::incoming_hello& hello) const;

  void on_relay(const std::shared_ptr<connection>& conn, bytes body) override;
  void on_gossip(const std::shared_ptr<connection>& conn, bytes body) override;

  // --- contact gossip (crust/service_gossip.cpp; bootstrap/gossip.hpp decides) ---
  void start_gossip();
  // Our record's candidates: the TCP listener's host addresses, then its
  // port mappings, then the UDP socket's (at most max_record_candidates).
  std::vector<nat::candidate> own_candidates() const;
  // Signs a new record of ours when the candidates changed, or the last
  // is half way to its max age (or always, with `force`).
  void refresh_own_record(bool force);
  bool gossip_partner(const connection& c) const;
  // A newly registered peer gets our push at once (the dialler asks for one back).
  void gossip_greet(const std::shared_ptr<connection>& conn);
  asio::awaitable<void> gossip_loop();
  void gossip_round();
  asio::awaitable<void> gossip_dial_back(bootstrap::contact_record r);
  bool send_gossip(connection& c, const bytes& body);
  std::vector<bootstrap::gossip_entry> known_peers() const;
  std::vector<bootstrap::contact_record> sample_peers(std::size_t count);
  // newer_than: the target's records issued then or before are ignored.
  asio::awaitable<result<std::vector<bootstrap::contact_record>>> find_peers_near(
      public_id target, std::size_t count,
      std::int64_t newer_than = std::numeric_limits<std::int64_t>::min());
  asio::awaitable<result<peer_info>> connect_to(public_id target);
  // One find of a lookup: asks `r`'s node (dialling it if we are not
  // connected and `dials` allows) for the records nearest `target`.
  asio::awaitable<std::optional<std::vector<bootstrap::contact_record>>> ask_near(
      const bootstrap::contact_record& r, const public_id& target, std::size_t& dials);

  // --- relay_host (crust/detail/relay_agent.hpp) ---
  bool send_relay(const public_id& to, bytes record) override;
  std::optional<peer_info> peer(const public_id& id, bool direct_only) const override;
  void accept_relayed(transport::stream s) override;
  asio::awaitable<result<peer_info>> dial_relayed(transport::stream s, std::optional<peer_key> key,
                                                  public_id via) override;
  asio::awaitable<result<nat::private_connection_info>> prepare_info() override;
  std::optional<peer_info> set_connect_time(const public_id& id, duration took) override;
  bool refused(const public_id& id) const override { return banned_ids_.contains(id); }
  bool stopping() const override { return stopping_; }
  std::shared_ptr<void> keep_alive() override { return shared_from_this(); }

  // The registered connection to `id` unless it is relayed.
  std::shared_ptr<connection> direct_peer(const public_id& id) const;

  asio::awaitable<result<peer_info>> connect_through(public_id via, public_id target,
                                                     introduction_options o);

  // The external-reachability check: a TCP connect to where the peer says
  // it listens, and a Noise XK handshake that only the holder of `key`
  // completes; then the socket is closed (the peer sees a handshake with no
  // hello, which it never announces). Within half the handshake timeout, so
  // the answer reaches the dialler before its own admission deadline.
  // Returns nullopt when it worked, else what went wrong, for the refusal.
  asio::awaitable<std::optional<std::string>> dial_back(const std::optional<asio::ip::address>& ip,
                                                        std::uint16_t port, peer_key key);

  // --- listening ---
  asio::awaitable<result<endpoint>> start();

  // --- port mapping on the gateway (nat/port_mapper.hpp) ---
  // The TCP listener's and the UDP socket's ports, each kept mapped in the
  // background (renewed at half the lease, asked for again when lost) and
  // removed by stop(). A rotated-out TCP port's mapping is removed when the
  // port closes; the new port is mapped at once. A node on loopback has
  // nothing to map.
  void start_port_mapping(const asio::ip::address& bound);

  // Set when a port is closed: its keep_mapped() stops renewing and
  // deletes the mapping on the gateway.
  struct unmap_signal {
    explicit unmap_signal(const asio::any_io_executor& ex) : wake(ex) {}
    notifier wake;
    bool raised = false;
    void raise() {
      raised = true;
      wake.notify();
    }
  };
  // Keeps `r` mapped until the service stops or `unmap` is raised.
  asio::awaitable<void> keep_mapped(nat::mapping_request r, std::shared_ptr<unmap_signal> unmap);
  // Starts keeping `port` mapped; raising the signal returned unmaps it.
  std::shared_ptr<unmap_signal> map_port(nat::pmp::protocol p, std::uint16_t port);

  // Waits (at most `bound`) until every port mapping has had its first
  // answer, so a connection info made at start-up has its mapped candidates.
  asio::awaitable<void> mappings_settled(duration bound);

  void set_blocking_pool(asio::thread_pool& pool) { blocking_pool_ = &pool; }
  node_status status() const;
  std::vector<nat::port_mapping> port_mappings() const {
    return mapper_ ? mapper_->active() : std::vector<nat::port_mapping>{};
  }

  // --- the LAN beacon (bootstrap/lan.hpp moves the bytes) ---
  void start_beacon();

  std::optional<bytes> answer_beacon(byte_span request, const asio::ip::udp::endpoint& from);

  asio::awaitable<std::vector<bootstrap::beacon_contact>> discover_lan(duration window);

  asio::awaitable<void> accept_loop(std::shared_ptr<asio::ip::tcp::acceptor> acceptor);

  // --- port rotation (config::port_rotation_interval) ---
  // A new listener on a random port becomes the one advertised; the old
  // keeps accepting until its grace period ends (or more than
  // port_rotation_max_retiring are open), then closes and is unmapped.
  asio::awaitable<result<endpoint>> rotate_port();
  asio::awaitable<void> rotation_loop();
  asio::awaitable<void> retire_after(std::uint64_t serial, time_point when);
  void retire(std::uint64_t serial, const char* why);
  std::vector<endpoint> retiring_endpoints() const;

  // --- µTP: the node's UDP socket and its manager ---
  void start_utp(const asio::ip::address& addr);
  // For every µTP socket of the node: the secure channel batches its own
  // writes, so µTP's Nagle would only hold back its short frames.
  static utp::manager::options utp_options() {
    utp::manager::options o;
    o.conn.no_delay = true;
    return o;
  }

  asio::awaitable<void> utp_accept_loop();

  // An accepted stream of any transport: refused by address before any
  // cryptography, or handed to an inbound handshake.
  void take_inbound(transport::stream s);

  // A transport stream to `to`, over TCP or µTP.
  asio::awaitable<result<transport::stream>> open_stream(endpoint to, transport::kind via);

  // An accepted stream: the responder's handshake, then run_connection.
  // `sorted`: a TCP stream's first bytes were already looked at.
  asio::awaitable<void> inbound(transport::stream s, bool sorted = false);

  static duration time_left(time_point deadline) {
    return std::max(deadline - clock::now(), duration::zero());
  }

  // --- what an accepted TCP connection starts with ---
  // Its first 20 bytes: a STUN Binding request over TCP (nat/tcp_stun.hpp:
  // answered, then closed), the preamble of a TCP simultaneous open (sorted
  // out by ids, below), or a Noise handshake (the bytes go back for it).
  enum class tcp_opening { noise, handled, failed };
  asio::awaitable<tcp_opening> sort_tcp(transport::stream& s, std::uint64_t ticket,
                                        time_point deadline);

  asio::awaitable<void> initiate_on(transport::stream s, std::optional<peer_key> key);

  // TCP simultaneous open's preamble: "CRUSTSO1" and the sender's id, from
  // both ends (a tie-break only: the handshake that follows authenticates).
  // The larger id runs the Noise initiator.
  static constexpr std::string_view so_magic = "CRUSTSO1";
  static constexpr std::size_t so_preamble_size = 8 + 32;
  bytes so_preamble() const;
  bool we_control(const public_id& them) const;

  // One side of a TCP simultaneous open toward `to` (the peer's TCP
  // reflexive endpoint), from our listening port, retried until `limit`:
  // a SYN that finds no mapping yet is dropped, or refused by routers
  // that answer with RST. On a connection, the preambles decide who runs
  // the initiator; the other side's connection is registered through its
  // inbound path, which this waits for.
  asio::awaitable<result<peer_info>> simultaneous_open(endpoint to, peer_key key, duration limit);

  static asio::awaitable<void> pause(duration d);

  // --- dialling ---
  asio::awaitable<result<peer_info>> connect(endpoint to, std::optional<peer_key> key,
                                             bool for_bootstrap = false,
                                             transport::kind via = transport::kind::tcp);

  asio::awaitable<result<peer_info>> dial(endpoint to, std::optional<peer_key> key,
                                          bool for_bootstrap, transport::kind via);

  result<peer_info> dial_failed(const std::string& where, const std::optional<peer_key>& key,
                                error_code ec, std::string detail = {});

  // The secure part of a dial over an open stream: the Noise handshake,
  // hello, admission, registration. `to` is where the stream goes (for
  // the cache; none for a relay circuit).
  asio::awaitable<result<peer_info>> establish(transport::stream s, std::optional<peer_key> key,
                                               bool for_bootstrap, std::string where,
                                               time_point started, std::optional<endpoint> to,
                                               transport::kind via);

  // --- bootstrap ---
  asio::awaitable<result<peer_info>> bootstrap();

  // What one bootstrap's dials share: the first peer to admit us, and the
  // peers connected before it began.
  struct bootstrap_claim {
    std::optional<public_id> winner;
    std::set<public_id> before;
  };

  // One bootstrap dial. A dial that succeeds after another has won is
  // closed, unless that connection existed before the bootstrap began.
  asio::awaitable<result<peer_info>> bootstrap_dial(endpoint to, std::optional<peer_key> key,
                                                    std::shared_ptr<bootstrap_claim> claim);

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
  std::shared_ptr<connection> adopt(const std::shared_ptr<connection>& conn);

  asio::awaitable<void> run_connection(std::shared_ptr<connection> conn);

  // --- application calls ---
  result<void> send(const public_id& peer, bytes payload, send_options opts);

  asio::awaitable<result<void>> flush(const public_id& peer);

  void disconnect(const public_id& peer);

  // --- admission ---
  void blacklist(const blacklist_entries& e);

  void unblacklist(const blacklist_entries& e);

  bool is_blacklisted(const public_id& id) const { return banned_ids_.contains(id); }
  bool banned(const std::optional<asio::ip::address>& a) const {
    return a && banned_ips_.contains(transport::canonical(*a));
  }

  void set_accept_bootstrap(bool accept) { cfg_.accept_bootstrap = accept; }

  std::vector<std::string> reload(const config& next);

  asio::awaitable<void> watch_config(std::filesystem::path path, duration interval);

  void watch_config_file(std::filesystem::path path, duration interval) {
    spawn(watch_config(std::move(path), interval), "config watcher");
  }

  std::vector<bootstrap::cache_entry> cached_peers() const {
    return {cache_.entries().begin(), cache_.entries().end()};
  }

  asio::awaitable<result<event>> next_event();

  asio::awaitable<void> stop(duration grace);

  void stop_udp();

  // Immediate teardown, for a service destroyed without stop().
  void stop_now();

  std::vector<peer_info> peers() const;
  std::optional<peer_stats> stats(const public_id& peer) const;
  std::optional<endpoint> local_endpoint() const;
  std::optional<endpoint> local_udp_endpoint() const;
  const identity& id() const { return id_; }
  const config& cfg() const { return cfg_; }

  asio::awaitable<result<nat::binding_result>> reflexive_address(asio::ip::udp::endpoint server,
                                                                 nat::stun::retransmission r);

  asio::awaitable<nat::nat_report> discover_nat(nat::discover_options o);

  asio::awaitable<result<nat::private_connection_info>> prepare_connection_info(prepare_options o);

  // --- rendezvous: connection infos, punching, the race ---
  asio::awaitable<result<peer_info>> rendezvous(nat::private_connection_info mine,
                                                nat::connection_info theirs,
                                                rendezvous_options o) override;

  // How a connection made by a rendezvous reaches the peer, from the
  // candidates: to one of the peer's host endpoints is direct, to a port
  // mapping is mapped, anything else went through the NATs (punched). An
  // inbound TCP connection shows the peer's NAT, not what it dialled:
  // mapped if we hold a TCP mapping, else direct (it reached one of our
  // listening endpoints; a simultaneous open is told apart by the caller).
  static path_kind path_to(const connection& c, const nat::connection_info& theirs,
                           const nat::connection_info& mine);

 private:
  struct punch_run {
    punch_run(nat::punch_session s, const asio::any_io_executor& ex)
        : session(std::move(s)), wake(ex) {}
    nat::punch_session session;
    notifier wake;
    // Multi-socket probing's extra sockets (session.extra_sockets() of
    // them, socket i at [i - 1]); the one a path goes through is handed on.
    std::vector<std::shared_ptr<transport::udp_mux>> extra;
    std::shared_ptr<transport::udp_mux> handed_on;  // its new holder closes it
    void close_extra() {
      for (auto& m : extra)
        if (m && m != handed_on) m->close();
      extra.clear();
    }
  };
  // Where a punch got through: the peer's endpoint, and the socket of
  // ours it goes through (null: the node's own).
  struct punched {
    asio::ip::udp::endpoint path;
    std::shared_ptr<transport::udp_mux> socket;
    nat::spray_role spray = nat::spray_role::none;
  };

  // A STUN datagram some punch in progress claims: it answers (checks
  // from a blacklisted address get nothing) and is woken.
  bool intercept_punch(byte_span d, const asio::ip::udp::endpoint& from);

  // A dual-stack socket reaches IPv4 endpoints through mapped addresses.
  asio::ip::udp::endpoint for_socket(const asio::ip::udp::endpoint& e) const;

  // Runs one punch on the node's UDP socket (and, for multi-socket
  // probing, the extra sockets the session asks for): the peer's endpoint
  // that answered, and our socket. A session that succeeded keeps
  // answering the peer's checks until its deadline (the peer may not have
  // had our answer yet). Errors: not_connected (no UDP socket), timed_out
  // (the session's deadline), malformed (no UDP candidate),
  // duplicate_connection (the peer connected to us meanwhile, by any
  // transport), shutting_down, cancelled.
  asio::awaitable<result<punched>> punch_udp(const nat::private_connection_info& mine,
                                             const nat::connection_info& theirs,
                                             nat::punch_config pc);

  // Keeps a succeeded punch answering until `until`, then forgets it.
  asio::awaitable<void> linger(std::shared_ptr<punch_run> run, time_point until);

  // The UDP attempt of a rendezvous: punch, then the controlling side (the
  // larger id; under multi-socket probing, the side with the sockets)
  // dials µTP over the path while the other waits for it (or for any
  // connection from that peer) within the handshake timeout. A path
  // through an extra socket gets a µTP manager of its own, kept while the
  // connection over it lives.
  asio::awaitable<result<peer_info>> utp_over_extra(punched p, peer_key key);
  asio::awaitable<void> keep_socket(std::shared_ptr<transport::udp_mux> mux,
                                    std::shared_ptr<utp::manager> mgr,
                                    std::shared_ptr<connection> conn);
  asio::awaitable<result<peer_info>> punch_then_utp(nat::private_connection_info mine,
                                                    nat::connection_info theirs,
                                                    nat::punch_config pc);

  // The addresses a listener bound to `bound` is reachable at: itself, or
  // for a wildcard every up interface's (IPv4 only for 0.0.0.0; IPv6
  // link-local ones left out, as they need a scope), loopback only when
  // there is nothing else.
  static std::vector<asio::ip::address> host_addresses(const asio::ip::address& bound);

  // Why a connection from `ip` is refused before the handshake, if it is.
  std::optional<std::string> refuse_address(const std::optional<asio::ip::address>& ip) const;

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

  bool is_contact(const endpoint& to, const public_id& id) const;

  void drop_contacts_from_cache();

  void load_cache();

  void save_cache();

  void spawn(asio::awaitable<void> task, const char* what) {
    tasks_.spawn(std::move(task), what, shared_from_this());
  }
  void begin_stop();

  asio::any_io_executor ex_;
  config cfg_;
  identity id_;
  task_group tasks_;
  std::shared_ptr<asio::ip::tcp::acceptor> acceptor_;  // the listener advertised
  std::shared_ptr<unmap_signal> acceptor_unmap_;       // its port mapping's stop
  struct retiring_listener {
    std::uint64_t serial = 0;
    std::shared_ptr<asio::ip::tcp::acceptor> acceptor;
    endpoint at;
    std::shared_ptr<unmap_signal> unmap;
  };
  std::deque<retiring_listener> retiring_;  // rotated out, oldest first
  std::uint64_t rotations_ = 0;
  std::shared_ptr<transport::udp_mux> udp_;
  std::shared_ptr<utp::manager> utp_;
  std::shared_ptr<nat::stun_agent> stun_;
  std::vector<std::shared_ptr<punch_run>> punches_;  // punches in progress
  task_group udp_tasks_;  // the socket, µTP's timers and accepts: stopped after the connections
  std::shared_ptr<nat::port_mapper> mapper_;  // when port mapping is on
  task_group mapping_tasks_;                  // keep_mapped(), one per port
  asio::ip::address mapping_internal_;        // what mappings ask for (unspecified: the route's)
  std::size_t mappings_unsettled_ = 0;        // without their first answer yet
  notifier mapping_settled_;
  std::map<public_id, std::shared_ptr<connection>> peers_;
  // Messages sent to a peer whose connection it has replaced, until the
  // replacement is ours too (then they go on it, in order) or the wait
  // for it ends (then they are reported dropped): a switch of paths
  // refuses no send. Bounded by send_queue_bytes per peer.
  struct parked_message {
    bytes payload;
    send_options opts;
  };
  struct parked_sends {
    std::deque<parked_message> messages;
    std::size_t bytes = 0;
  };
  std::map<public_id, parked_sends> parked_;
  std::set<public_id> awaiting_replacement_;
  result<void> park(const public_id& peer, bytes& payload, send_options opts);
  void unpark(const public_id& peer, connection& onto);
  void drop_parked(const public_id& peer);
  std::deque<event> events_;
  std::size_t queued_messages_ = 0;
  std::size_t queued_message_bytes_ = 0;
  std::size_t queued_other_events_ = 0;  // events_ that are not messages
  std::size_t live_connections_ = 0;     // handshaken connections whose run() has not ended
  notifier event_ready_;
  notifier event_space_;
  notifier registered_;
  struct dial_in_flight {
    explicit dial_in_flight(const asio::any_io_executor& ex) : done(ex) {}
    notifier done;
    bool finished = false;
    result<peer_info> outcome = make_error_code(errc::not_connected);
  };
  // Keyed by peer, transport and endpoint: a second dial to the same place
  // joins the first, while a race's dials to other endpoints of the same
  // peer (a punched µTP path beside TCP candidates that hang) go ahead.
  using dial_key = std::tuple<public_id, transport::kind, endpoint>;
  std::map<dial_key, std::shared_ptr<dial_in_flight>> dialling_;
  // Peers our hello is on its way to, awaiting admission (establish()).
  std::set<public_id> hello_out_;
  notifier hello_done_;
  // Inbound handshakes in progress, oldest first (by ticket), with their
  // source (transport::source_of; unspecified for a relayed stream), and
  // how many each source has.
  struct pending_handshake {
    transport::stream* stream;
    asio::ip::address source;
  };
  std::map<std::uint64_t, pending_handshake> pending_;
  std::map<asio::ip::address, std::size_t> pending_by_source_;
  void add_pending(std::uint64_t ticket, transport::stream* s);
  void drop_pending(std::uint64_t ticket);
  // Makes room for one more: closes the oldest handshake of the source
  // with the most in progress (a flood's, not a real peer's).
  void evict_pending();
  // Failed inbound handshakes per source (handshakes_per_source): an
  // exhausted source's connections are closed before any cryptography.
  transport::rate_limiter handshake_limiter_;
  // XX answers, in all (one bucket: the source is not looked at).
  transport::rate_limiter address_only_limiter_;
  std::optional<asio::ip::address> limited_source(const transport::stream& s) const;
  void failed_from(const std::optional<asio::ip::address>& source);
  std::uint64_t next_ticket_ = 0;
  bool stopping_ = false;
  bootstrap::cache cache_;
  std::unique_ptr<bootstrap::beacon_responder> beacon_;
  transport::rate_limiter beacon_limiter_;
  std::set<public_id> banned_ids_;
  std::set<asio::ip::address> banned_ips_;
  std::map<public_id, peer_key> rendezvous_keys_;  // peers a rendezvous is running with
  asio::thread_pool* blocking_pool_ = nullptr;     // the application's, for miniupnpc
  // For status(): counters since construction (the payload counters hold
  // the connections that have ended; status() adds the open ones), and the
  // last NAT discovery's report.
  node_metrics metrics_;
  time_point created_ = clock::now();
  std::optional<nat::nat_report> last_nat_;
  std::unique_ptr<bootstrap::gossip> gossip_;  // when cfg.enable_gossip, from start()
  struct pending_find {
    pending_find(const asio::any_io_executor& ex, public_id who) : asked(who), done(ex) {}
    public_id asked;
    notifier done;
    std::optional<std::vector<bootstrap::contact_record>> found;
  };
  std::map<std::uint32_t, std::shared_ptr<pending_find>> finds_;  // lookups' finds in flight
  std::uint32_t next_query_ = 1;
  std::unique_ptr<detail::relay_agent> relay_;  // last: its coroutines use the rest
};

}  // namespace crust
