// The µTP manager and the handle's pending operations: see manager.hpp and
// stream.hpp.
#include "transports/utp/manager.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace crust::utp {

// --- stream_state: the handle's side ---

void stream_state::start_read(transport::io_handler h, std::vector<asio::mutable_buffer> bufs) {
  if (transport::take_op(read_, {std::move(h), std::move(bufs), {}}, handle_closed, ex_,
                         [w = weak_from_this()] {
                           if (auto st = w.lock()) st->cancel(true);
                         }))
    progress();
}

void stream_state::start_write(transport::io_handler h, std::vector<asio::const_buffer> bufs) {
  if (transport::take_op(write_, {std::move(h), {}, std::move(bufs)}, handle_closed, ex_,
                         [w = weak_from_this()] {
                           if (auto st = w.lock()) st->cancel(false);
                         }))
    progress();
}

error_code stream_state::end_error() const {
  switch (conn.state()) {
    case conn_state::timed_out:
      return make_error_code(asio::error::timed_out);
    case conn_state::reset:
      return make_error_code(asio::error::connection_reset);
    default:
      return make_error_code(asio::error::eof);
  }
}

void stream_state::progress() {
  bool changed = false;
  if (read_) {
    std::size_t n = 0;
    for (const auto& b : read_->rbufs) {
      if (b.size() == 0) continue;
      const auto got = conn.read(mutable_byte_span(static_cast<byte*>(b.data()), b.size()));
      n += got;
      if (got < b.size()) break;
    }
    const bool empty_read = std::all_of(read_->rbufs.begin(), read_->rbufs.end(),
                                        [](const auto& b) { return b.size() == 0; });
    if (n > 0 || empty_read) {
      transport::complete_op(read_, ex_, {}, n);
      changed = true;  // the window may have reopened
    } else if (conn.at_eof()) {
      transport::complete_op(read_, ex_, make_error_code(asio::error::eof), 0);
    } else if (conn.finished()) {
      transport::complete_op(read_, ex_, end_error(), 0);
    }
  }
  if (write_) {
    std::size_t n = 0;
    for (const auto& b : write_->wbufs) {
      if (b.size() == 0) continue;
      const auto took = conn.write(byte_span(static_cast<const byte*>(b.data()), b.size()));
      n += took;
      if (took < b.size()) break;
    }
    const bool empty_write = std::all_of(write_->wbufs.begin(), write_->wbufs.end(),
                                         [](const auto& b) { return b.size() == 0; });
    if (n > 0 || empty_write) {
      transport::complete_op(write_, ex_, {}, n);
      changed = true;
    } else if (conn.finished()) {
      transport::complete_op(write_, ex_,
                             conn.state() == conn_state::closed
                                 ? make_error_code(asio::error::broken_pipe)
                                 : end_error(),
                             0);
    }
  }
  if (changed) touch();
}

void stream_state::cancel(bool read) {
  auto& op = read ? read_ : write_;
  if (op) transport::complete_op(op, ex_, make_error_code(asio::error::operation_aborted), 0);
}

void stream_state::touch() {
  if (auto m = mgr_.lock()) m->touch(shared_from_this());
}

void stream_state::release() {
  if (handle_closed) return;
  handle_closed = true;
  closed_at = clock::now();
  cancel(true);
  cancel(false);
  conn.close();
  touch();
}

void stream_state::shutdown_send() {
  conn.close();
  touch();
}

// --- the manager ---

std::shared_ptr<manager> manager::create(asio::any_io_executor ex, options o, send_fn send,
                                         send_fn send_probe) {
  return std::shared_ptr<manager>(
      new manager(std::move(ex), std::move(o), std::move(send), std::move(send_probe)));
}

manager::manager(asio::any_io_executor ex, options o, send_fn send, send_fn send_probe)
    : ex_(std::move(ex)),
      opt_(std::move(o)),
      send_(std::move(send)),
      send_probe_(std::move(send_probe)),
      accepted_(ex_),
      changed_(ex_),
      timer_(ex_) {}

void manager::on_datagram(byte_span datagram, const asio::ip::udp::endpoint& from) {
  if (stopped_) return;
  ++stats_.datagrams_in;
  auto p = decode(datagram);
  if (!p) return;
  const auto now = clock::now();
  auto it = conns_.find({from, p->h.connection_id});
  if (it == conns_.end() && p->h.type == packet_type::syn) {
    // A SYN is keyed by the id its acceptor receives on; a repeated SYN
    // finds the connection it made.
    it = conns_.find({from, static_cast<std::uint16_t>(p->h.connection_id + 1)});
    if (it == conns_.end()) {
      answer_syn(*p, from, now);
      return;
    }
  }
  if (it == conns_.end()) {
    if (p->h.type != packet_type::reset) send_reset(*p, from);
    return;
  }
  const auto k = it->first;
  auto st = it->second;
  const auto before = st->conn.state();
  st->conn.on_packet(*p, now);
  if (st->conn.state() != before) changed_.notify();
  if (st->half_open) {
    settle_half_open(k, st, now);
    if (st->half_open && st->conn.finished()) return;  // forgotten
  }
  st->progress();
  dirty_.insert(st);
}

void manager::answer_syn(const packet& syn, const asio::ip::udp::endpoint& from, time_point now) {
  if (!listening_ || conns_.size() >= opt_.max_connections) {
    ++stats_.syns_ignored;
    return;
  }
  // The source may be forged: an answer is a reflection (never an
  // amplification), and a source gets only so many.
  if (!syn_limiter_.allow(transport::source_of(from.address()), now)) {
    ++stats_.syns_limited;
    return;
  }
  if (half_open_.size() >= opt_.max_half_open) {
    // Full (a flood of SYNs from forged addresses, most likely): a random
    // victim, so a real peer's entry survives a flood with a fair chance
    // and its repeated SYN gets another.
    const auto victim = half_open_[rng_() % half_open_.size()];
    ++stats_.half_open_evicted;
    forget_half_open(victim);
    conns_.erase(victim);
  }
  const key k{from, static_cast<std::uint16_t>(syn.h.connection_id + 1)};
  const auto isn = static_cast<std::uint16_t>(isn_source_());
  auto st = std::make_shared<stream_state>(connection::accept(syn, isn, now, settings_for(from)),
                                           from, weak_from_this(), ex_);
  st->half_open = true;
  conns_.emplace(k, st);
  half_open_.push_back(k);
  dirty_.insert(st);  // the answer goes with this batch, whose flush arms its timer
}

void manager::settle_half_open(const key& k, const std::shared_ptr<stream_state>& st,
                               time_point now) {
  if (st->conn.finished()) {
    ++stats_.half_open_failed;
    forget_half_open(k);
    conns_.erase(k);
    return;
  }
  if (!st->conn.verified()) return;
  ++stats_.verified;
  forget_half_open(k);
  st->half_open = false;
  if (accept_queue_.size() >= opt_.backlog) {
    // Nobody is accepting fast enough: refuse it rather than queue more.
    ++stats_.syns_ignored;
    st->conn.reset();
    st->handle_closed = true;
    st->closed_at = now;
    return;
  }
  accept_queue_.push_back(st);
  accepted_.notify();
}

void manager::forget_half_open(const key& k) {
  auto at = std::find(half_open_.begin(), half_open_.end(), k);
  if (at == half_open_.end()) return;
  *at = half_open_.back();
  half_open_.pop_back();
}

void manager::send_reset(const packet& p, const asio::ip::udp::endpoint& to) {
  // Never larger than what came in (no amplification): a bare header,
  // and rate-limited per source (a spoofed flood gets few answers).
  if (!reset_limiter_.allow(transport::source_of(to.address()), clock::now())) {
    ++stats_.resets_limited;
    return;
  }
  header h;
  h.type = packet_type::reset;
  h.connection_id = p.h.connection_id;
  h.seq_nr = static_cast<std::uint16_t>(rng_());
  h.ack_nr = p.h.seq_nr;
  const auto d = encode(h);
  send_(d, to);
  ++stats_.resets_sent;
  ++stats_.datagrams_out;
}

settings manager::settings_for(const asio::ip::udp::endpoint& peer) const {
  settings s = opt_.conn;
  if (!opt_.probe_mtu) {
    s.max_datagram = 0;
  } else if (opt_.path_limit) {
    const std::size_t route = opt_.path_limit(peer);
    s.max_datagram = s.max_datagram == 0 ? route : std::min(s.max_datagram, route);
  }
  return s;
}

void manager::flush_one(stream_state& st, time_point now) {
  // Two captures each: small enough for std::function to hold in place.
  const crust::utp::send_fn send = [this, &st](byte_span d) {
    send_(d, st.remote);
    ++stats_.datagrams_out;
  };
  crust::utp::send_fn send_probe;
  if (send_probe_)
    send_probe = [this, &st](byte_span d) {
      send_probe_(d, st.remote);
      ++stats_.datagrams_out;
    };
  st.conn.flush(now, send, send_probe);
  const auto d = wake_for(st);
  if (d < next_wake_) rearm(d);
}

namespace {
constexpr auto closed_linger = seconds(2);  // a closed connection re-ACKs a repeated FIN this long
}

time_point manager::wake_for(const stream_state& st) const {
  auto t = st.conn.next_deadline();
  if (st.handle_closed && !st.conn.finished())
    t = std::min(t, st.closed_at + opt_.linger + milliseconds(1));
  if (st.handle_closed && st.conn.state() == conn_state::closed && st.finished_at != time_point{})
    t = std::min(t, st.finished_at + closed_linger + milliseconds(1));
  return t;
}

void manager::flush_dirty() {
  flush_posted_ = false;
  if (dirty_.empty()) return;
  const auto now = clock::now();
  auto batch = std::move(dirty_);
  dirty_.clear();
  for (const auto& st : batch) flush_one(*st, now);
  reap(now);
  for (const auto& st : batch)
    if (auto d = wake_for(*st); d < next_wake_) rearm(d);
}

void manager::touch(const std::shared_ptr<stream_state>& st) {
  if (stopped_) return;
  dirty_.insert(st);
  if (flush_posted_) return;
  flush_posted_ = true;
  // Coalesce: many writes in one turn of the event loop, one flush.
  asio::post(ex_, [w = weak_from_this()] {
    if (auto m = w.lock()) m->flush_dirty();
  });
}

void manager::rearm(time_point deadline) {
  next_wake_ = deadline;
  timer_.cancel();  // run() wakes and sleeps again until next_wake_
}

void manager::reap(time_point now) {
  for (auto it = conns_.begin(); it != conns_.end();) {
    auto& st = *it->second;
    if (st.conn.finished() && st.finished_at == time_point{}) st.finished_at = now;
    if (st.half_open && st.conn.finished()) {  // timed out unverified
      ++stats_.half_open_failed;
      forget_half_open(it->first);
      it = conns_.erase(it);
      continue;
    }
    if (!st.handle_closed) {
      ++it;
      continue;
    }
    // A released connection that has not finished its FIN within the
    // linger time is reset; a closed one stays a moment to re-ACK a FIN.
    if (!st.conn.finished() && now - st.closed_at > opt_.linger) {
      st.conn.reset();
      flush_one(st, now);
    }
    const bool done = st.conn.state() == conn_state::closed ? now - st.closed_at > seconds(2)
                                                            : st.conn.finished();
    it = done ? conns_.erase(it) : std::next(it);
  }
}

asio::awaitable<void> manager::run() {
  auto self = shared_from_this();
  while (!stopped_) {
    timer_.expires_at(next_wake_);
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    const bool cancelled = co_await cancel_requested();
    if (cancelled || stopped_) break;
    const auto now = clock::now();
    if (now < next_wake_) continue;  // re-armed earlier or later: sleep again
    next_wake_ = time_point::max();
    for (auto& [k, st] : conns_) {
      const auto before = st->conn.state();
      if (st->conn.next_deadline() <= now) st->conn.on_timer(now);
      if (st->conn.state() != before) changed_.notify();
      st->progress();
      flush_one(*st, now);
    }
    reap(now);
    for (auto& [k, st] : conns_) next_wake_ = std::min(next_wake_, wake_for(*st));
  }
}

void manager::shutdown() {
  if (stopped_) return;
  const auto now = clock::now();
  for (auto& [k, st] : conns_) {
    st->conn.reset();
    flush_one(*st, now);
    st->progress();
  }
  stopped_ = true;
  conns_.clear();
  half_open_.clear();
  accept_queue_.clear();
  dirty_.clear();
  timer_.cancel();
  accepted_.notify();
  changed_.notify();
}

asio::awaitable<result<utp_stream>> manager::connect(asio::ip::udp::endpoint to) {
  auto self = shared_from_this();
  if (stopped_) co_return make_error_code(errc::shutting_down);
  if (conns_.size() >= opt_.max_connections)
    co_return make_error_code(asio::error::no_buffer_space);
  // A receive id free for this peer, as is the one after it (which a SYN
  // from that peer would map to).
  std::uint16_t id = 0;
  for (int tries = 0;; ++tries) {
    id = static_cast<std::uint16_t>(rng_());
    if (!conns_.contains({to, id}) && !conns_.contains({to, static_cast<std::uint16_t>(id + 1)}))
      break;
    if (tries > 64) co_return make_error_code(asio::error::no_buffer_space);
  }
  auto st = std::make_shared<stream_state>(
      connection::dial(id, static_cast<std::uint16_t>(rng_()), clock::now(), settings_for(to)), to,
      weak_from_this(), ex_);
  conns_.emplace(key{to, id}, st);
  flush_one(*st, clock::now());
  utp_stream handle(st);  // from here, leaving early releases (and so resets or FINs) it
  while (st->conn.state() == conn_state::syn_sent && !stopped_) {
    co_await changed_.wait();
    const bool cancelled = co_await cancel_requested();
    if (cancelled) {
      st->conn.reset();
      flush_one(*st, clock::now());
      co_return make_error_code(asio::error::operation_aborted);
    }
  }
  if (stopped_) co_return make_error_code(errc::shutting_down);
  if (st->conn.state() != conn_state::connected) co_return st->end_error();
  ++stats_.connected;
  co_return std::move(handle);
}

asio::awaitable<result<utp_stream>> manager::accept() {
  auto self = shared_from_this();
  while (accept_queue_.empty() && !stopped_) {
    co_await accepted_.wait();
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(asio::error::operation_aborted);
  }
  if (stopped_) co_return make_error_code(errc::shutting_down);
  auto st = std::move(accept_queue_.front());
  accept_queue_.pop_front();
  ++stats_.accepted;
  co_return utp_stream(std::move(st));
}

std::shared_ptr<manager> attach(const std::shared_ptr<transport::udp_mux>& mux,
                                manager::options o) {
  // The manager holds the socket weakly: the socket's handlers hold the
  // manager, and neither should keep the other alive.
  if (!o.path_limit) o.path_limit = transport::max_udp_payload;
  auto mgr = manager::create(
      mux->get_executor(), std::move(o),
      [w = std::weak_ptr(mux)](byte_span d, const transport::udp_endpoint& to) {
        if (auto m = w.lock()) m->send(d, to);
      },
      [w = std::weak_ptr(mux)](byte_span d, const transport::udp_endpoint& to) {
        if (auto m = w.lock()) m->send_unfragmented(d, to);
      });
  mux->on(transport::datagram_kind::utp,
          [w = std::weak_ptr(mgr)](byte_span d, const transport::udp_endpoint& from) {
            if (auto m = w.lock()) m->on_datagram(d, from);
          });
  mux->on_batch_end([w = std::weak_ptr(mgr)] {
    if (auto m = w.lock()) m->flush_dirty();
  });
  return mgr;
}

}  // namespace crust::utp
