// crust::service: the public face. One per node, on the application's
// executor; it starts no threads. Every awaitable here honours Asio
// cancellation (a cancelled call returns errc::cancelled or the transport's
// operation_aborted, and leaves nothing running).
#pragma once

#include "crust/base/error.hpp"
#include "crust/config.hpp"
#include "crust/events.hpp"
#include "crust/secure/identity.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <optional>
#include <vector>

namespace crust {

struct send_options {
  priority prio = priority::normal;
  // Sign the message with our id key: the receiver gets a signature it can
  // keep as proof (non-repudiation). Costs one Ed25519 signature per message.
  bool sign = false;
};

class service {
 public:
  using endpoint = boost::asio::ip::tcp::endpoint;

  service(boost::asio::any_io_executor ex, config cfg, identity id);
  // Stops at once if stop() was not awaited: sockets close, no more events.
  ~service();
  service(service&&) noexcept;
  service& operator=(service&&) noexcept;
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  // Starts the TCP listener (cfg.listen_address : cfg.tcp_acceptor_port, a
  // random port for 0) and the accept loop. Returns the bound endpoint.
  // Emits ListenerStarted or ListenerFailed. Errors: the bind error,
  // shutting_down after stop().
  boost::asio::awaitable<result<endpoint>> start();

  // Closes the listener, sends every peer a close record after flushing
  // what is queued, waits for them up to `grace`, then closes the rest.
  // Pending next_event() calls return shutting_down. Safe to call twice.
  boost::asio::awaitable<void> stop(duration grace = seconds(2));

  // Dials `to` and runs Noise XK against `key`. If a connection to that peer
  // exists (or the simultaneous-dial rule keeps the peer's own dial), returns
  // that one. Errors: timed_out (cfg.connect_timeout / handshake_timeout),
  // connection_refused and other socket errors, handshake_failed,
  // handshake_rejected, wrong_peer_key, bad_signature, shutting_down,
  // cancelled. Emits ConnectSuccess or ConnectFailure.
  boost::asio::awaitable<result<peer_info>> connect(endpoint to, peer_key key);
  // An address-only dial (Noise XX): whoever answers at `to` and proves an
  // id. Same results as above.
  boost::asio::awaitable<result<peer_info>> connect(endpoint to);

  // Queues a message for `peer`; returns at once. Errors: not_connected,
  // message_too_large (over cfg.max_message_size; the connection is
  // unaffected). Under back-pressure lower priorities are dropped and a
  // MessagesDropped event says so.
  result<void> send(const public_id& peer, bytes payload, send_options opts = {});
  // Waits until everything queued for `peer` so far has been written to the
  // socket. Errors: not_connected (also if it ends first), cancelled.
  boost::asio::awaitable<result<void>> flush(const public_id& peer);
  // Flushes and closes the connection to `peer`; no LostPeer follows.
  void disconnect(const public_id& peer);

  // The next event, in order. Errors: shutting_down after stop(), cancelled.
  boost::asio::awaitable<result<event>> next_event();

  std::vector<peer_info> peers() const;
  std::optional<peer_stats> stats(const public_id& peer) const;
  std::optional<endpoint> local_endpoint() const;
  const identity& id() const;
  const config& cfg() const;

 private:
  class impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace crust
