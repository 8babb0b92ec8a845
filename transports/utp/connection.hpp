// One µTP connection's decisions, without I/O: the handshake, sequence and
// acknowledgement bookkeeping, LEDBAT congestion control (RFC 6817 as BEP 29
// applies it), RTT/RTO, fast and SACK-driven retransmission, delayed ACKs,
// Nagle-style coalescing, keepalive, FIN and RESET, and the timeouts.
//
// The driver (the per-socket manager) feeds it decoded packets and the time,
// moves bytes in and out with write()/read(), and after every batch of
// input calls flush(now, send) to get the datagrams to put on the wire; it
// sleeps until next_deadline() and then calls on_timer(now) and flush()
// again. Nothing here reads a clock or touches a socket, so the tests drive
// it on a manual clock and drop, duplicate and reorder at will.
//
// Connection ids (BEP 29, as libutp does it): the initiator picks R, sends
// its SYN with id R and everything after with R + 1, and receives on R. The
// acceptor receives on R + 1 and sends with R. Sequence numbers: the SYN
// carries the initiator's first number S (the next DATA is S + 1); the
// acceptor answers with a STATE whose ack_nr is S and whose seq_nr is its
// own first number A, which its first DATA carries (STATE never consumes a
// number), so the initiator's ack_nr starts at A - 1.
#pragma once

#include "crust/base/bytes.hpp"
#include "crust/base/clock.hpp"
#include "transports/utp/packet.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>

namespace crust::utp {

struct settings {
  std::size_t packet_size = 1200;  // payload bytes per DATA packet: safe on any path
  // Path MTU search (RFC 8899's PLPMTUD with probes that carry no data):
  // the largest UDP payload it may try. Anything up to the base (a
  // packet_size packet with a full SACK) leaves packets at packet_size.
  // The manager sets it from the route's MTU. Only a peer that says it
  // answers probes (ours; not libutp) is probed.
  std::size_t max_datagram = 0;
  int probe_attempts = 3;  // lost probes of one size before it is taken as too big
  duration mtu_raise = std::chrono::minutes(10);  // a finished search runs again after this
  std::size_t recv_window = 1u << 20;             // bytes we buffer for the reader (advertised)
  std::size_t send_buffer = 1u << 20;             // bytes write() takes beyond what is unacked
  duration target_delay = milliseconds(100);      // LEDBAT's target queueing delay
  std::size_t gain_per_rtt = 3000;                // most the window grows in one RTT (BEP 29)
  std::size_t min_window = 2;                     // packets; the window never shrinks below
  duration initial_rto = seconds(1);
  duration min_rto = milliseconds(500);
  duration max_rto = seconds(16);
  duration delayed_ack = milliseconds(10);  // an ACK for a lone in-order packet waits this long
  // A short packet goes at once even while data is in flight (TCP_NODELAY),
  // for a writer that batches by itself, as the secure channel does: with
  // Nagle, its hello waited a round trip behind the handshake's last message.
  bool no_delay = false;
  duration keepalive = seconds(25);     // send something this often: NAT UDP mappings last ~30 s
  duration idle_timeout = seconds(60);  // nothing heard for this long: timed out
  int max_syn_sends = 4;                // the SYN is sent this often (1 s, 2 s, 4 s apart)
  // An acceptor whose peer has not yet shown it received our answer to its
  // SYN (see connection::verified) gives up after this long without a SYN.
  duration half_open_timeout = seconds(5);
  int max_timeouts = 7;  // consecutive RTO expiries before giving up
};

enum class conn_state : std::uint8_t {
  syn_sent,   // initiator, waiting for the STATE that answers the SYN
  connected,  // data flows both ways
  closed,     // both FINs sent and acknowledged: finished cleanly
  reset,      // the peer reset, or we did (reset())
  timed_out,  // connect, idle or retransmission timeout
};
const char* to_string(conn_state s) noexcept;

// What flush() hands the driver for each datagram.
using send_fn = std::function<void(byte_span datagram)>;

class connection {
 public:
  // The initiator: `recv_id` is ours to receive on (the SYN carries it),
  // `isn` our first sequence number. The SYN goes out at the first flush().
  static connection dial(std::uint16_t recv_id, std::uint16_t isn, time_point now, settings s = {});
  // The acceptor, from a SYN the driver received: answers at the first flush().
  static connection accept(const packet& syn, std::uint16_t isn, time_point now, settings s = {});

  // Feeds one packet addressed to this connection (the driver matched the
  // connection id and the remote endpoint).
  void on_packet(const packet& p, time_point now);
  // Runs the timers that are due: retransmission, delayed ACK, keepalive,
  // idle and connect timeouts.
  void on_timer(time_point now);
  // Puts every datagram due now on the wire through `send`; MTU probes,
  // which must not be fragmented, through `send_probe` (or `send` if empty).
  void flush(time_point now, const send_fn& send, const send_fn& send_probe = {});
  // When on_timer() next has something to do; time_point::max() for never.
  time_point next_deadline() const;

  // Queues bytes to send; takes at most writable() bytes (0 after close()
  // or once the connection has ended).
  std::size_t write(byte_span data);
  std::size_t writable() const;
  // Takes in-order received bytes; readable() says how many there are.
  std::size_t read(mutable_byte_span out);
  std::size_t readable() const { return rbuf_.size() - rhead_; }
  // The peer sent FIN and every byte before it has been read.
  bool at_eof() const;
  // Everything written so far has been acknowledged.
  bool all_acked() const { return sbuf_.size() == shead_ && inflight_.empty(); }

  // Graceful: a FIN follows the queued bytes; reading goes on until the
  // peer's FIN. Ends as closed once both FINs are acknowledged.
  void close();
  // Abortive: a RESET goes out at the next flush(); ends as reset.
  void reset();

  conn_state state() const { return state_; }
  bool finished() const {
    return state_ == conn_state::closed || state_ == conn_state::reset ||
           state_ == conn_state::timed_out;
  }
  // An acceptor is verified once a packet from the peer acknowledges our
  // answer to its SYN, whose sequence number is random: the peer then
  // receives at the address it claims, as TCP's third segment shows. Until
  // then nothing it sends is taken (a packet that acknowledges anything
  // else ends the connection), we send it nothing but that answer (no
  // MTU probes, no keepalives), and the driver should not hand the
  // connection to the application. An initiator is always verified.
  bool verified() const { return verified_; }
  std::uint16_t recv_id() const { return recv_id_; }
  std::uint16_t send_id() const { return send_id_; }

  // Figures for tests, logs and benchmarks.
  struct figures {
    std::size_t max_window = 0;   // congestion window, bytes
    std::size_t in_flight = 0;    // bytes sent and not yet acknowledged
    std::size_t peer_window = 0;  // what the peer last advertised
    duration rtt{}, rto{};
    std::int64_t queue_delay_us = 0;  // our packets' delay above the base, as the peer measures it
    std::uint64_t packets_sent = 0, packets_resent = 0, packets_received = 0;
    std::uint64_t fast_retransmits = 0, timeouts = 0, duplicates_received = 0, tail_probes = 0;
    std::uint64_t spurious_retransmits = 0;
    std::uint64_t unverified_dropped = 0;  // acceptor: a packet that did not acknowledge our answer
    bool slow_start = true;
    // Where the sequence spaces stand: our next number and oldest
    // unacknowledged one, packets kept for retransmission (SACKed ones
    // included) and of those declared lost; the peer's last in-order
    // number and the out-of-order packets held from it.
    std::uint16_t next_seq = 0, oldest_unacked = 0, ack_nr = 0;
    std::size_t packets_kept = 0, packets_to_resend = 0, out_of_order = 0;
    // The path MTU search: the largest datagram known to pass, the payload
    // that new packets may carry, probes sent and lost, and how often
    // persistent loss at a raised size sent us back to the base.
    std::size_t mtu = 0, max_payload = 0;
    std::uint64_t probes_sent = 0, probes_lost = 0, mtu_black_holes = 0;
  };
  figures stats() const;
  // The bookkeeping agrees with itself: the window and byte counts match
  // what is in flight, in sequence order. For tests and the fuzzer; a
  // false here is a bug.
  bool consistent() const;

 private:
  connection(settings s, time_point now);

  struct outgoing {
    std::uint16_t seq = 0;
    packet_type type = packet_type::data;
    bytes payload;
    time_point sent{};
    int transmissions = 0;
    bool acked = false;        // selectively acknowledged (kept until the front is)
    bool need_resend = false;  // declared lost; goes out before new data
  };

  std::uint32_t micros(time_point now) const;
  std::uint32_t advertised_window() const;
  void ack_up_to(std::uint16_t ack_nr, time_point now, std::size_t& acked_bytes,
                 std::optional<duration>& rtt_sample);
  void apply_sack(const packet& p, std::size_t& acked_bytes, time_point now);
  void detect_losses(time_point now);
  void on_acked(std::size_t acked_bytes, std::uint32_t delay_sample, bool window_was_full,
                time_point now);
  void on_loss(std::uint16_t seq);
  void update_rtt(duration sample);
  void receive_data(const packet& p, time_point now);
  void deliver_in_order();
  bytes sack_mask() const;
  struct emit_extras {
    std::optional<std::uint32_t> probe;  // an MTU probe with this id
    std::size_t pad_to = 0;              // the probe's datagram size
    bool announce = false;               // say that we answer probes
  };
  static emit_extras announcing() {
    emit_extras x;
    x.announce = true;
    return x;
  }
  void emit(packet_type type, std::uint16_t seq, byte_span payload, time_point now,
            const send_fn& send, const emit_extras& x);
  void emit(packet_type type, std::uint16_t seq, byte_span payload, time_point now,
            const send_fn& send) {
    emit(type, seq, payload, now, send, {});
  }
  // Payload for the next new packet: the search's result, at most a
  // quarter of the window (so loss detection by counting still has
  // packets to count, and a small peer window is not stuck behind one
  // packet too large for it), never below packet_size.
  std::size_t next_payload() const;
  std::size_t base_datagram() const;
  std::size_t next_probe_size() const;
  void maybe_probe(time_point now, const send_fn& send);
  void on_probe_echo(std::uint32_t id, time_point now);
  void on_probe_timeout(time_point now);
  void after_probe(time_point now);
  bool probe_wanted() const;
  bool can_send(std::size_t size) const;
  // A new packet's number stays within what the peer keeps and SACKs.
  bool within_reorder_reach() const;
  void queue_fin_if_due();
  void end(conn_state s);
  void check_closed();

  settings cfg_;
  conn_state state_ = conn_state::syn_sent;
  bool initiator_ = false;
  bool verified_ = true;   // false for an acceptor until the peer acknowledges our answer
  std::uint16_t isn_ = 0;  // our first sequence number
  // Initiator: our acknowledgement of the answer is repeated (at most
  // twice, an RTO apart) while we send nothing that would carry it again,
  // so an acceptor whose copy was lost still gets verified.
  int answer_acks_ = 0;
  time_point answer_ack_at_ = time_point::max();
  time_point last_syn_{};  // acceptor: when the peer's SYN last came
  std::uint16_t recv_id_ = 0, send_id_ = 0;
  std::uint16_t seq_nr_ = 0;  // the next sequence number we assign
  std::uint16_t ack_nr_ = 0;  // the last in-order sequence number received
  time_point epoch_;          // timestamps count microseconds from here

  // Sending.
  bytes sbuf_;
  std::size_t shead_ = 0;           // bytes of sbuf_ already packetised
  std::deque<outgoing> inflight_;   // unacknowledged packets, by seq
  std::size_t cur_window_ = 0;      // bytes in inflight_ neither acked nor awaiting resend
  std::size_t inflight_bytes_ = 0;  // payload bytes in inflight_, whatever their state
  std::size_t max_window_ = 0;
  std::size_t ssthresh_ = SIZE_MAX;  // slow start ends here, or at half the target delay
  std::size_t peer_window_ = 0;
  bool slow_start_ = true;
  bool zero_window_probe_ = false;               // the RTO allows one packet into a zero window
  std::optional<std::uint16_t> recovery_until_;  // losses before this seq halve only once
  int dup_acks_ = 0;
  bool closing_ = false;     // close() called: FIN after the queue
  bool fin_queued_ = false;  // our FIN has a sequence number
  bool fin_acked_ = false;
  bool reset_pending_ = false;
  bool syn_due_ = false;      // initiator: (re)send the SYN at the next flush
  bool syn_ack_due_ = false;  // acceptor: answer the SYN at the next flush
  int syn_sends_ = 0;
  time_point syn_sent_at_{};

  // RTT, RTO and timers.
  duration rtt_{}, rtt_var_{};
  bool have_rtt_ = false;
  duration rto_;
  int consecutive_timeouts_ = 0;
  time_point rto_deadline_ = time_point::max();
  // Tail loss probe: two RTTs without progress resend the newest packet,
  // so a lost last packet does not wait for the (much longer) RTO.
  time_point tlp_deadline_ = time_point::max();
  bool tlp_fired_ = false;
  // RACK (RFC 8985), ACK-driven: the latest send time of any packet known
  // delivered. A packet sent before it and unacknowledged for more than an
  // RTT plus a reordering allowance is lost, retransmissions included.
  time_point rack_sent_{};
  std::optional<std::uint16_t> rack_seq_;  // that packet's number: the order within one send time
  bool sent_before_rack(const outgoing& e) const;
  time_point rack_deadline_ = time_point::max();  // the next packet RACK will find overdue
  // Reordering: once a packet is seen to arrive after one sent later,
  // counting rules (three SACKs, three duplicate ACKs) stop declaring
  // losses and only time does, with an allowance that grows each time a
  // retransmission proves spurious (its ACK comes back too soon to be for
  // it); a spurious loss also undoes its window cut.
  bool reordering_seen_ = false;
  int reorder_mult_ = 1;
  std::optional<std::uint16_t> highest_delivered_;
  std::size_t undo_window_ = 0;
  duration min_rtt_ = duration::max();
  void on_delivered(const outgoing& e, time_point now);
  void arm_tlp(time_point now);
  time_point ack_deadline_ = time_point::max();
  time_point last_sent_, last_received_;

  // LEDBAT delay history: minimum per minute over the last two minutes,
  // and the last few samples (the current-delay filter).
  std::uint32_t base_delay_ = 0;
  bool have_base_ = false;
  std::deque<std::pair<time_point, std::uint32_t>> base_history_;
  std::deque<std::uint32_t> recent_delays_;

  // Receiving.
  bytes rbuf_;
  std::size_t rhead_ = 0;
  std::map<std::uint16_t, bytes> ooo_;  // out of order (a FIN as an empty entry), by seq
  std::size_t ooo_bytes_ = 0;
  std::optional<std::uint16_t> eof_seq_;  // the peer's FIN
  int acks_owed_ = 0;                     // DATA packets not yet acknowledged
  bool ack_now_ = false;
  std::uint32_t reply_micro_ = 0;  // our receive time minus the peer's send time, last packet

  // The path MTU search. `confirmed` passed (the base is assumed to);
  // sizes above `ceiling` are known not to; a search is over when the two
  // are closer than its granularity, and runs again at `next_at`.
  struct mtu_search {
    std::size_t confirmed = 0, ceiling = 0;
    std::size_t probing = 0;  // the size of the probe in flight, 0 for none
    std::uint32_t id = 0;     // its id
    int failures = 0;         // probes of this size lost in a row
    bool try_ceiling = true;  // the first probe of a search tries the ceiling itself
    bool peer_answers = false;
    time_point deadline = time_point::max();  // the probe in flight is lost then
    time_point next_at{};                     // the next probe may go then
  } mtu_;
  std::optional<std::uint32_t> echo_due_;  // a probe's id, echoed on our next packet
  std::size_t max_payload_ = 0;            // what fits mtu_.confirmed with a full SACK

  bytes scratch_;  // the datagram being encoded
  figures stats_;  // the counters; stats() fills in the rest
};

}  // namespace crust::utp
