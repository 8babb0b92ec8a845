#include "crust/detail/connection.hpp"

#include "crust/base/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstring>

namespace crust::detail {

namespace asio = boost::asio;
using asio::as_tuple;
using asio::use_awaitable;

namespace {
// The read buffer follows the traffic: an idle connection (or one of
// small messages) holds the smallest, a read that fills it makes it four
// times larger up to the largest, and a small read brings it back down, so
// ten thousand idle peers do not each hold a bulk transfer's buffer.
constexpr std::size_t read_buffer_min = 512;
constexpr std::size_t read_buffer_max = 256 * 1024;
constexpr std::size_t small_read = 256;
// Seal up to this much before each write: fewer syscalls for small
// messages, bounded latency for large ones.
constexpr std::size_t batch_limit = 256 * 1024;
constexpr std::size_t idle_batch_capacity = 4 * 1024;
// Relay records waiting to be written. A peer that reads keeps this near
// empty; what a relay passes on is bounded by its circuits' windows
// (relay_circuits_per_peer x circuit_window, 2 MiB by default), so a peer
// that lets more pile up is asking for answers it does not read.
constexpr std::size_t control_queue_limit = std::size_t{4} << 20;
// After our close is out, the reader stays until the peer's close arrives,
// the peer has been silent this long, or the hard limit passes: a peer
// still flushing what it sent before it saw our close loses nothing.
constexpr auto close_linger = seconds(2);
constexpr auto close_linger_limit = seconds(30);
// How long a last close record (a protocol error, a timeout) may take to
// leave before the socket is closed anyway.
constexpr auto close_write_limit = milliseconds(500);

// The close reason to send when a connection ends for `why` without a close
// of ours, or nullopt when nothing is to be said (the peer closed, we were
// cancelled, the transport failed).
std::optional<close_reason> last_close_reason(error_code why) {
  if (why == errc::protocol_violation || why == errc::frame_corrupt || why == errc::bad_signature)
    return close_reason::protocol_error;
  if (why == errc::connection_lost || why == errc::timed_out) return close_reason::timeout;
  return std::nullopt;
}
}  // namespace

connection::connection(transport::stream s, secure::handshake_result hs, const config& cfg,
                       connection_owner& owner, duration handshake_time)
    : stream_(std::move(s)),
      owner_(owner),
      max_message_(cfg.max_message_size),
      heartbeat_interval_(cfg.heartbeat_interval),
      heartbeat_timeout_(cfg.heartbeat_timeout),
      sealer_(std::move(hs.keys.send)),
      opener_(std::move(hs.keys.receive)),
      reasm_(cfg.max_message_size),
      queue_(cfg.send_queue_bytes),
      writer_wake_(stream_.get_executor()),
      flushed_(stream_.get_executor()),
      admission_(stream_.get_executor()),
      finished_(stream_.get_executor()),
      remote_ip_(stream_.remote_address()),
      hello_deadline_(clock::now() + cfg.handshake_timeout),
      awaiting_hello_(!hs.initiator),
      last_received_(clock::now()),
      last_sent_(clock::now()) {
  info_.id = hs.remote.id;
  info_.key = hs.remote;
  info_.transport = stream_.transport();
  info_.remote = stream_.remote_description();
  info_.inbound = !hs.initiator;
  info_.address_only = hs.address_only;
  info_.handshake_time = handshake_time;
  info_.connection_id = to_hex(byte_span(hs.keys.handshake_hash).first(8));
  if (info_.transport == transport::kind::relay) info_.path = path_kind::relayed;
}

bool connection::send_control(bytes record) {
  if (closing_ || ended_) return false;
  if (control_bytes_ + record.size() > control_queue_limit) {
    CRUST_LOG(warn, "connection",
              info_.id.short_string() << " leaves " << control_bytes_
                                      << " bytes of relay records unread; disconnecting it");
    overloaded_ = true;
    abort();
    return false;
  }
  control_bytes_ += record.size();
  if (info_.inbound && !admitted_) {
    // Registered while our admit is yet to go (the owner greets a peer as
    // it registers it): the peer reads nothing but admit before admission.
    held_control_.push_back(std::move(record));
    return true;
  }
  control_.push_back(std::move(record));
  writer_wake_.notify();
  return true;
}

void connection::deliver_after(std::shared_ptr<connection> earlier) {
  if (earlier && earlier.get() != this && !earlier->run_over_) earlier_ = std::move(earlier);
}

asio::awaitable<void> connection::wait_ended() {
  auto self = shared_from_this();
  while (!run_over_) {
    co_await finished_.wait();
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return;
  }
}

void connection::send_hello(node_role role, bool bootstrap, std::uint16_t listen_port) {
  control_.push_back(secure::encode_hello(role, bootstrap, listen_port, owner_.udp_port()));
  writer_wake_.notify();
}

asio::awaitable<result<void>> connection::wait_admitted() {
  auto self = shared_from_this();
  while (!admitted_ && !ended_) {
    co_await admission_.wait();
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
  }
  if (admitted_) co_return result<void>{};
  co_return end_reason_ ? end_reason_ : make_error_code(errc::peer_closed);
}

asio::awaitable<void> connection::on_hello(secure::incoming_hello h) {
  info_.role = h.role;
  info_.udp_port = h.udp_port;
  auto self = shared_from_this();  // named: GCC 12 and temporaries across co_await
  delivering_ = true;
  auto refusal = co_await owner_.admit(self, h);
  delivering_ = false;
  if (closing_ || ended_) co_return;
  if (refusal) {
    refused_ = true;
    close(close_reason::not_allowed, *refusal);
    co_return;
  }
  admitted_ = true;
  control_.push_back(secure::encode_admit(owner_.udp_port()));
  for (auto& r : held_control_) control_.push_back(std::move(r));
  held_control_.clear();
  writer_wake_.notify();
}

result<void> connection::send(bytes payload, priority prio, bool sign) {
  if (closing_ || ended_) return make_error_code(errc::not_connected);
  if (payload.size() > max_message_) return make_error_code(errc::message_too_large);
  secure::outgoing_message m;
  if (sign)
    m.signature =
        owner_.me().sign(secure::signed_message_body(owner_.me().id().key, info_.id.key, payload));
  m.payload = std::move(payload);
  m.prio = prio;
  auto d = queue_.push(std::move(m));
  if (d.count > 0) {
    stats_.messages_dropped += d.count;
    owner_.post_event(events::messages_dropped{info_.id, d.count, d.bytes, d.lowest_dropped});
  }
  writer_wake_.notify();
  return {};
}

asio::awaitable<result<void>> connection::flush() {
  // Hold ourselves: the waiter may outlive the owner's reference.
  auto self = shared_from_this();
  while (!ended_ && (writing_ || !queue_.empty())) {
    co_await flushed_.wait();
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
  }
  if (ended_ && !queue_.empty()) co_return make_error_code(errc::not_connected);
  co_return result<void>{};
}

void connection::close(close_reason reason, std::string text) {
  if (closing_ || ended_) return;
  closing_ = true;
  close_reason_ = reason;
  close_text_ = std::move(text);
  writer_wake_.notify();
}

std::string connection::peer_close_detail() const {
  if (!peer_close_) return {};
  std::string d = std::string("peer closed: ") + to_string(peer_close_->reason);
  if (!peer_close_->text.empty()) d += " (" + peer_close_->text + ")";
  return d;
}

void connection::abort() noexcept {
  ended_ = true;
  stream_.close();
}

void connection::add_record(byte_span header, byte_span data) {
  const std::size_t size = header.size() + data.size();
  // Records share a frame until the next one would not fit.
  if (frame_open_ &&
      sealer_.open_body_size(batch_) + secure::record_prefix + size > secure::max_frame_body)
    finish_frame();
  if (!frame_open_) {
    sealer_.open_frame(batch_);
    frame_open_ = true;
  }
  put_u16(batch_, static_cast<std::uint16_t>(size));
  append(batch_, header);
  append(batch_, data);
}

void connection::finish_frame() {
  if (!frame_open_) return;
  (void)sealer_.close_frame(batch_);  // sizes are within limits by construction
  frame_open_ = false;
}

void connection::seal_message(const secure::outgoing_message& m) {
  secure::encode_message(m, secure::max_frame_body - secure::record_prefix,
                         [this](byte_span header, byte_span data) { add_record(header, data); });
  ++stats_.messages_sent;
  stats_.bytes_sent += m.payload.size();
}

asio::awaitable<error_code> connection::writer() {
  for (;;) {
    batch_.clear();
    for (const auto& c : control_) add_record(c, {});
    control_.clear();
    control_bytes_ = 0;
    while (batch_.size() < batch_limit && !awaiting_hello_ && !refused_) {
      auto m = queue_.pop();
      if (!m) break;
      seal_message(*m);
    }
    if (batch_.empty() && heartbeat_due_) add_record(secure::encode_heartbeat(), {});
    heartbeat_due_ = false;
    const bool send_close = closing_ && queue_.empty() && !close_sent_;
    if (send_close) {
      add_record(secure::encode_close(close_reason_, close_text_), {});
      close_sent_ = true;
    }
    finish_frame();
    if (!batch_.empty()) {
      writing_ = true;
      auto [ec, n] =
          co_await asio::async_write(stream_, asio::buffer(batch_), as_tuple(use_awaitable));
      // A write that failed or was cancelled may have left part of a frame
      // behind: writing_ stays set, so no last close follows it.
      if (ec) co_return ec;
      writing_ = false;
      last_sent_ = clock::now();
    }
    if (queue_.empty()) {
      flushed_.notify();
      // Idle from here: a bulk transfer's batch does not stay behind.
      if (batch_.capacity() > idle_batch_capacity) bytes().swap(batch_);
    }
    if (close_sent_) {
      // Our close is out; half-close and let the reader see the peer's end.
      stream_.shutdown_send();
      timer linger(stream_.get_executor());
      // The peer closed first (it replaced this connection): nothing more
      // will come.
      if (replaced_by_peer_) co_return make_error_code(errc::duplicate_connection);
      const auto limit = clock::now() + close_linger_limit;
      for (;;) {
        const auto quiet_until = std::min(last_received_ + close_linger, limit);
        if (clock::now() >= quiet_until) break;
        linger.expires_at(quiet_until);
        co_await linger.async_wait(as_tuple(use_awaitable));
      }
      co_return make_error_code(errc::timed_out);
    }
    if ((queue_.empty() || awaiting_hello_) && control_.empty() && !heartbeat_due_ && !closing_)
      co_await writer_wake_.wait();
  }
}

result<void> connection::handle(const secure::incoming& in, bool& ended, error_code& why) {
  // An inbound connection starts with the dialler's hello, and nothing but
  // heartbeats or a close may come before it.
  if (awaiting_hello_ && !std::holds_alternative<secure::incoming_hello>(in) &&
      !std::holds_alternative<secure::incoming_heartbeat>(in) &&
      !std::holds_alternative<secure::incoming_close>(in))
    return make_error_code(errc::protocol_violation);
  if (std::holds_alternative<secure::incoming_hello>(in)) {
    if (!awaiting_hello_) return make_error_code(errc::protocol_violation);
    awaiting_hello_ = false;
    return {};  // the reader awaits on_hello()
  }
  if (std::holds_alternative<secure::incoming_admit>(in)) {
    if (info_.inbound || admitted_) return make_error_code(errc::protocol_violation);
    info_.udp_port = std::get<secure::incoming_admit>(in).udp_port;
    admitted_ = true;
    admission_.notify();
    return {};
  }
  if (auto* m = std::get_if<secure::incoming_message>(&in)) {
    if (m->signature &&
        !verify_message_signature(info_.id, owner_.me().id(), m->payload, *m->signature))
      return make_error_code(errc::bad_signature);
    ++stats_.messages_received;
    stats_.bytes_received += m->payload.size();
    return {};  // delivered by the reader, which may have to wait
  }
  if (auto* c = std::get_if<secure::incoming_close>(&in)) {
    peer_close_ = *c;
    ended = true;
    why = c->reason == close_reason::duplicate ? make_error_code(errc::duplicate_connection)
                                               : make_error_code(errc::peer_closed);
    return {};
  }
  if (auto* o = std::get_if<secure::incoming_oversize>(&in)) {
    owner_.post_event(events::message_too_large{info_.id, o->declared_size});
  }
  if ((std::holds_alternative<secure::incoming_relay>(in) ||
       std::holds_alternative<secure::incoming_gossip>(in)) &&
      !admitted_)
    return make_error_code(errc::protocol_violation);
  return {};
}

asio::awaitable<error_code> connection::reader() {
  std::vector<byte> buf(read_buffer_min);
  std::size_t last_read = 0;
  for (;;) {
    // Sized before the read, not after it: what `in` points into below
    // must stay put while the records are handled.
    if (last_read == buf.size() && buf.size() < read_buffer_max) {
      buf = std::vector<byte>(std::min(buf.size() * 4, read_buffer_max));
    } else if (last_read <= small_read && buf.size() > read_buffer_min) {
      buf = std::vector<byte>(read_buffer_min);
    }
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(buf), as_tuple(use_awaitable));
    last_read = n;
    if (ec) {
      if (close_sent_ && (ec == asio::error::eof || ec == asio::error::connection_reset))
        co_return make_error_code(errc::peer_closed);
      co_return ec == asio::error::eof ? make_error_code(errc::peer_closed) : ec;
    }
    last_received_ = clock::now();
    mutable_byte_span in(buf.data(), n);
    while (!in.empty()) {
      auto body = opener_.next(in);
      if (!body) co_return body.error();
      if (!*body) break;
      // The body stays valid until the next opener_.next(): the records are
      // all handled (and delivered) before that.
      secure::record_reader records(**body);
      for (;;) {
        auto record = records.next();
        if (!record) co_return record.error();
        if (!*record) break;
        auto rec = reasm_.feed(**record);
        if (!rec) co_return rec.error();
        bool ended = false;
        error_code why;
        if (auto h = handle(*rec, ended, why); !h) co_return h.error();
        if (ended && why == errc::duplicate_connection && (!queue_.empty() || writing_)) {
          // The peer replaced this connection, and lingers to read what we
          // still send: flush our queue to it and close; the writer ends
          // the connection when its close is out.
          replaced_by_peer_ = true;
          close(close_reason::duplicate, "replaced");
          timer idle(stream_.get_executor());
          idle.expires_at(time_point::max());
          co_await idle.async_wait(as_tuple(use_awaitable));
          co_return why;
        }
        if (ended) {
          if (why == errc::duplicate_connection && !close_sent_) replaced_by_peer_ = true;
          co_return why;
        }
        if (auto* h = std::get_if<secure::incoming_hello>(&*rec)) {
          secure::incoming_hello hello = *h;
          co_await on_hello(hello);
        }
        if (refused_) continue;  // refused: the rest is read only to see the close
        if (auto* r = std::get_if<secure::incoming_relay>(&*rec)) {
          owner_.on_relay(shared_from_this(), std::move(r->body));
          continue;
        }
        if (auto* g = std::get_if<secure::incoming_gossip>(&*rec)) {
          owner_.on_gossip(shared_from_this(), std::move(g->body));
          continue;
        }
        if (auto* m = std::get_if<secure::incoming_message>(&*rec)) {
          if (earlier_) {
            // The connection this one replaced delivers what it still has first.
            auto earlier = std::move(earlier_);
            delivering_ = true;
            co_await earlier->wait_ended();
            delivering_ = false;
          }
          // Named, not a temporary inside the co_await: GCC 12 mishandles
          // non-trivial temporaries that live across a suspension.
          event ev = events::new_message{info_.id, std::move(m->payload), m->prio, m->signature};
          delivering_ = true;
          co_await owner_.deliver(std::move(ev), true);
          delivering_ = false;
        }
      }
    }
  }
}

asio::awaitable<error_code> connection::watchdog() {
  timer t(stream_.get_executor());
  const auto tick = std::min(heartbeat_interval_, heartbeat_timeout_) / 4;
  for (;;) {
    t.expires_after(tick);
    co_await t.async_wait(as_tuple(use_awaitable));
    auto now = clock::now();
    // While the application is slow to take messages the reader is blocked,
    // not the peer silent.
    if (delivering_) last_received_ = now;
    if (now - last_received_ > heartbeat_timeout_) co_return make_error_code(errc::connection_lost);
    if (awaiting_hello_ && now > hello_deadline_) co_return make_error_code(errc::timed_out);
    if (now - last_sent_ >= heartbeat_interval_ && !heartbeat_due_) {
      heartbeat_due_ = true;
      writer_wake_.notify();
    }
  }
}

asio::awaitable<void> connection::send_last_close(error_code why) {
  const auto reason = last_close_reason(why);
  // A close of ours is out already, or the writer stopped part way through
  // a frame (the stream cannot carry another), or the peer said goodbye.
  if (!reason || close_sent_ || writing_ || peer_close_) co_return;
  using namespace asio::experimental::awaitable_operators;
  batch_.clear();
  frame_open_ = false;
  add_record(secure::encode_close(*reason, why.message()), {});
  finish_frame();
  timer limit(stream_.get_executor());
  limit.expires_after(close_write_limit);
  (void)co_await (asio::async_write(stream_, asio::buffer(batch_), as_tuple(use_awaitable)) ||
                  limit.async_wait(as_tuple(use_awaitable)));
  stream_.shutdown_send();
}

asio::awaitable<error_code> connection::run() {
  using namespace asio::experimental::awaitable_operators;
  auto self = shared_from_this();
  auto outcome = co_await (reader() || writer() || watchdog());
  ended_ = true;
  error_code why = std::visit([](auto e) { return error_code(e); }, outcome);
  co_await send_last_close(why);
  stream_.close();
  flushed_.notify();
  earlier_.reset();
  if (peer_close_ && peer_close_->reason == close_reason::not_allowed)
    why = make_error_code(errc::not_allowed);
  if (overloaded_) why = make_error_code(errc::protocol_violation);
  end_reason_ = why;
  admission_.notify();
  if (close_sent_ && !replaced_by_peer_ &&
      (why == errc::peer_closed || why == errc::timed_out || why == errc::duplicate_connection))
    why = make_error_code(errc::peer_closed);  // we closed, and it ended as it should
  run_over_ = true;
  finished_.notify();
  co_return why;
}

}  // namespace crust::detail
