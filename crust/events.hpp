/// \file
/// Crust's events, delivered in order by service::next_event().
#pragma once

#include "crust/base/clock.hpp"
#include "crust/base/error.hpp"
#include "crust/secure/identity.hpp"
#include "crust/secure/message.hpp"
#include "transports/stream.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace crust {

/// How a connection reaches its peer.
enum class path_kind : std::uint8_t {
  direct,   ///< to an address the peer listens on (its host candidate, or a plain dial)
  punched,  ///< through NATs, by hole punching (UDP) or to a reflexive endpoint
  mapped,   ///< to a port mapping on the peer's gateway (UPnP-IGD, NAT-PMP, PCP)
  relayed,  ///< through a circuit at a mutual peer
};
const char* to_string(path_kind p) noexcept;

struct peer_info {
  public_id id;
  peer_key key;
  transport::kind transport = transport::kind::none;
  std::string remote;                ///< the peer's address as seen from here
  std::uint16_t udp_port = 0;        ///< the peer's UDP socket (STUN, µTP), if it said; 0: none
  bool inbound = false;              ///< the peer dialled us
  bool address_only = false;         ///< Noise XX (the dialler did not know the key)
  node_role role = node_role::node;  ///< the dialler's word; a peer we dialled is a node
  duration handshake_time{};         ///< from the first handshake byte to the keys
  path_kind path = path_kind::direct;
  /// For connections this end set up (connect, rendezvous, connect_through):
  /// from the call to the admitted connection. Zero for plain inbound ones.
  duration connect_time{};
  std::string connection_id;  ///< same on both ends: a prefix of the handshake hash
};

struct peer_stats {
  std::uint64_t messages_sent = 0, bytes_sent = 0;
  std::uint64_t messages_received = 0, bytes_received = 0;
  std::uint64_t messages_dropped = 0;
  /// The transport's smoothed round trip (TCP's from the kernel, µTP's
  /// own); none over a relay circuit or before a first sample.
  std::optional<duration> rtt;
};

namespace events {
/// A peer dialled us, completed the handshake and was admitted (for every
/// inbound connection, bootstrap or not: peer.role says what it is).
struct bootstrap_accept {
  peer_info peer;
};
/// bootstrap() reached a peer that admitted us.
struct bootstrap_connect {
  peer_info peer;
};
/// bootstrap() reached no one: `attempts` candidates tried, `error` is
/// no_contacts, timed_out or all_attempts_failed; `detail` says more.
struct bootstrap_failed {
  error_code error;
  std::size_t attempts = 0;
  std::string detail;
};
/// An outgoing connect() completed.
struct connect_success {
  peer_info peer;
};
struct connect_failure {
  std::string endpoint;
  std::optional<public_id> peer;
  error_code error;
  std::string detail;  ///< what a refusing peer said ("not whitelisted as a node"), or ""
};
struct listener_started {
  std::string endpoint;
};
struct listener_failed {
  std::string endpoint;
  error_code error;
};
/// A listener the node closed while running: a rotated-out port at the end
/// of its grace period (config::port_rotation_interval).
struct listener_stopped {
  std::string endpoint;
  std::string why;
};
/// A connected peer is gone: closed, reset, or silent past the heartbeat timeout.
struct lost_peer {
  public_id peer;
  error_code reason;
  std::string detail;
};
struct new_message {
  public_id peer;
  bytes payload;
  priority prio = priority::normal;
  /// Present for signed messages: verified on arrival, kept for later proof
  /// (verify_message_signature).
  std::optional<secure::signature64> signature;
};
/// A peer sent a message over our max_message_size: it was skipped.
struct message_too_large {
  public_id peer;
  std::uint64_t size = 0;
};
/// service::prepare_connection_info made an info: its nonce (hex), its
/// candidates ("udp reflexive 198.51.100.7:40000"), the NAT as far as it is
/// known, and what could not be learnt.
struct connection_info_prepared {
  std::string nonce;
  std::vector<std::string> candidates;
  std::string nat;
  std::vector<std::string> notes;
};
/// The gateway granted, renewed, refused or took back a port mapping for
/// the node's TCP listener or UDP socket (cfg.enable_port_mapping).
struct port_mapping_changed {
  enum class what : std::uint8_t {
    mapped,   ///< granted (also again after a loss)
    renewed,  ///< the lease was extended
    failed,   ///< the first attempt gave nothing: `notes` say what each method answered
    lost,     ///< a renewal failed; it is asked for again
  };
  what kind = what::mapped;
  std::string protocol;  ///< "tcp" or "udp"
  std::uint16_t internal_port = 0;
  std::string
      external;  ///< "198.51.100.7:40000" ("?:40000" if the gateway did not say); "" when failed
  std::string method;          ///< "pcp", "natpmp" or "upnp"; "" when failed
  std::uint32_t lifetime = 0;  ///< seconds granted; 0 for a permanent UPnP mapping
  std::vector<std::string> notes;
};
std::string_view to_string(port_mapping_changed::what w) noexcept;
/// Messages dropped from a send queue under back-pressure.
struct messages_dropped {
  public_id peer;
  std::size_t count = 0;
  std::uint64_t bytes = 0;
  priority lowest{};
};
}  // namespace events

using event = std::variant<events::new_message, events::bootstrap_accept, events::bootstrap_connect,
                           events::bootstrap_failed, events::connect_success,
                           events::connect_failure, events::listener_started,
                           events::listener_failed, events::lost_peer, events::message_too_large,
                           events::messages_dropped, events::connection_info_prepared,
                           events::port_mapping_changed, events::listener_stopped>;

/// A one-line human description, for logs and the CLI.
std::string describe(const event& e);

/// Checks a signed message's signature as a third party would.
bool verify_message_signature(const public_id& sender, const public_id& receiver, byte_span payload,
                              const secure::signature64& sig);

}  // namespace crust
