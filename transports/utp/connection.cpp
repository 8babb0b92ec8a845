// The µTP connection state machine: see connection.hpp for the rules.
#include "transports/utp/connection.hpp"

#include <algorithm>
#include <cstring>

namespace crust::utp {

namespace {

constexpr auto minute = std::chrono::minutes(1);
constexpr std::size_t delay_filter = 3;  // the current delay: least of the last few samples
// Out-of-order packets are kept this far ahead of ack_nr at most: what a
// SACK of sack_bytes describes (bit i is ack_nr + 2 + i). The sender never
// runs further ahead of its oldest unacknowledged packet than this, so every
// packet that arrives is reported. That matters most when the oldest packet
// is lost again after its retransmission: only packets sent after it, and
// SACKed, can tell (RACK) before the backed-off RTO. 1024 packets is more
// than the default 1 MiB receive window holds.
constexpr std::size_t sack_bytes = 128;
constexpr std::uint16_t max_reorder_distance = 1 + sack_bytes * 8;
// What a DATA packet carries besides its payload, at most: the header, a
// full SACK and an MTU echo.
constexpr std::size_t data_overhead = header_size + 2 + sack_bytes + mtu_ext_size;
// The MTU search stops when the bounds are this close (RFC 8899 leaves the
// step to us; below this the gain is under 3 % of a 1200-byte packet).
constexpr std::size_t mtu_granularity = 32;

// a < b on the wrapping 32-bit microsecond clock.
bool wrap_less(std::uint32_t a, std::uint32_t b) {
  return static_cast<std::int32_t>(a - b) < 0;
}

}  // namespace

const char* to_string(conn_state s) noexcept {
  switch (s) {
    case conn_state::syn_sent:
      return "syn_sent";
    case conn_state::connected:
      return "connected";
    case conn_state::closed:
      return "closed";
    case conn_state::reset:
      return "reset";
    case conn_state::timed_out:
      return "timed_out";
  }
  return "unknown";
}

connection::connection(settings s, time_point now)
    : cfg_(s),
      epoch_(now),
      max_window_(std::max<std::size_t>(cfg_.min_window, 4) * (cfg_.packet_size + header_size)),
      rto_(cfg_.initial_rto),
      last_sent_(now),
      last_received_(now) {
  mtu_.confirmed = base_datagram();
  mtu_.ceiling = cfg_.max_datagram;
  mtu_.next_at = now;
  max_payload_ = cfg_.packet_size;
}

connection connection::dial(std::uint16_t recv_id, std::uint16_t isn, time_point now, settings s) {
  connection c(s, now);
  c.initiator_ = true;
  c.recv_id_ = recv_id;
  c.send_id_ = static_cast<std::uint16_t>(recv_id + 1);
  c.seq_nr_ = isn;
  c.isn_ = isn;
  c.state_ = conn_state::syn_sent;
  c.syn_due_ = true;
  return c;
}

connection connection::accept(const packet& syn, std::uint16_t isn, time_point now, settings s) {
  connection c(s, now);
  c.recv_id_ = static_cast<std::uint16_t>(syn.h.connection_id + 1);
  c.send_id_ = syn.h.connection_id;
  c.seq_nr_ = isn;
  c.isn_ = isn;
  c.verified_ = false;
  c.last_syn_ = now;
  c.ack_nr_ = syn.h.seq_nr;
  c.peer_window_ = syn.h.wnd_size;
  c.reply_micro_ = c.micros(now) - syn.h.timestamp_us;
  c.mtu_.peer_answers = syn.answers_probes;
  c.state_ = conn_state::connected;
  c.syn_ack_due_ = true;
  ++c.stats_.packets_received;
  return c;
}

std::uint32_t connection::micros(time_point now) const {
  return static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(now - epoch_).count());
}

std::uint32_t connection::advertised_window() const {
  const std::size_t held = readable() + ooo_bytes_;
  return static_cast<std::uint32_t>(held >= cfg_.recv_window ? 0 : cfg_.recv_window - held);
}

// --- input ---

void connection::on_packet(const packet& p, time_point now) {
  if (state_ == conn_state::closed) {
    // Our ACK of the peer's FIN may have been lost: say it again.
    if (p.h.type == packet_type::fin) ack_now_ = true;
    return;
  }
  if (finished()) return;
  if (!verified_ && p.h.type != packet_type::syn) {
    // Until the peer shows it received our answer (its number is random),
    // the source address may be forged: take nothing, and end on a wrong
    // guess, so a blind sender gets one guess per SYN.
    const auto before_ours = static_cast<std::uint16_t>(isn_ - 1);
    const auto sent = seq_distance(before_ours, static_cast<std::uint16_t>(seq_nr_ - 1));
    if (seq_distance(before_ours, p.h.ack_nr) > sent) {
      ++stats_.unverified_dropped;
      end(conn_state::reset);
      return;
    }
    verified_ = true;
  }
  last_received_ = now;
  ++stats_.packets_received;
  reply_micro_ = micros(now) - p.h.timestamp_us;
  if (reply_micro_ == 0) reply_micro_ = 1;  // 0 means "no sample" on the wire
  if (p.h.type == packet_type::reset) {
    end(conn_state::reset);
    return;
  }
  if (p.answers_probes) mtu_.peer_answers = true;
  if (p.mtu_echo) on_probe_echo(*p.mtu_echo, now);
  if (p.mtu_probe) {
    echo_due_ = *p.mtu_probe;  // answered at once, on whatever goes next
    ack_now_ = true;
  }
  if (p.h.type == packet_type::syn) {
    if (!initiator_) {
      syn_ack_due_ = true;  // our answer was lost: the SYN came again
      last_syn_ = now;
    }
    return;
  }
  if (state_ == conn_state::syn_sent) {
    // The answer to our SYN acknowledges its number; a DATA from an
    // acceptor whose STATE was lost does too.
    const auto syn_seq = static_cast<std::uint16_t>(seq_nr_ - 1);
    if (p.h.ack_nr != syn_seq) return;
    if (syn_sends_ == 1) update_rtt(now - syn_sent_at_);
    state_ = conn_state::connected;
    ack_nr_ = static_cast<std::uint16_t>(p.h.seq_nr - 1);
    rto_deadline_ = time_point::max();
    consecutive_timeouts_ = 0;
    if (p.h.type == packet_type::state) {
      peer_window_ = p.h.wnd_size;
      // Acknowledge the answer at once, as TCP's third segment: the
      // acceptor hands the connection on only once we have (verified()).
      // Costs nothing if data goes in the same flush, which carries it.
      ack_now_ = true;
      answer_acks_ = 1;
      answer_ack_at_ = now + rto_;
      return;
    }
  }
  // A window that reopens: whatever went out while it was shut was probably
  // dropped for it (a zero-window probe), so it goes again now rather than
  // at the next timeout.
  const bool reopened = peer_window_ < cfg_.packet_size + header_size &&
                        p.h.wnd_size >= cfg_.packet_size + header_size;
  peer_window_ = p.h.wnd_size;
  if (reopened) {
    for (auto& e : inflight_) {
      if (e.acked || e.need_resend) continue;
      e.need_resend = true;
      cur_window_ -= e.payload.size() + header_size;
    }
  }

  const bool window_was_full =
      cur_window_ + next_payload() + header_size > std::min(max_window_, peer_window_);
  std::size_t acked = 0;
  std::optional<duration> rtt;
  const bool had_inflight = !inflight_.empty();
  const std::uint16_t front_before = had_inflight ? inflight_.front().seq : seq_nr_;
  ack_up_to(p.h.ack_nr, now, acked, rtt);
  if (p.sack) apply_sack(p, acked, now);
  if (rtt) update_rtt(*rtt);
  const bool progress = !inflight_.empty() ? inflight_.front().seq != front_before : had_inflight;
  if (acked > 0) {
    consecutive_timeouts_ = 0;
    zero_window_probe_ = false;
    on_acked(acked, p.h.timestamp_diff_us, window_was_full, now);
  }
  // An answer that acknowledges our stream shows the peer is there, even
  // if what is in flight is not getting in (a zero window): the RTO's
  // retries count only silence.
  if (had_inflight && p.h.ack_nr == static_cast<std::uint16_t>(front_before - 1))
    consecutive_timeouts_ = 0;
  if (progress) {
    dup_acks_ = 0;
  } else if (had_inflight && p.h.type == packet_type::state && !p.mtu_probe &&
             p.h.ack_nr == static_cast<std::uint16_t>(front_before - 1)) {
    // (A probe repeats the ACK because it is a probe, not because
    // something arrived.)
    ++dup_acks_;  // the same cumulative ACK again: something after it arrived
  }
  detect_losses(now);
  if (inflight_.empty())
    rto_deadline_ = time_point::max();
  else if (progress)
    rto_deadline_ = now + rto_;
  if (progress) {
    tlp_fired_ = false;
    arm_tlp(now);
  }

  if (p.h.type == packet_type::data || p.h.type == packet_type::fin) receive_data(p, now);
  if (fin_acked_ && eof_seq_ && ack_nr_ == *eof_seq_) end(conn_state::closed);
}

void connection::ack_up_to(std::uint16_t ack_nr, time_point now, std::size_t& acked_bytes,
                           std::optional<duration>& rtt_sample) {
  if (inflight_.empty()) return;
  // Only numbers we have sent count; an older or a future ACK acks nothing.
  const std::uint16_t covered = seq_distance(inflight_.front().seq, ack_nr);
  if (covered >= inflight_.size()) return;
  for (std::size_t i = 0; i <= covered; ++i) {
    auto& e = inflight_.front();
    const std::size_t size = e.payload.size() + header_size;
    if (!e.acked) {
      on_delivered(e, now);
      acked_bytes += size;
      if (!e.need_resend) cur_window_ -= size;
      // Karn: only a packet sent once gives an unambiguous sample.
      if (e.transmissions == 1) rtt_sample = now - e.sent;
    }
    if (e.type == packet_type::fin) fin_acked_ = true;
    inflight_bytes_ -= e.payload.size();
    inflight_.pop_front();
  }
}

void connection::apply_sack(const packet& p, std::size_t& acked_bytes, time_point now) {
  const auto& mask = *p.sack;
  const auto first = static_cast<std::uint16_t>(p.h.ack_nr + 2);
  for (auto& e : inflight_) {
    const std::uint16_t bit = seq_distance(first, e.seq);
    if (bit >= mask.size() * 8 || e.acked || !sack_has(mask, bit)) continue;
    e.acked = true;
    on_delivered(e, now);
    const std::size_t size = e.payload.size() + header_size;
    acked_bytes += size;
    if (!e.need_resend) cur_window_ -= size;
    e.need_resend = false;
    if (e.type == packet_type::fin) fin_acked_ = true;
  }
}

void connection::on_delivered(const outgoing& e, time_point now) {
  if (!rack_seq_ || rack_sent_ < e.sent || (rack_sent_ == e.sent && seq_less(*rack_seq_, e.seq))) {
    rack_sent_ = e.sent;
    rack_seq_ = e.seq;
  }
  if (e.transmissions == 1 && highest_delivered_ && seq_less(e.seq, *highest_delivered_))
    reordering_seen_ = true;
  if (!highest_delivered_ || seq_less(*highest_delivered_, e.seq)) highest_delivered_ = e.seq;
  if (e.transmissions > 1 && min_rtt_ != duration::max() && now - e.sent < min_rtt_ / 2) {
    ++stats_.spurious_retransmits;
    reordering_seen_ = true;
    reorder_mult_ = std::min(reorder_mult_ + 1, 8);
    if (undo_window_ > max_window_) {
      max_window_ = undo_window_;
      ssthresh_ = std::max(ssthresh_, undo_window_);
    }
    undo_window_ = 0;
  }
}

bool connection::sent_before_rack(const outgoing& e) const {
  // Packets of one flush share a send time: then the lower number went first.
  return rack_seq_ &&
         (e.sent < rack_sent_ || (e.sent == rack_sent_ && seq_less(e.seq, *rack_seq_)));
}

void connection::detect_losses(time_point now) {
  const duration base_allowance =
      min_rtt_ != duration::max() ? min_rtt_ / 4 * reorder_mult_ : rtt_ / 4;
  const duration reorder_allowance =
      std::max<duration>(std::min(base_allowance, rtt_), milliseconds(1));
  // A packet is lost when three packets sent after it have arrived (SACK),
  // or, for the oldest, after three duplicate ACKs. With fewer than four in
  // flight there cannot be three: one less than what is in flight will do
  // (early retransmit, RFC 5827), or a small window would wait for the RTO.
  const std::size_t threshold =
      inflight_.size() >= 4 ? 3 : std::max<std::size_t>(1, inflight_.size() - 1);
  std::size_t sacked_after = 0;
  rack_deadline_ = time_point::max();
  for (auto it = inflight_.rbegin(); it != inflight_.rend(); ++it) {
    if (it->acked) {
      ++sacked_after;
      continue;
    }
    const bool oldest = std::next(it) == inflight_.rend();
    const bool by_dups = oldest && dup_acks_ >= static_cast<int>(threshold);
    // Sent before something that arrived: lost once this overdue.
    const bool timed = have_rtt_ && sent_before_rack(*it);
    const time_point due = it->sent + rtt_ + reorder_allowance;
    const bool by_time = timed && now >= due;
    if (it->need_resend || it->transmissions == 0) continue;
    // Counting rules only for a first transmission: packets SACKed before a
    // retransmission say nothing of it. Time says it for both.
    const bool by_count =
        !reordering_seen_ && it->transmissions == 1 && (sacked_after >= threshold || by_dups);
    const bool lost = by_time || by_count;
    if (!lost) {
      // Not yet overdue: it will be at `due`, and no ACK need come to say so
      // (RFC 8985's reordering timer). Without it a window full of such
      // packets waits for the RTO.
      if (timed) rack_deadline_ = std::min(rack_deadline_, due);
      continue;
    }
    it->need_resend = true;
    cur_window_ -= it->payload.size() + header_size;
    if (by_dups) {
      ++stats_.fast_retransmits;
      dup_acks_ = 0;
    }
    on_loss(it->seq);
  }
}

void connection::on_loss(std::uint16_t seq) {
  // One halving per window of data: losses among packets sent before the
  // last halving are part of the same event.
  if (recovery_until_ && seq_less(seq, *recovery_until_)) return;
  const std::size_t floor = cfg_.min_window * (cfg_.packet_size + header_size);
  undo_window_ = max_window_;
  max_window_ = std::max(max_window_ / 2, floor);
  ssthresh_ = max_window_;
  slow_start_ = false;
  recovery_until_ = seq_nr_;
}

void connection::arm_tlp(time_point now) {
  if (inflight_.empty() || tlp_fired_ || !have_rtt_) {
    tlp_deadline_ = time_point::max();
    return;
  }
  tlp_deadline_ = now + std::max<duration>(2 * rtt_ + cfg_.delayed_ack, milliseconds(10));
}

void connection::update_rtt(duration sample) {
  min_rtt_ = std::min(min_rtt_, sample);
  if (!have_rtt_) {
    rtt_ = sample;
    rtt_var_ = sample / 2;
    have_rtt_ = true;
  } else {
    const auto err = rtt_ > sample ? rtt_ - sample : sample - rtt_;
    rtt_var_ += (err - rtt_var_) / 4;
    rtt_ += (sample - rtt_) / 8;
  }
  rto_ = std::clamp(rtt_ + 4 * rtt_var_, cfg_.min_rto, cfg_.max_rto);
}

void connection::on_acked(std::size_t acked_bytes, std::uint32_t delay_sample, bool window_was_full,
                          time_point now) {
  std::int64_t our_delay = 0;
  if (delay_sample != 0) {
    // Base delay: the least sample over the last two minutes, kept as
    // one minimum per minute.
    if (base_history_.empty() || now - base_history_.back().first >= minute) {
      base_history_.emplace_back(now, delay_sample);
      while (base_history_.size() > 2) base_history_.pop_front();
    } else if (wrap_less(delay_sample, base_history_.back().second)) {
      base_history_.back().second = delay_sample;
    }
    base_delay_ = base_history_.front().second;
    for (const auto& [t, d] : base_history_)
      if (wrap_less(d, base_delay_)) base_delay_ = d;
    recent_delays_.push_back(delay_sample);
    while (recent_delays_.size() > delay_filter) recent_delays_.pop_front();
    std::uint32_t current = recent_delays_.front();
    for (auto d : recent_delays_)
      if (wrap_less(d, current)) current = d;
    our_delay = std::max<std::int64_t>(0, static_cast<std::int32_t>(current - base_delay_));
    have_base_ = true;
  }
  stats_.queue_delay_us = our_delay;
  const auto target =
      std::chrono::duration_cast<std::chrono::microseconds>(cfg_.target_delay).count();
  const std::size_t floor = cfg_.min_window * (cfg_.packet_size + header_size);
  constexpr std::size_t ceiling = std::size_t{64} << 20;
  if (slow_start_) {
    if (our_delay > target / 2 || max_window_ >= ssthresh_) {
      slow_start_ = false;
    } else {
      if (window_was_full) max_window_ = std::min(max_window_ + acked_bytes, ceiling);
      return;
    }
  }
  // LEDBAT: below the target, grow in proportion to how far below, at most
  // gain_per_rtt per window of acknowledged bytes. Above it, shrink in
  // proportion to the excess (LEDBAT++'s multiplicative decrease, at most
  // half a window per RTT): RFC 6817's additive decrease of a few kB per
  // RTT is far too slow to give way to TCP, which fills the whole buffer.
  double next = static_cast<double>(max_window_);
  if (our_delay <= target) {
    const double window_factor = static_cast<double>(std::min(acked_bytes, max_window_)) /
                                 static_cast<double>(std::max(max_window_, acked_bytes));
    const double delay_factor =
        static_cast<double>(target - our_delay) / static_cast<double>(target);
    if (window_was_full)
      next += static_cast<double>(cfg_.gain_per_rtt) * window_factor * delay_factor;
  } else {
    const double excess =
        std::min(0.5, static_cast<double>(our_delay - target) / static_cast<double>(target));
    next -= static_cast<double>(acked_bytes) * excess;
  }
  max_window_ = static_cast<std::size_t>(
      std::clamp(next, static_cast<double>(floor), static_cast<double>(ceiling)));
}

void connection::receive_data(const packet& p, time_point now) {
  answer_ack_at_ = time_point::max();  // the acceptor sends data: it has been verified
  const std::uint16_t d = seq_distance(ack_nr_, p.h.seq_nr);
  if (d == 0 || d >= 0x8000) {
    ++stats_.duplicates_received;
    ack_now_ = true;  // it may be a retransmission because our ACK was lost
    return;
  }
  if (eof_seq_ && seq_less(*eof_seq_, p.h.seq_nr)) return;  // past the FIN
  const bool fin = p.h.type == packet_type::fin;
  if (!fin && p.payload.size() > advertised_window()) {
    ack_now_ = true;  // dropped: over our window, which the ACK tells again
    return;
  }
  if (fin) eof_seq_ = p.h.seq_nr;
  if (d == 1) {
    if (!fin) rbuf_.insert(rbuf_.end(), p.payload.begin(), p.payload.end());
    ack_nr_ = p.h.seq_nr;
    const bool filled_gap = !ooo_.empty();
    deliver_in_order();
    ++acks_owed_;
    if (fin || filled_gap || acks_owed_ >= 2)
      ack_now_ = true;
    else
      ack_deadline_ = std::min(ack_deadline_, now + cfg_.delayed_ack);
    return;
  }
  if (d > max_reorder_distance) {
    ack_now_ = true;  // too far ahead to describe (a sender not bound as ours is): it resends
    return;
  }
  auto [it, inserted] = ooo_.try_emplace(p.h.seq_nr);
  if (inserted) {
    it->second.assign(p.payload.begin(), p.payload.end());
    ooo_bytes_ += p.payload.size();
  } else {
    ++stats_.duplicates_received;
  }
  ack_now_ = true;  // out of order: the sender learns of the gap at once
}

void connection::deliver_in_order() {
  for (;;) {
    auto it = ooo_.find(static_cast<std::uint16_t>(ack_nr_ + 1));
    if (it == ooo_.end()) break;
    rbuf_.insert(rbuf_.end(), it->second.begin(), it->second.end());
    ooo_bytes_ -= it->second.size();
    ack_nr_ = it->first;
    ooo_.erase(it);
  }
}

bytes connection::sack_mask() const {
  bytes mask;
  for (const auto& [seq, data] : ooo_) {
    const std::uint16_t bit = seq_distance(static_cast<std::uint16_t>(ack_nr_ + 2), seq);
    if (bit < sack_bytes * 8) sack_set(mask, bit);
  }
  return mask;
}

// --- timers ---

void connection::on_timer(time_point now) {
  if (finished()) return;
  if (!verified_) {
    if (now - last_syn_ >= cfg_.half_open_timeout) end(conn_state::timed_out);
    return;  // nothing else runs for a peer that may not be there
  }
  if (now - last_received_ >= cfg_.idle_timeout) {
    end(conn_state::timed_out);
    return;
  }
  if (state_ == conn_state::syn_sent) {
    if (now >= rto_deadline_) {
      if (syn_sends_ >= cfg_.max_syn_sends) {
        end(conn_state::timed_out);
        return;
      }
      rto_ = std::min(rto_ * 2, cfg_.max_rto);
      syn_due_ = true;
      rto_deadline_ = time_point::max();
    }
    return;
  }
  if (now >= answer_ack_at_) {
    // Only while nothing of ours but the SYN has a number: data and FIN
    // carry the acknowledgement and are resent until it is taken.
    const bool sent_nothing = seq_nr_ == static_cast<std::uint16_t>(isn_ + 1);
    if (sent_nothing && answer_acks_ < 3) {
      ack_now_ = true;
      ++answer_acks_;
      answer_ack_at_ = now + rto_;
    } else {
      answer_ack_at_ = time_point::max();
    }
  }
  if (now >= rack_deadline_) detect_losses(now);
  if (now >= mtu_.deadline) on_probe_timeout(now);
  if (now >= tlp_deadline_) {
    tlp_deadline_ = time_point::max();
    tlp_fired_ = true;
    // The newest packet not known to have arrived goes again; its ACK (or
    // the SACK it provokes) tells what else is missing.
    for (auto it = inflight_.rbegin(); it != inflight_.rend(); ++it) {
      if (it->acked) continue;
      if (!it->need_resend) {
        it->need_resend = true;
        cur_window_ -= it->payload.size() + header_size;
        ++stats_.tail_probes;
      }
      break;
    }
  }
  if (now >= rto_deadline_) {
    if (!inflight_.empty()) {
      if (++consecutive_timeouts_ > cfg_.max_timeouts) {
        end(conn_state::timed_out);
        return;
      }
      ++stats_.timeouts;
      // Everything unacknowledged is presumed lost; start again from one
      // packet, slow-starting back to half of where we were.
      const std::size_t floor = cfg_.min_window * (cfg_.packet_size + header_size);
      ssthresh_ = std::max(max_window_ / 2, floor);
      max_window_ = cfg_.packet_size + header_size;
      slow_start_ = true;
      recovery_until_ = seq_nr_;
      for (auto& e : inflight_) {
        if (e.acked || e.need_resend) continue;
        e.need_resend = true;
        cur_window_ -= e.payload.size() + header_size;
      }
      rto_ = std::min(rto_ * 2, cfg_.max_rto);
      rto_deadline_ = now + rto_;
      // Silence at a raised packet size may be a path that shrank and
      // drops what no longer fits (a black hole, RFC 8899 §4.3): new
      // packets go back to the base size and the search starts again
      // below the size that failed. Packets already cut at the larger size
      // keep it; data datagrams are sent fragmentable, so they still pass.
      if (consecutive_timeouts_ >= 2 && mtu_.confirmed > base_datagram()) {
        ++stats_.mtu_black_holes;
        mtu_.ceiling = mtu_.confirmed - 1;
        mtu_.confirmed = base_datagram();
        max_payload_ = cfg_.packet_size;
        mtu_.failures = 0;
        mtu_.try_ceiling = false;
        after_probe(now);
      }
    } else {
      // Nothing in flight and the peer's window was closed: probe it.
      zero_window_probe_ = true;
      rto_deadline_ = time_point::max();
    }
  }
  if (now >= ack_deadline_) {
    ack_now_ = true;
    ack_deadline_ = time_point::max();
  }
  if (now - last_sent_ >= cfg_.keepalive) ack_now_ = true;
}

time_point connection::next_deadline() const {
  if (finished()) return time_point::max();
  if (!verified_) return last_syn_ + cfg_.half_open_timeout;
  auto t = std::min({rto_deadline_, tlp_deadline_, rack_deadline_, ack_deadline_, mtu_.deadline,
                     answer_ack_at_, last_received_ + cfg_.idle_timeout});
  if (probe_wanted()) t = std::min(t, mtu_.next_at);
  if (state_ == conn_state::connected) t = std::min(t, last_sent_ + cfg_.keepalive);
  return t;
}

// --- output ---

void connection::emit(packet_type type, std::uint16_t seq, byte_span payload, time_point now,
                      const send_fn& send, const emit_extras& x) {
  header h;
  h.type = type;
  h.connection_id = type == packet_type::syn ? recv_id_ : send_id_;
  h.timestamp_us = micros(now);
  h.timestamp_diff_us = reply_micro_;
  h.wnd_size = advertised_window();
  h.seq_nr = seq;
  h.ack_nr = type == packet_type::syn ? 0 : ack_nr_;
  const bytes mask = type == packet_type::syn ? bytes{} : sack_mask();
  mtu_ids ids;
  ids.probe = x.probe;
  ids.announce = x.announce;
  // A probe may be dropped for its size, which is its point: it carries no
  // echo of the peer's probe, and does not stand for an ACK that is owed.
  const bool probe = x.probe.has_value();
  if (echo_due_ && !probe && type != packet_type::syn && type != packet_type::reset) {
    ids.echo = echo_due_;
    echo_due_.reset();
  }
  scratch_.clear();
  encode(h, mask, payload, scratch_, ids);
  // A probe: zeros after the chain are its payload, up to the size tried.
  if (scratch_.size() < x.pad_to) scratch_.resize(x.pad_to, byte{0});
  send(scratch_);
  last_sent_ = now;
  ++stats_.packets_sent;
  if (!probe && type != packet_type::syn && type != packet_type::reset) {
    acks_owed_ = 0;
    ack_now_ = false;
    ack_deadline_ = time_point::max();
  }
}

bool connection::can_send(std::size_t size) const {
  const std::size_t window = std::min(max_window_, peer_window_);
  if (cur_window_ == 0) return size <= window || zero_window_probe_;  // one packet may always go
  return cur_window_ + size <= window;
}

bool connection::within_reorder_reach() const {
  return inflight_.empty() || seq_distance(inflight_.front().seq, seq_nr_) < max_reorder_distance;
}

void connection::flush(time_point now, const send_fn& send, const send_fn& send_probe) {
  if (reset_pending_) {
    reset_pending_ = false;
    emit(packet_type::reset, seq_nr_, {}, now, send);
  }
  if (state_ == conn_state::closed) {
    if (ack_now_) emit(packet_type::state, seq_nr_, {}, now, send);
    return;
  }
  if (finished()) return;
  if (state_ == conn_state::syn_sent) {
    if (syn_due_) {
      syn_due_ = false;
      ++syn_sends_;
      syn_sent_at_ = now;
      // The SYN takes the first number; DATA starts after it.
      emit(packet_type::syn, static_cast<std::uint16_t>(seq_nr_ - (syn_sends_ > 1 ? 1 : 0)), {},
           now, send, announcing());
      if (syn_sends_ == 1) ++seq_nr_;
      rto_deadline_ = now + rto_;
    }
    return;
  }
  if (syn_ack_due_) {
    syn_ack_due_ = false;
    // No bigger than the SYN (the sender may be forged): we say that we
    // answer probes only to a SYN that said so, and so carried as much.
    emit(packet_type::state, seq_nr_, {}, now, send,
         mtu_.peer_answers ? announcing() : emit_extras{});
  }
  if (!verified_) return;  // the answer to the SYN, and nothing more, to an unproven address
  // Retransmissions first, oldest first.
  for (auto& e : inflight_) {
    if (!e.need_resend) continue;
    const std::size_t size = e.payload.size() + header_size;
    // The oldest goes regardless of the window (as TCP's fast retransmit):
    // every ACK waits for it.
    if (!can_send(size) && &e != &inflight_.front()) break;
    e.need_resend = false;
    ++e.transmissions;
    e.sent = now;
    cur_window_ += size;
    ++stats_.packets_resent;
    emit(e.type, e.seq, e.payload, now, send);
  }
  // New data, in full packets; a short one waits while anything is in
  // flight (Nagle), unless we are closing or no_delay says not to.
  const std::size_t packet_payload = next_payload();
  while (shead_ < sbuf_.size() && within_reorder_reach()) {
    const std::size_t n = std::min(sbuf_.size() - shead_, packet_payload);
    if (n < cfg_.packet_size && cur_window_ > 0 && !closing_ && !cfg_.no_delay) break;
    if (!can_send(n + header_size)) break;
    outgoing e;
    e.seq = seq_nr_++;
    e.payload.assign(sbuf_.begin() + static_cast<std::ptrdiff_t>(shead_),
                     sbuf_.begin() + static_cast<std::ptrdiff_t>(shead_ + n));
    e.sent = now;
    e.transmissions = 1;
    shead_ += n;
    cur_window_ += n + header_size;
    inflight_bytes_ += n;
    emit(e.type, e.seq, e.payload, now, send);
    inflight_.push_back(std::move(e));
    zero_window_probe_ = false;
  }
  if (shead_ > (64u << 10) && shead_ * 2 > sbuf_.size()) {
    sbuf_.erase(sbuf_.begin(), sbuf_.begin() + static_cast<std::ptrdiff_t>(shead_));
    shead_ = 0;
  }
  if (closing_ && !fin_queued_ && shead_ == sbuf_.size() && can_send(header_size) &&
      within_reorder_reach()) {
    outgoing e;
    e.seq = seq_nr_++;
    e.type = packet_type::fin;
    e.sent = now;
    e.transmissions = 1;
    cur_window_ += header_size;
    fin_queued_ = true;
    emit(e.type, e.seq, {}, now, send);
    inflight_.push_back(std::move(e));
  }
  // The timer runs while anything is in flight, and while data waits on a
  // closed window (then it allows one probe).
  if ((!inflight_.empty() || shead_ < sbuf_.size()) && rto_deadline_ == time_point::max())
    rto_deadline_ = now + rto_;
  if (!inflight_.empty() && tlp_deadline_ == time_point::max() && !tlp_fired_) arm_tlp(now);
  // A probe is a STATE too, but it may not arrive: an ACK that is owed
  // still goes on its own.
  maybe_probe(now, send_probe ? send_probe : send);
  if (ack_now_ || acks_owed_ >= 2) emit(packet_type::state, seq_nr_, {}, now, send);
}

// --- the path MTU search ---

std::size_t connection::base_datagram() const {
  return cfg_.packet_size + data_overhead;
}

std::size_t connection::next_payload() const {
  if (max_payload_ <= cfg_.packet_size) return cfg_.packet_size;
  const std::size_t quarter = std::min(max_window_, peer_window_) / 4;
  return std::clamp(quarter > header_size ? quarter - header_size : 0, cfg_.packet_size,
                    max_payload_);
}

std::size_t connection::next_probe_size() const {
  if (mtu_.ceiling < mtu_.confirmed + mtu_granularity) return 0;
  // Optimistic first (most paths carry their first hop's MTU), then halving.
  return mtu_.try_ceiling ? mtu_.ceiling : (mtu_.confirmed + mtu_.ceiling + 1) / 2;
}

bool connection::probe_wanted() const {
  return verified_ && mtu_.peer_answers && state_ == conn_state::connected && !closing_ &&
         mtu_.probing == 0 && next_probe_size() > 0;
}

void connection::maybe_probe(time_point now, const send_fn& send) {
  if (!probe_wanted() || now < mtu_.next_at) return;
  mtu_.probing = next_probe_size();
  ++mtu_.id;
  // The peer answers at once; a lost probe costs nothing but the wait, and
  // is no sign of congestion (it is not in the window).
  mtu_.deadline = now + rto_;
  ++stats_.probes_sent;
  emit_extras x;
  x.probe = mtu_.id;
  x.pad_to = mtu_.probing;
  emit(packet_type::state, seq_nr_, {}, now, send, x);
}

void connection::after_probe(time_point now) {
  mtu_.probing = 0;
  mtu_.deadline = time_point::max();
  if (next_probe_size() > 0) {
    mtu_.next_at = now;
    return;
  }
  // Over: a path may grow (a route change), so look again later, from the top.
  mtu_.ceiling = cfg_.max_datagram;
  mtu_.try_ceiling = true;
  mtu_.next_at = now + cfg_.mtu_raise;
}

void connection::on_probe_echo(std::uint32_t id, time_point now) {
  if (mtu_.probing == 0 || id != mtu_.id) return;  // late, or not ours
  mtu_.confirmed = mtu_.probing;
  max_payload_ = std::max(cfg_.packet_size, mtu_.confirmed - data_overhead);
  mtu_.failures = 0;
  mtu_.try_ceiling = false;
  after_probe(now);
}

void connection::on_probe_timeout(time_point now) {
  if (mtu_.probing == 0) return;
  ++stats_.probes_lost;
  if (++mtu_.failures >= cfg_.probe_attempts) {
    mtu_.ceiling = mtu_.probing - 1;
    mtu_.failures = 0;
    mtu_.try_ceiling = false;
  }
  after_probe(now);
}

// --- the application's side ---

std::size_t connection::writable() const {
  if (closing_ || finished()) return 0;
  const std::size_t held = (sbuf_.size() - shead_) + inflight_bytes_;
  return held >= cfg_.send_buffer ? 0 : cfg_.send_buffer - held;
}

std::size_t connection::write(byte_span data) {
  const std::size_t n = std::min(data.size(), writable());
  sbuf_.insert(sbuf_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
  return n;
}

std::size_t connection::read(mutable_byte_span out) {
  const std::size_t n = std::min(out.size(), readable());
  if (n == 0) return 0;
  const std::size_t window_before = advertised_window();
  std::memcpy(out.data(), rbuf_.data() + rhead_, n);
  rhead_ += n;
  if (rhead_ == rbuf_.size()) {
    rbuf_.clear();
    rhead_ = 0;
  } else if (rhead_ > (64u << 10) && rhead_ * 2 > rbuf_.size()) {
    rbuf_.erase(rbuf_.begin(), rbuf_.begin() + static_cast<std::ptrdiff_t>(rhead_));
    rhead_ = 0;
  }
  // A window that reopens from nearly shut is news for the sender.
  const std::size_t open = 2 * cfg_.packet_size;
  if (window_before < open && advertised_window() >= open) ack_now_ = true;
  return n;
}

bool connection::at_eof() const {
  return eof_seq_ && ack_nr_ == *eof_seq_ && readable() == 0;
}

void connection::close() {
  if (finished()) return;
  closing_ = true;
}

void connection::reset() {
  if (finished()) return;
  reset_pending_ = state_ != conn_state::syn_sent || syn_sends_ > 0;
  end(conn_state::reset);
}

void connection::end(conn_state s) {
  state_ = s;
  rto_deadline_ = ack_deadline_ = tlp_deadline_ = rack_deadline_ = mtu_.deadline =
      time_point::max();
}

bool connection::consistent() const {
  std::size_t window = 0, payload = 0;
  for (std::size_t i = 0; i < inflight_.size(); ++i) {
    const auto& e = inflight_[i];
    if (e.seq != static_cast<std::uint16_t>(inflight_.front().seq + i)) return false;
    if (e.acked && e.need_resend) return false;
    if (!e.acked && !e.need_resend) window += e.payload.size() + header_size;
    payload += e.payload.size();
  }
  return window == cur_window_ && payload == inflight_bytes_ && shead_ <= sbuf_.size() &&
         max_payload_ >= cfg_.packet_size && mtu_.confirmed >= base_datagram();
}

connection::figures connection::stats() const {
  figures f = stats_;
  f.max_window = max_window_;
  f.in_flight = cur_window_;
  f.peer_window = peer_window_;
  f.rtt = rtt_;
  f.rto = rto_;
  f.slow_start = slow_start_;
  f.next_seq = seq_nr_;
  f.oldest_unacked = inflight_.empty() ? seq_nr_ : inflight_.front().seq;
  f.ack_nr = ack_nr_;
  f.packets_kept = inflight_.size();
  f.packets_to_resend = static_cast<std::size_t>(std::count_if(
      inflight_.begin(), inflight_.end(), [](const auto& e) { return e.need_resend; }));
  f.out_of_order = ooo_.size();
  f.mtu = mtu_.confirmed;
  f.max_payload = max_payload_;
  return f;
}

}  // namespace crust::utp
