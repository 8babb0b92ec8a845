/// \file
/// crust::service: the public face. One per node, on the application's
/// executor; it starts no threads. Every awaitable here honours Asio
/// cancellation (a cancelled call returns errc::cancelled or the transport's
/// operation_aborted, and leaves nothing running).
#pragma once

#include "bootstrap/beacon.hpp"
#include "bootstrap/cache.hpp"
#include "bootstrap/gossip.hpp"
#include "crust/base/error.hpp"
#include "crust/config.hpp"
#include "crust/events.hpp"
#include "crust/secure/identity.hpp"
#include "crust/status.hpp"
#include "nat/connection_info.hpp"
#include "nat/discover.hpp"
#include "nat/port_mapper.hpp"
#include "nat/punch.hpp"
#include "nat/stun_agent.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

namespace crust {

/// Peers and addresses to refuse, for service::blacklist.
struct blacklist_entries {
  std::vector<public_id> peers;
  std::vector<boost::asio::ip::address> addresses;
};

struct send_options {
  priority prio = priority::normal;
  /// Sign the message with our id key: the receiver gets a signature it can
  /// keep as proof (non-repudiation). Costs one Ed25519 signature per message.
  bool sign = false;
};

/// How service::prepare_connection_info learns where the node appears.
struct prepare_options {
  /// STUN servers to ask (any RFC 8489 server; every Crust node is one).
  std::vector<boost::asio::ip::udp::endpoint> stun_servers;
  /// Connected peers that told us their UDP port (peer_info::udp_port) are
  /// asked too, up to this many (in the order of their ids).
  std::size_t peer_servers = 3;
  /// Run the whole NAT behaviour discovery (nat/discover.hpp) for the
  /// info's NAT hint; false: one Binding per server, and the hint says
  /// "unknown".
  bool discover_nat = true;
  /// TCP reflexive candidates: STUN over TCP from the listener's port
  /// (nat/tcp_stun.hpp) to these servers and to up to tcp_peer_servers
  /// peers whose listeners we dialled (every Crust node answers on its
  /// TCP port). They are what TCP simultaneous open aims at.
  std::vector<boost::asio::ip::tcp::endpoint> tcp_stun_servers;
  std::size_t tcp_peer_servers = 2;
  std::uint32_t lifetime = nat::info_default_lifetime;  ///< seconds
};

/// How service::connect(mine, theirs) tries to reach a peer.
struct rendezvous_options {
  bool tcp = true;  ///< dial each of the peer's TCP candidates
  /// Open each of the peer's TCP reflexive candidates from our listening
  /// port as it opens ours (TCP simultaneous open through two NATs).
  bool tcp_simultaneous_open = true;
  bool udp = true;  ///< punch UDP and carry µTP over the path (needs enable_utp)
  nat::punch_config punch;
};

/// How service::connect_through reaches a peer through a mutual one.
struct introduction_options {
  rendezvous_options direct;  ///< how the direct attempts run
  /// Try a direct path first, with the relay as the fallback. false: go
  /// straight to a circuit (Noise XX through it: the target's key is not
  /// needed) and leave direct paths to the upgrade, as libp2p does.
  bool direct_first = true;
  bool relay = true;  ///< fall back to a circuit through the mutual peer
  /// The circuit is asked for this long after the direct attempts start;
  /// at once when they fail sooner, or when neither side can be punched
  /// (random ports per destination, no port mapping); and no sooner than
  /// multi-socket probing takes to send its probes, when it applies
  /// (direct.punch.spray_time(), 3.1 s by default).
  duration relay_after = seconds(2);
  /// While relayed, a direct path is tried again after upgrade_first, then
  /// at doubling intervals up to upgrade_max; one that works replaces the
  /// circuit without losing or reordering messages.
  bool upgrade = true;
  duration upgrade_first = seconds(10);
  duration upgrade_max = seconds(600);
  duration exchange_timeout = seconds(20);  ///< for the peer's connection info
};

class service {
 public:
  using endpoint = boost::asio::ip::tcp::endpoint;

  service(boost::asio::any_io_executor ex, config cfg, identity id);
  /// Stops at once if stop() was not awaited: sockets close, no more events.
  ~service();
  service(service&&) noexcept;
  service& operator=(service&&) noexcept;
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  /// Starts the TCP listener (cfg.listen_address : cfg.tcp_acceptor_port, a
  /// random port for 0) and the accept loop, and loads the bootstrap cache
  /// (cfg.bootstrap_cache_path; a corrupt or foreign file is logged, kept
  /// aside as FILE.bad and replaced), and, when cfg.enable_lan_discovery,
  /// the LAN beacon responder on UDP 0.0.0.0:cfg.service_discovery_port
  /// (ListenerStarted "udp beacon ..."; if the port cannot be had,
  /// ListenerFailed and the node runs without it). Returns the bound endpoint.
  /// Emits ListenerStarted or ListenerFailed. Errors: the bind error,
  /// shutting_down after stop().
  boost::asio::awaitable<result<endpoint>> start();

  /// Closes the listener, sends every peer a close record after flushing
  /// what is queued, waits for them up to `grace`, then closes the rest.
  /// Pending next_event() calls return shutting_down. Safe to call twice.
  /// Never fails. Meant to be awaited to its end: cancelled, it may leave
  /// connections and port mappings behind (the destructor closes sockets).
  boost::asio::awaitable<void> stop(duration grace = seconds(2));

  /// Dials `to`, runs Noise XK against `key`, says hello (our role) and waits
  /// for the peer to admit us. If a connection to that peer exists (or the
  /// simultaneous-dial rule keeps the peer's own dial), returns that one.
  /// Errors: timed_out (cfg.connect_timeout / handshake_timeout),
  /// connection_refused and other socket errors, handshake_failed,
  /// handshake_rejected, wrong_peer_key, bad_signature, not_allowed (the peer
  /// refused us), blacklisted (we refuse it), shutting_down, cancelled.
  /// Emits ConnectSuccess or ConnectFailure. A peer reached this way is
  /// recorded in the bootstrap cache (unless it is a hard-coded contact).
  boost::asio::awaitable<result<peer_info>> connect(endpoint to, peer_key key);
  /// An address-only dial (Noise XX): whoever answers at `to` and proves an
  /// id. Same results as above.
  boost::asio::awaitable<result<peer_info>> connect(endpoint to);
  /// The same over a chosen transport: transport::kind::utp dials µTP to the
  /// peer's UDP endpoint (its local_udp_endpoint()); the secure channel is
  /// the same. peer_info::transport says which one a connection uses. Same
  /// results as above, and also operation_not_supported when µTP is off
  /// (cfg.enable_utp). Peers reached
  /// over µTP are not put in the bootstrap cache, which holds TCP endpoints.
  boost::asio::awaitable<result<peer_info>> connect(endpoint to, std::optional<peer_key> key,
                                                    transport::kind via);

  /// Connects to the peer whose connection info is `theirs`, with ours
  /// (`mine`, from prepare_connection_info). The peer must be doing the
  /// same with the two swapped at about the same time, as infos are
  /// exchanged out of band. Raced (first_success, 50 ms apart): a UDP punch
  /// (nat/punch.hpp) on the node's socket, after which the side with the
  /// larger id dials µTP over the punched path and the other waits for it,
  /// and a TCP dial to each of the peer's TCP candidates. The first
  /// admitted connection wins; if two succeed, the simultaneous-dial rule
  /// keeps one, the same at both ends. Errors: wrong_peer_key (`mine` is
  /// not ours, or `theirs` is), blacklisted, no_contacts (nothing to try),
  /// all_attempts_failed or the last attempt's error, shutting_down,
  /// cancelled. TCP simultaneous open and multi-socket probing join the race
  /// as rendezvous_options say; connect_through adds the relay.
  boost::asio::awaitable<result<peer_info>> connect(const nat::private_connection_info& mine,
                                                    const nat::connection_info& theirs,
                                                    rendezvous_options o = {});

  /// Connects to `target` through `via`, a peer both are connected to
  /// (Crust's rendezvous through a mutual peer, as libp2p's DCUtR): our
  /// connection info goes to the target through `via`, its info comes
  /// back, and both start punching after half the measured round trip
  /// (connect(mine, theirs) on both sides). If no direct connection is
  /// admitted within o.relay_after, a circuit through `via` is raced
  /// against it: the relay passes ciphertext of our own Noise session
  /// with the target, under the relay's quotas. While relayed, a direct
  /// path keeps being tried and replaces the circuit. peer_info::path says
  /// which path won (punched, mapped, direct, relayed) and connect_time
  /// how long it took. The target takes part on its own (it needs no
  /// call); `via` must run Crust with enable_relay. Errors: not_connected
  /// (not connected to `via`, or `via` not to the target), not_allowed
  /// (`via` does not relay, or the target refused), quota_exceeded,
  /// timed_out, blacklisted, wrong_peer_key (the target's info is another
  /// peer's, or target is us), those of connect(mine, theirs), shutting_down,
  /// cancelled.
  boost::asio::awaitable<result<peer_info>> connect_through(public_id via, public_id target,
                                                            introduction_options o = {});

  /// Finds the network: races the bootstrap cache (most recent first) and
  /// the hard-coded contacts (shuffled), interleaved, and, first of all when
  /// cfg.enable_lan_discovery, the peers that answer a LAN beacon within
  /// cfg.lan_discovery_window; at most
  /// cfg.bootstrap_concurrency dials at once, one started every
  /// cfg.bootstrap_stagger (or as soon as one fails), skipping blacklisted
  /// ones, within cfg.bootstrap_timeout. The first peer that admits us wins;
  /// other dials are cancelled and their connections closed (connections
  /// that existed before are kept). Emits BootstrapConnect or
  /// BootstrapFailed. Errors: no_contacts, timed_out, all_attempts_failed,
  /// shutting_down, cancelled.
  boost::asio::awaitable<result<peer_info>> bootstrap();

  /// Broadcasts a LAN beacon request (to every interface's IPv4 broadcast
  /// address, loopback's included, on cfg.service_discovery_port) and
  /// returns the verified answers of our network that arrive within
  /// `window`: each a peer key and where it listens. Never fails: a socket
  /// error is logged and gives an empty list. Honours cancellation.
  boost::asio::awaitable<std::vector<bootstrap::beacon_contact>> discover_lan(
      duration window = milliseconds(500));

  /// Refuses these peers and addresses from now on: their connections (and
  /// handshakes in progress) close with reason not_allowed and no LostPeer,
  /// inbound ones are refused (addresses before any cryptography), and
  /// connect() to them fails with blacklisted. They leave the cache.
  void blacklist(const blacklist_entries& entries);
  void blacklist(const public_id& peer) { blacklist(blacklist_entries{{peer}, {}}); }
  void blacklist(const boost::asio::ip::address& a) { blacklist(blacklist_entries{{}, {a}}); }
  void unblacklist(const blacklist_entries& entries);
  bool is_blacklisted(const public_id& peer) const;
  bool is_blacklisted(const boost::asio::ip::address& a) const;

  /// Whether peers that dial us to bootstrap are admitted (cfg.accept_bootstrap).
  /// Takes effect for the next hello; connections already admitted stay.
  void set_accept_bootstrap(bool accept);

  /// Applies a new config to the running node. Live: the whitelists (inbound
  /// peers no longer allowed are closed and reported as LostPeer with
  /// not_allowed), accept_bootstrap, hard_coded_contacts and the bootstrap_*
  /// tuning. Returns the keys that changed but need a restart (ports,
  /// network name, limits of existing connections), which are not applied.
  std::vector<std::string> reload(const config& next);
  /// Re-reads `path` whenever it changes (checked every `interval`) and
  /// reload()s it. A file that fails to parse is logged and ignored: the
  /// running config stays. Stops with the service.
  void watch_config_file(std::filesystem::path path, duration interval = seconds(1));

  /// What the bootstrap cache holds, most recent first.
  std::vector<bootstrap::cache_entry> cached_peers() const;

  /// What contact gossip (cfg.enable_gossip, bootstrap/gossip.hpp) has
  /// taught this node: each record with the peer that taught it and
  /// whether it was dialled back (only those are passed on). Empty when
  /// gossip is off, before start() and after stop().
  std::vector<bootstrap::gossip_entry> known_peers() const;
  /// Up to `count` dialled-back records, chosen at random: a sample of the
  /// network as this node knows it.
  std::vector<bootstrap::contact_record> sample_peers(std::size_t count);
  /// Looks up the records nearest `target` by XOR distance (Kademlia's
  /// iterative lookup over gossip): what this node knows, then what the
  /// nearest connected or known nodes answer, three at a time, dialling
  /// (connect(endpoint, key)) at most 8 nodes it is not connected to, until
  /// `target`'s own record is found or no one nearer is left. Each answer's
  /// records are checked (signature, network, age) before use. Returns up
  /// to `count` records, nearest first (the target's own first when
  /// found). Errors: operation_not_supported (gossip is off), not_connected
  /// (not started), shutting_down, cancelled.
  boost::asio::awaitable<result<std::vector<bootstrap::contact_record>>> find_peers_near(
      public_id target, std::size_t count = 8);
  /// Connects to the peer named `target`: the existing connection if there
  /// is one, else its record (the one this node holds, or from
  /// find_peers_near), dialled at its TCP endpoints with its key. When a
  /// record held fails at every endpoint, a lookup asks for a newer one (a
  /// peer that rotated its port) and dials that. Errors: not_found (no one
  /// asked knows it), those of find_peers_near and of connect(endpoint, key).
  boost::asio::awaitable<result<peer_info>> connect(public_id target);

  /// Moves the TCP listener to a new random port now, as
  /// cfg.port_rotation_interval does on its schedule. The new port is
  /// advertised at once (every connected gossip partner is sent our new
  /// record; connection infos, beacon answers and the hello of new
  /// connections name it) and mapped on the gateway when port mapping is
  /// on (this waits up to 5 s for the mapping's first answer). The old
  /// port keeps accepting for cfg.port_rotation_grace, then closes
  /// (ListenerStopped) and its mapping is deleted. Connections already
  /// made are not touched; the UDP socket keeps its port. Returns the new
  /// endpoint. Errors: not_connected (not started), shutting_down, and
  /// those of opening a socket (the old listener then stays). Cancelling
  /// it while it waits for the mapping leaves the rotation done.
  boost::asio::awaitable<result<endpoint>> rotate_port();

  /// Queues a message for `peer`; returns at once. Errors: not_connected,
  /// message_too_large (over cfg.max_message_size; the connection is
  /// unaffected). Under back-pressure lower priorities are dropped and a
  /// MessagesDropped event says so.
  result<void> send(const public_id& peer, bytes payload, send_options opts = {});
  /// Waits until everything queued for `peer` so far has been written to the
  /// socket. Errors: not_connected (also if it ends first), cancelled.
  boost::asio::awaitable<result<void>> flush(const public_id& peer);
  /// Flushes and closes the connection to `peer`; no LostPeer follows.
  void disconnect(const public_id& peer);

  /// The next event, in order. Errors: shutting_down after stop(), cancelled.
  boost::asio::awaitable<result<event>> next_event();

  std::vector<peer_info> peers() const;
  std::optional<peer_stats> stats(const public_id& peer) const;
  std::optional<endpoint> local_endpoint() const;
  /// The node's UDP socket (µTP), once started with cfg.enable_utp.
  std::optional<endpoint> local_udp_endpoint() const;
  /// Where the node's UDP socket appears to `server` (any RFC 8489 STUN
  /// server; every Crust node is one unless enable_stun_server is off): one
  /// Binding transaction from that socket. Errors: not_connected (no UDP
  /// socket: not started, or enable_utp off), and those of
  /// nat::stun_agent::binding.
  boost::asio::awaitable<result<nat::binding_result>> reflexive_address(
      boost::asio::ip::udp::endpoint server, nat::stun::retransmission r = {});
  /// The port mappings the gateway granted for the TCP listener and the UDP
  /// socket (cfg.enable_port_mapping; PortMapping events say what changed,
  /// and why none was granted). Empty before start() and after stop(),
  /// which deletes them on the gateway.
  std::vector<nat::port_mapping> port_mappings() const;
  /// Where miniupnpc's blocking calls run (SSDP, HTTP to the gateway): by
  /// default a pool of cfg.port_mapping_threads threads the service makes
  /// at its first UPnP call, and none if it never speaks UPnP. Call before
  /// start() to use the application's pool instead (it must outlive the
  /// service); the library then starts no thread at all.
  void set_blocking_pool(boost::asio::thread_pool& pool);
  /// The NAT in front of the node's UDP socket, from what `o.observers` see
  /// (nat/discover.hpp says what is tested). Never fails: a node without a
  /// UDP socket gets a report whose every behaviour is unknown, with a note.
  boost::asio::awaitable<nat::nat_report> discover_nat(nat::discover_options o);
  /// Where this node can be reached, signed, for a peer that wants to
  /// connect through NATs (nat/connection_info.hpp): host candidates for
  /// the TCP listener and the UDP socket (every up interface's addresses
  /// for a wildcard listener, loopback only when there is nothing else);
  /// the UDP socket's reflexive endpoints from `o`'s STUN servers, the
  /// config's and connected peers (discovery's external endpoints, less
  /// those equal to a host one); the TCP listener's reflexive endpoints,
  /// by STUN over TCP from its own port (o.tcp_stun_servers and peers
  /// whose listeners we dialled); and the external endpoints of the port
  /// mappings held (waiting at most 2 s after discovery for the gateway's
  /// first answer after start). Without a server there is no reflexive
  /// candidate, and the event's notes say so. Each call makes a new info
  /// (punch key, nonce). Emits ConnectionInfoPrepared. Errors:
  /// not_connected (not started), shutting_down, cancelled.
  boost::asio::awaitable<result<nat::private_connection_info>> prepare_connection_info(
      prepare_options o = {});
  const identity& id() const;
  const config& cfg() const;

  /// A snapshot for monitoring: identity, listeners, the last NAT report,
  /// port mappings, every registered peer with its counters, round trip
  /// and uptime, and node_metrics (crust/status.hpp). Cheap: no I/O.
  node_status status() const;

  /// Watches a service without keeping it alive or dangling after it:
  /// status() is empty once the service is destroyed. What the status
  /// server holds (crust/status_server.hpp); copyable.
 private:
  class impl;

 public:
  class watcher {
   public:
    std::optional<node_status> status() const;

   private:
    friend class service;
    std::weak_ptr<const impl> impl_;
  };
  watcher watch() const;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace crust
