// The LAN beacon's sockets: the responder that answers on the
// service-discovery port, and one discovery round of an asker. The wire
// format and the decisions are in beacon.hpp; this file only moves bytes.
//
// Requests go out two ways, and a responder listens on both:
// - IPv4: to every up interface's broadcast address, loopback's
//   (127.255.255.255) included so nodes on one host find each other;
// - IPv6: to the link-local multicast group ff02::114 (RFC 4727's
//   experimental group) on every up, multicast-capable interface with an
//   IPv6 address, by interface index. A responder joins that group on each
//   such interface.
#pragma once

#include "bootstrap/beacon.hpp"
#include "crust/base/clock.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/udp.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crust::bootstrap {

// ff02::114: the group every beacon responder joins on every interface.
boost::asio::ip::address_v6 beacon_multicast_group();

// An up interface, as beacon discovery needs it.
struct lan_interface {
  std::string name;
  unsigned index = 0;
  bool loopback = false;
  bool multicast = false;                                // IFF_MULTICAST
  std::optional<boost::asio::ip::address_v4> broadcast;  // IFF_BROADCAST's address
  std::vector<boost::asio::ip::address> addresses;       // IPv4 and IPv6
};
std::vector<lan_interface> lan_interfaces();

// What a node listening on TCP at `listener` advertises to an asker at
// `asker`: "where my answer came from" for a wildcard listener the asker
// can reach that way; for an IPv4-only wildcard listener asked over IPv6,
// the IPv4 addresses of the interface the request came in on (by the
// asker's scope id; 127.0.0.1 for ::1); a specific address as it is, except that a loopback
// listener answers only its own host. Empty: do not answer.
std::vector<advertised_endpoint> advertised_endpoints(const transport::tcp_endpoint& listener,
                                                      const boost::asio::ip::address& asker);

// The responder: one IPv4 and one IPv6 socket on the discovery port, both
// with SO_REUSEADDR so every node on a host shares the port. `answer`
// decides what to send back to `from` (nullopt: nothing); it is called
// for every datagram and must do its own rate limiting and refusals.
class beacon_responder {
 public:
  using answer_fn = std::function<std::optional<bytes>(byte_span request,
                                                       const boost::asio::ip::udp::endpoint& from)>;

  beacon_responder(const boost::asio::any_io_executor& ex, std::uint16_t port);

  // Opens both sockets (the IPv6 one joined to the group on every
  // interface that has multicast). Each entry says what was opened, or
  // why not ("udp6 beacon [::]:5484: Address already in use"); `ok` is
  // false for the failures. The responder serves what did open.
  struct opened {
    std::string what;
    bool ok = false;
    error_code error;
  };
  std::vector<opened> open();
  bool is_open() const;

  // Serves until close() or cancellation. Never fails: a receive error
  // (an ICMP report, say) is skipped.
  boost::asio::awaitable<void> serve(answer_fn answer);
  void close();

 private:
  boost::asio::awaitable<void> serve_one(boost::asio::ip::udp::socket& s, const answer_fn& answer);

  std::uint16_t port_;
  boost::asio::ip::udp::socket v4_;
  boost::asio::ip::udp::socket v6_;
};

// One discovery round: sends `query`'s request over IPv4 broadcast and
// IPv6 multicast to `port`, once more a third of the way in, and returns
// the verified answers that arrive within `window` (one per peer id;
// `keep` may drop some, e.g. our own id or a blacklisted one). Never
// fails: a socket error is logged and gives what was found so far.
// Honours cancellation (returns what was found).
boost::asio::awaitable<std::vector<beacon_contact>> discover_lan(
    const beacon_query& query, std::uint16_t port, duration window,
    std::function<bool(const beacon_contact&)> keep);

}  // namespace crust::bootstrap
