// The node's one UDP socket (Crust's randomised port by default), shared by
// everything datagram: µTP, STUN, punch probes. The receive loop reads in
// batches and hands each datagram to a handler chosen by its first bytes:
//   - µTP: utp::looks_like_utp (version nibble 1, type 0-4, a 20-byte
//     header, and not STUN's magic cookie at bytes 4-7);
//   - STUN: first two bits 00 and the cookie 0x2112A442 at bytes 4-7
//     (RFC 8489 §5): nat::stun_agent serves and asks;
//   - anything else goes to the `other` handler (punch probes), if set.
// The LAN beacon has a port of its own (bootstrap/lan.hpp).
#pragma once

#include "crust/base/bytes.hpp"
#include "crust/base/error.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/udp.hpp>

#include <functional>
#include <memory>
#include <optional>

namespace crust::transport {

namespace asio = boost::asio;
using udp_endpoint = asio::ip::udp::endpoint;

enum class datagram_kind { utp, stun, other };

// The largest UDP payload the route to `to` carries in one IP packet: the
// outgoing interface's MTU (or what the kernel learnt of the path) less
// the IP and UDP headers; 0 when there is no route. Asks the kernel with a
// connected socket of its own; sends nothing.
std::size_t max_udp_payload(const udp_endpoint& to);
// The source address the kernel would use toward `to` (the route's
// preferred source); nullopt when there is no route. Sends nothing.
std::optional<asio::ip::address> source_address_toward(const udp_endpoint& to);
datagram_kind classify(byte_span datagram) noexcept;

class udp_mux : public std::enable_shared_from_this<udp_mux> {
 public:
  using handler = std::function<void(byte_span datagram, const udp_endpoint& from)>;

  // Binds `at` (port 0: a random port). IPv6 wildcard sockets are
  // dual-stack. Errors: the bind error.
  static result<std::shared_ptr<udp_mux>> open(const asio::any_io_executor& ex,
                                               const udp_endpoint& at);

  void on(datagram_kind k, handler h);
  // Called after each batch of received datagrams (µTP flushes its ACKs).
  void on_batch_end(std::function<void()> f) { batch_end_ = std::move(f); }

  // Best effort, never blocks: a datagram the socket cannot take now is
  // dropped and counted, as the network would. Datagrams may be
  // fragmented (the socket never sets DF), so one cut for a path that has
  // since shrunk still arrives.
  void send(byte_span datagram, const udp_endpoint& to);
  // The same with DF set and the kernel's own path MTU ignored: for MTU
  // probes, which must be dropped by a path too small for them. One is
  // refused here (and counted as dropped) if larger than the interface's MTU.
  void send_unfragmented(byte_span datagram, const udp_endpoint& to);

  // Receives until close(); returns then.
  asio::awaitable<void> run();
  void close();
  udp_endpoint local_endpoint() const;
  asio::any_io_executor get_executor() { return socket_.get_executor(); }

  struct figures {
    std::uint64_t received = 0, sent = 0, send_dropped = 0, unclaimed = 0;
  };
  const figures& stats() const { return stats_; }

 private:
  explicit udp_mux(asio::ip::udp::socket s) : socket_(std::move(s)) {}
  void dispatch(byte_span d, const udp_endpoint& from);

  asio::ip::udp::socket socket_;
  handler handlers_[3];
  std::function<void()> batch_end_;
  figures stats_;
};

}  // namespace crust::transport
