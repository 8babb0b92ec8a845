// The per-socket µTP manager: every µTP connection of one UDP socket,
// demultiplexed by (remote endpoint, connection id); their timers; the
// accept queue. It owns the connection states, so a FIN outlives the
// handle that asked for it. The socket itself is the caller's (udp_mux):
// the manager gets datagrams through on_datagram() and sends through the
// function it was given.
#pragma once

#include "crust/base/notifier.hpp"
#include "transports/rate_limit.hpp"
#include "transports/udp.hpp"
#include "transports/utp/stream.hpp"

#include <boost/asio/awaitable.hpp>

#include <deque>
#include <functional>
#include <map>
#include <random>
#include <set>

namespace crust::utp {

class manager : public std::enable_shared_from_this<manager> {
 public:
  using send_fn = std::function<void(byte_span datagram, const asio::ip::udp::endpoint& to)>;

  struct options {
    // For every connection. conn.max_datagram, if set, caps the MTU search;
    // otherwise it goes up to what path_limit says of the peer's route.
    settings conn;
    bool probe_mtu = true;
    std::function<std::size_t(const asio::ip::udp::endpoint&)> path_limit;
    std::size_t backlog = 128;  // connections waiting in accept(); beyond, new ones are reset
    // SYNs answered whose senders have not yet shown they receive there
    // (connection::verified); beyond, a random one of them makes room.
    std::size_t max_half_open = 1024;
    std::size_t max_connections = 4096;
    duration linger = seconds(30);  // a released connection's time to finish its FIN
  };

  // `send_probe` sends a datagram that must not be fragmented (MTU probes).
  static std::shared_ptr<manager> create(asio::any_io_executor ex, options o, send_fn send,
                                         send_fn send_probe);

  // Input from the socket: one datagram that looks like µTP.
  void on_datagram(byte_span datagram, const asio::ip::udp::endpoint& from);
  // After a batch of input: sends what the batch made due (ACKs coalesce).
  void flush_dirty();

  // Connects to `to`: the SYN, and the answer within the SYN retries.
  // Errors: timed_out, connection_reset, shutting_down, too many
  // connections (errc::no_buffer_space); cancellation (any type) resets
  // the attempt and returns operation_aborted.
  asio::awaitable<result<utp_stream>> connect(asio::ip::udp::endpoint to);
  // The next inbound connection. Errors: shutting_down; cancellation as above.
  asio::awaitable<result<utp_stream>> accept();
  // Whether SYNs are answered (off by default: a node that only dials).
  void listen(bool on) { listening_ = on; }

  // The timer loop; returns after shutdown().
  asio::awaitable<void> run();
  // Resets every connection, ends run(), accept() and connect().
  void shutdown();

  std::size_t size() const { return conns_.size(); }
  struct figures {
    std::uint64_t datagrams_in = 0, datagrams_out = 0, resets_sent = 0, syns_ignored = 0;
    std::uint64_t resets_limited = 0;  // not sent: over the source's rate
    std::uint64_t syns_limited = 0;    // SYNs unanswered: over the source's rate
    std::uint64_t accepted = 0, connected = 0;
    // Half-open connections: dropped to make room, ended unverified (a
    // wrong acknowledgement or the half-open timeout), and verified.
    std::uint64_t half_open_evicted = 0, half_open_failed = 0, verified = 0;
  };
  const figures& stats() const { return stats_; }

  // For stream_state: `st` changed (a write, a read, a close).
  void touch(const std::shared_ptr<stream_state>& st);

 private:
  using key = std::pair<asio::ip::udp::endpoint, std::uint16_t>;  // remote, our receive id
  manager(asio::any_io_executor ex, options o, send_fn send, send_fn send_probe);
  settings settings_for(const asio::ip::udp::endpoint& peer) const;

  void flush_one(stream_state& st, time_point now);
  void send_reset(const packet& p, const asio::ip::udp::endpoint& to);
  void answer_syn(const packet& syn, const asio::ip::udp::endpoint& from, time_point now);
  // A half-open connection's state changed: into the accept queue once
  // verified, forgotten once ended.
  void settle_half_open(const key& k, const std::shared_ptr<stream_state>& st, time_point now);
  void forget_half_open(const key& k);
  void rearm(time_point deadline);
  void reap(time_point now);
  // When the manager next has to look at `st`: its timers, or its linger.
  time_point wake_for(const stream_state& st) const;

  asio::any_io_executor ex_;
  options opt_;
  send_fn send_, send_probe_;
  std::map<key, std::shared_ptr<stream_state>> conns_;
  std::set<std::shared_ptr<stream_state>> dirty_;
  bool flush_posted_ = false;
  std::deque<std::shared_ptr<stream_state>> accept_queue_;
  notifier accepted_;
  notifier changed_;  // some connection's state changed: connect() waiters look
  timer timer_;
  time_point next_wake_ = time_point::max();
  bool listening_ = false;
  bool stopped_ = false;
  std::mt19937 rng_{std::random_device{}()};
  // An acceptor's first sequence number is what proves its peer receives
  // at its address: from the system's generator, not a predictable one.
  std::random_device isn_source_;
  std::vector<key> half_open_;
  // Resets answer datagrams from anyone: 20/s per source (burst 40), 1000/s in all.
  transport::rate_limiter reset_limiter_{20, 40, 1000, 1024};
  // So do the answers to SYNs (each no bigger than its SYN): 50/s per
  // source (burst 100), 2000/s in all.
  transport::rate_limiter syn_limiter_{50, 100, 2000, 1024};
  figures stats_;
};

// A manager that sends through `mux` and gets its µTP datagrams (and the
// end of each receive batch) from it. Start mux->run() and run() yourself.
std::shared_ptr<manager> attach(const std::shared_ptr<transport::udp_mux>& mux,
                                manager::options o = {});

}  // namespace crust::utp
