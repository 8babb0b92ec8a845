/// \file
/// What a running node can say about itself: counters since start
/// (node_metrics), and a snapshot of its identity, listeners, NAT, port
/// mappings and peers (node_status), with the two documents the status
/// server serves, built without any HTTP: the JSON of /status and the
/// Prometheus text of /metrics. An application with an HTTP server of its
/// own can serve them itself.
#pragma once

#include "crust/events.hpp"
#include "nat/behaviour.hpp"
#include "nat/port_mapper.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crust {

/// Counters since the service was made. Bytes and messages are the
/// secure channel's payload, over every connection, ended ones included.
struct node_metrics {
  std::uint64_t handshakes_ok = 0;      ///< Noise handshakes completed, both directions
  std::uint64_t handshakes_failed = 0;  ///< refused, timed out, tampered, wrong key ...
  /// Inbound connections closed unheard: their source is over its rate
  /// of failed handshakes (handshakes_per_source), or evicted when
  /// max_pending_handshakes were in progress.
  std::uint64_t handshakes_shed = 0;
  std::uint64_t connections_opened = 0;  ///< admitted and registered
  /// Inbound connections closed unheard because max_connections were open.
  std::uint64_t connections_refused = 0;
  /// Events other than messages dropped, oldest first, because the
  /// application left event_queue_other of them unread.
  std::uint64_t events_dropped = 0;
  std::uint64_t connections_lost = 0;  ///< LostPeer
  std::uint64_t messages_sent = 0, bytes_sent = 0;
  std::uint64_t messages_received = 0, bytes_received = 0;
  std::uint64_t messages_dropped = 0;     ///< by back-pressure, on our side
  std::uint64_t punch_attempts = 0;       ///< UDP punch sessions started
  std::uint64_t punch_successes = 0;      ///< ... that found a path
  std::uint64_t relayed_connections = 0;  ///< connections of ours over a relay circuit
  /// As the mutual peer of two others.
  std::uint64_t relay_circuits = 0;       ///< circuits joined for others
  std::uint64_t relay_bytes = 0;          ///< bytes passed on for them
  std::uint64_t relay_introductions = 0;  ///< introductions passed on
};

struct peer_status {
  peer_info info;
  peer_stats stats;
  duration uptime{};  ///< since the connection was registered
};

struct node_status {
  public_id id;
  peer_key key;
  std::string network;
  std::string version;  ///< the library's
  std::uint16_t protocol_version = 0;
  duration uptime{};
  std::optional<boost::asio::ip::tcp::endpoint> tcp;  ///< the listener advertised
  /// Rotated-out listeners still accepting until their grace period ends.
  std::vector<boost::asio::ip::tcp::endpoint> retiring_tcp;
  std::uint64_t port_rotations = 0;                   ///< since start
  std::optional<boost::asio::ip::tcp::endpoint> udp;  ///< the UDP socket (µTP, STUN)
  std::optional<nat::nat_report> nat;                 ///< the last NAT discovery's, if any ran
  std::vector<nat::port_mapping> port_mappings;
  std::vector<peer_status> peers;
  node_metrics metrics;
  /// What waits for the application's next_event(): messages, their
  /// payload bytes, and other events (bounded by event_queue_messages,
  /// event_queue_bytes and event_queue_other).
  std::size_t queued_messages = 0, queued_message_bytes = 0, queued_other_events = 0;
};

/// /status: the snapshot as one JSON object.
std::string status_json(const node_status& s);
/// /metrics: Prometheus text exposition format 0.0.4. Counters are
/// `crust_*_total`; connections open now are a gauge by transport and
/// path (`crust_connections{transport="utp",path="punched"} 1`).
std::string metrics_text(const node_status& s);
/// A NAT report as a JSON object (as /status has it under "nat").
std::string nat_report_json(const nat::nat_report& r);
/// /: a small page that fetches /status every second and shows the peers.
std::string_view status_page_html() noexcept;

}  // namespace crust
