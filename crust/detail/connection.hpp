// One authenticated connection: the send queue, the frame codec and three
// coroutines (reader, writer, watchdog) over a transport stream.
#pragma once

#include "crust/base/notifier.hpp"
#include "crust/config.hpp"
#include "crust/events.hpp"
#include "crust/secure/frame.hpp"
#include "crust/secure/handshake.hpp"
#include "crust/secure/message.hpp"
#include "transports/stream.hpp"

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace crust::detail {

// What a connection needs from its owner; the owner outlives run().
class connection_owner {
 public:
  virtual ~connection_owner() = default;
  // Delivers an event; for messages it may wait for room (back-pressure).
  virtual boost::asio::awaitable<void> deliver(event ev, bool is_message) = 0;
  virtual void post_event(event ev) = 0;
  virtual const identity& me() const = 0;
  // Our UDP socket's port, told to the peer in hello or admit (0: none).
  virtual std::uint16_t udp_port() const = 0;
  // An inbound connection's hello arrived: nullopt admits it (the owner
  // registers it), a text refuses it (it is closed with not_allowed). It
  // may take a while (a reachability dial-back); the connection reads
  // nothing meanwhile, and if it ends before the answer, the answer is
  // not acted on.
  virtual boost::asio::awaitable<std::optional<std::string>> admit(
      const std::shared_ptr<class connection>& conn, const secure::incoming_hello& hello) = 0;
  // A relay record (its body) arrived on an admitted connection.
  virtual void on_relay(const std::shared_ptr<class connection>& conn, bytes body) = 0;
  // A gossip record (its body) arrived on an admitted connection.
  virtual void on_gossip(const std::shared_ptr<class connection>& conn, bytes body) = 0;
};

class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(transport::stream s, secure::handshake_result hs, const config& cfg,
             connection_owner& owner, duration handshake_time);

  const peer_info& info() const noexcept { return info_; }
  // The counters, with the transport's current round trip.
  peer_stats stats() const {
    peer_stats s = stats_;
    s.rtt = stream_.rtt();
    return s;
  }
  // When the owner registered it (for uptime).
  time_point registered_at() const noexcept { return registered_at_; }
  void set_registered(time_point t) noexcept { registered_at_ = t; }
  bool initiated_by_us() const noexcept { return !info_.inbound; }
  const std::optional<boost::asio::ip::address>& remote_ip() const noexcept { return remote_ip_; }

  // Outbound: say who we are, and where we listen (TCP; our UDP port comes
  // from the owner; 0: nowhere); goes out before anything else.
  void send_hello(node_role role, bool bootstrap, std::uint16_t listen_port);
  // Outbound: waits for the peer's admit. Errors: not_allowed (refused),
  // timed_out (no answer within the handshake timeout), the reason the
  // connection ended, cancelled.
  boost::asio::awaitable<result<void>> wait_admitted();

  // Queues a relay record (whole, type byte first) ahead of messages; false
  // once the connection is closing. A peer that leaves 4 MiB of them
  // unread is disconnected (protocol_violation): false then too.
  bool send_control(bytes record);
  // The application gets nothing from this connection until `earlier` (the
  // connection to the same peer it replaces) has ended: what the peer
  // sent on that one before its close comes first, so a switch of paths
  // never reorders messages.
  void deliver_after(std::shared_ptr<connection> earlier);
  // How this connection reaches the peer, and how long it took to set up.
  void set_path(path_kind p, std::optional<duration> connect_time = std::nullopt) {
    info_.path = p;
    if (connect_time) info_.connect_time = *connect_time;
  }
  // Returns once run() has ended.
  boost::asio::awaitable<void> wait_ended();
  bool ended() const noexcept { return ended_; }

  // Queues a message. Errors: message_too_large, not_connected when closing.
  // Drops under back-pressure are reported as a messages_dropped event.
  result<void> send(bytes payload, priority prio, bool sign);
  // Waits until everything queued so far is written (or the connection ends).
  boost::asio::awaitable<result<void>> flush();
  // Flushes what is queued, sends a close record and ends when the peer has
  // closed too (or after a grace period).
  void close(close_reason reason, std::string text = {});
  // Closes the socket at once.
  void abort() noexcept;

  // The peer closed this connection as a duplicate (it keeps another one
  // to us): what we had queued is still flushed to it, but new messages
  // belong on the connection that replaces this one.
  bool replaced_by_peer() const noexcept { return replaced_by_peer_; }

  // What the peer said when it closed ("shutdown: service stopping"), or "".
  std::string peer_close_detail() const;

  // Runs until the connection ends; returns why.
  boost::asio::awaitable<error_code> run();

 private:
  boost::asio::awaitable<error_code> reader();
  boost::asio::awaitable<error_code> writer();
  boost::asio::awaitable<error_code> watchdog();
  result<void> handle(const secure::incoming& in, bool& ended, error_code& why);
  void seal_message(const secure::outgoing_message& m);
  void add_record(byte_span header, byte_span data);
  void finish_frame();
  boost::asio::awaitable<void> on_hello(secure::incoming_hello h);
  // Tells the peer why we end (a last close record), when the stream can
  // still carry a whole frame; bounded by close_write_limit.
  boost::asio::awaitable<void> send_last_close(error_code why);

  transport::stream stream_;
  connection_owner& owner_;  // outlives run(): the service awaits every connection
  peer_info info_;
  peer_stats stats_;
  std::size_t max_message_;
  duration heartbeat_interval_;
  duration heartbeat_timeout_;
  secure::frame_sealer sealer_;
  secure::frame_opener opener_;
  secure::reassembler reasm_;
  secure::send_queue queue_;
  notifier writer_wake_;
  notifier flushed_;
  notifier admission_;
  notifier finished_;                    // run() has ended
  std::shared_ptr<connection> earlier_;  // see deliver_after()
  bool run_over_ = false;
  std::vector<bytes> control_;       // hello/admit and relay records, written before messages
  std::size_t control_bytes_ = 0;    // relay records in control_ (send_control)
  std::vector<bytes> held_control_;  // inbound: send_control()'s records until our admit is queued
  bool overloaded_ = false;          // they passed control_queue_limit: aborted
  std::optional<boost::asio::ip::address> remote_ip_;
  time_point hello_deadline_;
  bool awaiting_hello_ = false;  // inbound, until the dialler's hello
  bool refused_ = false;         // inbound, refused: nothing is delivered
  bool admitted_ = false;        // inbound: we admitted; outbound: the peer did
  bytes batch_;
  bool frame_open_ = false;
  bool writing_ = false;
  bool heartbeat_due_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool ended_ = false;
  bool delivering_ = false;  // the reader waits on the owner, not on the peer
  bool replaced_by_peer_ = false;
  close_reason close_reason_ = close_reason::normal;
  std::string close_text_;
  std::optional<secure::incoming_close> peer_close_;
  error_code end_reason_;  // why run() ended, for wait_admitted()
  time_point last_received_;
  time_point last_sent_;
  time_point registered_at_{};
};

}  // namespace crust::detail
