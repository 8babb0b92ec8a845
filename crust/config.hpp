/// \file
/// The node configuration (JSON). Unknown keys and wrong types are errors that
/// name the key and the file, so a typo never silently becomes a default.
#pragma once

#include "crust/base/clock.hpp"
#include "crust/base/error.hpp"
#include "crust/secure/identity.hpp"
#include "crust/secure/message.hpp"

#include <boost/asio/ip/address.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace crust {

struct contact {
  std::string endpoint;         ///< "ip:port" or "[v6]:port"
  std::optional<peer_key> key;  ///< absent: an address-only dial (Noise XX)
};

struct config {
  std::vector<contact> hard_coded_contacts;
  std::string listen_address = "0.0.0.0";   // TCP listener address
  std::uint16_t tcp_acceptor_port = 0;      ///< 0: a random port
  std::string network_name = "crust";       // peers of another network fail the handshake
  std::size_t max_message_size = 2u << 20;  ///< 2 MiB, enforced on both sides
  std::size_t send_queue_bytes = 8u << 20;  ///< per connection; beyond it low priority drops
  std::size_t event_queue_messages = 4096;  ///< undelivered NewMessage events before readers wait
  std::size_t event_queue_bytes = 64u
                                  << 20;  ///< ... or their payload bytes, for all peers together
  /// Unread events other than messages kept at most; beyond, the oldest
  /// of them is dropped (and counted in the events_dropped metric).
  std::size_t event_queue_other = 65536;
  /// Connections at once, counting inbound handshakes in progress; beyond,
  /// a new inbound connection is closed before any cryptography. Our own
  /// dials are not refused. With send_queue_bytes and the event queue's
  /// bounds, this bounds what peers can make the node hold.
  std::size_t max_connections = 1024;
  std::size_t max_pending_handshakes = 256;  ///< in progress at once; beyond, the oldest is closed
  /// Failed inbound handshakes per second one source (an IPv4 address, an
  /// IPv6 /64) may have, burst twice that; beyond, its new connections are
  /// closed before any cryptography until the rate falls back. A source
  /// whose handshakes succeed is never limited. 0: no limit.
  unsigned handshakes_per_source = 20;
  duration heartbeat_interval = seconds(5);
  duration heartbeat_timeout = seconds(20);  ///< LostPeer after this much silence
  duration handshake_timeout = seconds(10);
  duration connect_timeout = seconds(10);  ///< TCP connect, before the handshake
  bool accept_address_only = true;         ///< answer Noise XX dials from peers without our key
  /// XX dials answered per second in all (burst twice that): each costs a
  /// key pair, two DHs and a signature for a message anyone can send. Beyond
  /// it a first message that is not XK costs one DH and fails; 0: no limit.
  unsigned address_only_per_second = 20;

  /// --- bootstrap and admission (bootstrap/, DESIGN.md §6) ---
  node_role role = node_role::node;  ///< what we tell peers we dial
  bool accept_bootstrap = true;      ///< admit peers that bootstrap off us
  /// Before admitting a *node* that bootstraps off us, dial it back at the
  /// address it came from and the port its hello names, and refuse it if
  /// that fails (Crust's external-reachability check). Off by default: on a
  /// LAN, or behind a NAT without a mapping, it refuses peers that work.
  bool external_reachability_check = false;
  bool enable_utp = true;          ///< listen and dial over µTP too
  std::uint16_t udp_port = 0;      ///< the node's UDP socket (µTP); 0: random
  bool enable_stun_server = true;  ///< answer STUN Binding requests on it
  /// Over UDP, STUN answers are never larger than the request (a forged
  /// source gets no amplification), so a bare 20-byte request gets none.
  /// Set this to answer such clients (64 holds an IPv4 or IPv6 address)
  /// with up to this many bytes, whatever the request's size.
  std::size_t stun_answer_floor = 0;
  bool enable_lan_discovery = true;                   ///< answer and send LAN beacons
  std::uint16_t service_discovery_port = 5484;        ///< the LAN beacon's UDP port
  duration lan_discovery_window = milliseconds(500);  ///< how long bootstrap listens for answers
  /// Port mapping on the gateway for the TCP listener and the UDP socket
  /// (nat/port_mapper.hpp): tried in this order, renewed, removed at stop.
  /// Nothing is asked for a node that listens on loopback.
  bool enable_port_mapping = true;
  std::vector<std::string> port_mapping_methods{"pcp", "natpmp", "upnp"};
  std::optional<boost::asio::ip::address> port_mapping_gateway;  ///< absent: the default route's
  duration port_mapping_lifetime = seconds(3600);                ///< asked for; renewed at half
  /// miniupnpc blocks (SSDP, HTTP): its calls run on a pool of this many
  /// threads, made at the first UPnP call, unless the application gives
  /// one of its own (service::set_blocking_pool).
  std::size_t port_mapping_threads = 1;
  /// STUN servers ("ip:port"; any RFC 8489 server, or Crust nodes) that
  /// prepare_connection_info asks besides connected peers.
  std::vector<std::string> stun_servers;
  /// Serving as the mutual peer of two others (nat/relay.hpp): passing
  /// their introductions on, and relaying circuits between them, within
  /// these limits. Live.
  bool enable_relay = true;
  std::size_t relay_max_circuits = 64;               ///< open at once
  std::size_t relay_circuits_per_peer = 8;           ///< opened by, or to, one peer
  std::uint64_t relay_circuit_bytes = 256ull << 20;  ///< both ways, over a circuit's life
  /// Contact gossip (bootstrap/gossip.hpp): connected nodes exchange signed
  /// records of where they listen, every gossip_interval, so a node learns
  /// of peers several hops away; what they teach is dialled back (a TCP
  /// connect and a Noise handshake, then closed) before it is passed on or
  /// put in the bootstrap cache. find_peer() and connect(id) look peers up
  /// through it.
  bool enable_gossip = true;
  duration gossip_interval = seconds(30);
  std::size_t gossip_max_records = 512;      ///< records kept
  std::size_t gossip_per_source = 32;        ///< records kept that one peer taught
  unsigned gossip_messages_per_minute = 30;  ///< from one peer; more are dropped
  std::size_t gossip_fanout = 3;             ///< peers pushed to per round
  std::size_t gossip_dial_backs = 8;         ///< records dialled back per round
  /// Port rotation (off by default): every port_rotation_interval (give or
  /// take a fifth, at random) the node opens a new TCP listener on a random
  /// port, advertises it (gossip, connection infos, beacon answers, port
  /// mappings), keeps the old one accepting for port_rotation_grace, then
  /// closes it and deletes its mapping. Connections already made are not
  /// touched. The UDP socket (µTP, STUN, punching) keeps its port.
  duration port_rotation_interval{0};           ///< 0: never; else at least 1 s
  duration port_rotation_grace = seconds(120);  ///< an old port accepts this long
  std::size_t port_rotation_max_retiring = 4;   ///< old ports open at once; more close early
  std::string bootstrap_cache_path;             ///< "": the cache lives in memory only
  std::size_t bootstrap_cache_size = 200;
  std::size_t bootstrap_cache_per_group = 8;       ///< entries per IPv4 /16 or IPv6 /32
  std::size_t bootstrap_cache_per_source = 16;     ///< entries one informant may add
  duration bootstrap_cache_ttl = hours(24 * 7);    ///< then re-validated before use or drop
  duration bootstrap_timeout = seconds(30);        ///< the whole bootstrap race
  std::size_t bootstrap_concurrency = 4;           ///< dials in flight at once
  duration bootstrap_stagger = milliseconds(250);  ///< between starts of dials
  /// Who may connect to us. Absent: anyone. Present (even empty): only these
  /// addresses, nodes and clients separately. Editable on a running node
  /// (service::reload).
  std::optional<std::vector<boost::asio::ip::address>> whitelisted_node_ips;
  std::optional<std::vector<boost::asio::ip::address>> whitelisted_client_ips;

  struct error {
    error_code code;
    std::string message;  ///< names the key and where it is
  };

  /// Parses `text`; `source` names it in messages ("crust.json").
  static boost::system::result<config, error> parse(std::string_view text,
                                                    std::string_view source = "config");
  static boost::system::result<config, error> load(const std::filesystem::path& path);
  /// The config as JSON, with every key (so `crust-node config` can print defaults).
  std::string to_json() const;
  /// The JSON keys whose values differ between this and `other`.
  std::vector<std::string> changed_keys(const config& other) const;
};

[[noreturn]] void throw_exception_from_error(const config::error& e,
                                             const boost::source_location& loc);

}  // namespace crust
