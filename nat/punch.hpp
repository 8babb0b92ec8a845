// UDP hole punching, without I/O: one node's side of a punch between its
// UDP socket and a peer's, decided from the two connection infos.
//
// Checks are STUN Binding requests, as ICE's connectivity checks are
// (RFC 8445 §7.2): USERNAME "<their nonce>:<our nonce>" (the first 8 bytes
// of each, in hex), MESSAGE-INTEGRITY-SHA256 keyed by the pair's punch
// secret (private_connection_info::punch_secret), FINGERPRINT. The answer
// is a Binding success with XOR-MAPPED-ADDRESS (where the check came
// from), the same integrity and FINGERPRINT; it is never larger than the
// check and goes only to checks that authenticated. So:
//
// - targets: the peer's UDP candidates in its order (host, reflexive,
//   mapped), and for a peer whose NAT allocates ports sequentially, the
//   next `predicted_ports` ports after its reflexive one, by its step;
// - every target is checked, one check per `pace`, each again every
//   `retransmit`, until `deadline`;
// - a check from the peer is answered, and where it came from is checked
//   at once (a triggered check): if it is not a target yet, it is the
//   peer's peer-reflexive endpoint, learnt and added first;
// - an answer to one of our checks, from the endpoint that check went to,
//   makes that endpoint the path: the punch has succeeded. Answers from
//   elsewhere, with an unknown transaction or a bad integrity, are ignored.
//
// Both sides succeed on the same pair of endpoints when one does (the
// answer travelled the same mappings), so the side with the larger id
// (controlling()) can dial µTP over it while the other waits.
//
// Multi-socket probing (the birthday approach), bounded: when one side's
// NAT gives every destination a new random port (its info's hint says a
// destination-dependent mapping with random allocation) and the other's
// mapping is endpoint-independent behind filtering, a plain punch cannot
// work: the hard side's mapping toward the easy side is a port nobody
// can guess. So the hard side checks the easy side's reflexive endpoint
// from `spray_sockets` extra sockets of its own (each a new mapping on its
// NAT, open to the easy side's endpoint), again every `spray_repeat`; the
// easy side checks random ports of the hard side's NAT address, one per
// `spray_pace`, `spray_probes` in all. A probe that lands on one of those
// mappings gets through; the hard side answers it from that socket and
// checks back, and the path is that socket and the easy side's endpoint.
// With 256 sockets and 3072 probes over 64 512 ports, the odds that every
// probe misses are (1 - 256/64512)^3072, about 5 in a million. The
// driver opens the extra sockets (extra_sockets()), says which one a
// datagram arrived on, and sends each datagram from the socket it names.
#pragma once

#include "crust/base/clock.hpp"
#include "nat/connection_info.hpp"
#include "nat/stun.hpp"

#include <deque>
#include <optional>
#include <vector>

namespace crust::nat {

struct punch_config {
  duration pace = std::chrono::milliseconds(5);          // between two checks sent
  duration retransmit = std::chrono::milliseconds(100);  // one target re-checked this often
  duration deadline = std::chrono::seconds(5);           // from start: then failed
  unsigned predicted_ports = 8;  // for a sequential NAT: ports after the reflexive one
  std::size_t max_targets = 48;  // candidates, predictions and learnt endpoints together
  // Multi-socket probing (above); spray_sockets = 0 turns it off.
  unsigned spray_sockets = 256;
  unsigned spray_probes = 3072;
  duration spray_pace = std::chrono::milliseconds(1);
  duration spray_repeat = std::chrono::seconds(1);
  // A poll that comes late (a loaded event loop) catches up with at most
  // this many spray datagrams at once, so the rate the odds above assume
  // holds; debt beyond that is forgiven.
  unsigned spray_burst = 8;
  // How long the ports side takes to send every probe, at its pace.
  duration spray_time() const { return spray_pace * spray_probes; }
};

// Whether a NAT gives every destination a new random port with no port
// mapping to offer: nothing can guess where its checks come from.
bool hard_to_punch(const connection_info& info);
// Whether a punch between these two infos uses multi-socket probing (one
// side hard, the other endpoint-independent behind filtering). Both
// sides compute the same from the same two infos, in either order.
bool probing_between(const connection_info& a, const connection_info& b);

enum class punch_state { running, succeeded, failed };
// This side's part in multi-socket probing: none, checks from many
// sockets (our NAT is the hard one), or probes at many ports (theirs is).
enum class spray_role { none, sockets, ports };

class punch_session {
 public:
  struct datagram {
    udp_endpoint to;
    bytes data;
    unsigned socket = 0;  // 0: the node's socket; 1..extra_sockets(): the extra ones
  };
  struct target {
    udp_endpoint endpoint;
    enum class origin { candidate, predicted, learnt } from = origin::candidate;
    time_point next_check{};
    unsigned checks = 0;
    unsigned socket = 0;  // checked from this socket
  };

  // `local` is our socket's endpoint (an IPv4 one skips the peer's IPv6
  // candidates). Errors: crypto_failure (their punch key is unusable),
  // malformed (they have no UDP candidate this socket can reach).
  static result<punch_session> start(const private_connection_info& mine,
                                     const connection_info& theirs, const udp_endpoint& local,
                                     time_point now, punch_config cfg = {});

  // The checks due by `now` (at most one per `pace`). Moves to failed at
  // the deadline.
  std::vector<datagram> poll(time_point now);
  // When poll() next has something to do (the deadline at the latest);
  // time_point::max() once finished.
  time_point next_wakeup() const noexcept;

  // A STUN datagram that arrived from `from` on `socket`. Returns the
  // answer to send back to `from` from that socket when it is an
  // authenticated check from the peer; nullopt otherwise (an answer to our
  // check is consumed here too).
  std::optional<bytes> on_datagram(byte_span d, const udp_endpoint& from, time_point now,
                                   unsigned socket = 0);
  // Whether `d` is a check or an answer of this session (by USERNAME or
  // transaction id), without acting on it: for demultiplexing.
  bool claims(byte_span d) const;

  punch_state state() const noexcept { return state_; }
  // The peer's endpoint that answered, once succeeded, and which of our
  // sockets the path uses.
  const std::optional<udp_endpoint>& path() const noexcept { return path_; }
  unsigned path_socket() const noexcept { return path_socket_; }
  spray_role spray() const noexcept { return spray_; }
  // How many extra sockets the driver must open (sockets role), else 0.
  unsigned extra_sockets() const noexcept {
    return spray_ == spray_role::sockets ? cfg_.spray_sockets : 0;
  }
  std::size_t probes_sent() const noexcept { return probes_sent_; }
  // Where the peer saw us (the answer's XOR-MAPPED-ADDRESS), once succeeded.
  const std::optional<udp_endpoint>& seen_as() const noexcept { return seen_as_; }
  bool controlling() const noexcept { return controlling_; }
  const std::vector<target>& targets() const noexcept { return targets_; }
  std::size_t checks_sent() const noexcept { return sent_; }
  std::size_t checks_answered() const noexcept { return answered_; }
  duration elapsed(time_point now) const noexcept { return now - started_; }

 private:
  punch_session() = default;
  bool add_target(const udp_endpoint& ep, target::origin o, time_point when, bool first,
                  unsigned socket = 0);
  bytes check_to(const udp_endpoint& to, unsigned socket);
  void emit_spray(time_point now, std::vector<datagram>& out);

  punch_config cfg_;
  secure::key32 key_{};
  std::string our_username_;    // what the peer's checks carry: "<ours>:<theirs>"
  std::string their_username_;  // what ours carry: "<theirs>:<ours>"
  bool local_v4_ = false;
  bool controlling_ = false;
  time_point started_{}, deadline_{}, next_send_{};
  std::vector<target> targets_;
  struct pending {
    stun::transaction_id id;
    udp_endpoint to;
    unsigned socket = 0;
  };
  std::deque<pending> pending_;  // recent checks, bounded
  punch_state state_ = punch_state::running;
  std::optional<udp_endpoint> path_, seen_as_;
  unsigned path_socket_ = 0;
  std::size_t sent_ = 0, answered_ = 0;
  // Multi-socket probing.
  spray_role spray_ = spray_role::none;
  udp_endpoint spray_to_;  // sockets: the peer's reflexive endpoint; ports: its NAT's address
  time_point next_spray_{}, round_start_{};
  unsigned spray_cursor_ = 1;  // sockets: the next socket to check from
  std::size_t probes_sent_ = 0;
  std::vector<std::uint16_t> probe_ports_;  // ports: a shuffled order to probe in
};

}  // namespace crust::nat
