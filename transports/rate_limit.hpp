// Rate limits for answers to unauthenticated datagrams (the LAN beacon,
// STUN, µTP resets and SYNs) and for inbound handshakes under load: a
// token bucket per source and one for everything.
#pragma once

#include "crust/base/clock.hpp"

#include <boost/asio/ip/address.hpp>

#include <map>

namespace crust::transport {

// Token buckets per source address and one global bucket, bounded in the
// number of sources it remembers (the least recently seen are forgotten).
class rate_limiter {
 public:
  rate_limiter(double per_source_per_second = 5, double burst = 10, double global_per_second = 200,
               std::size_t max_sources = 1024)
      : rate_(per_source_per_second),
        burst_(burst),
        global_rate_(global_per_second),
        max_sources_(max_sources),
        global_tokens_(global_per_second) {}
  bool allow(const boost::asio::ip::address& source, time_point now);
  // Whether `source` has no token left (allow() would refuse it for its
  // own bucket), without spending one; a source never seen has its burst.
  bool exhausted(const boost::asio::ip::address& source, time_point now);

 private:
  struct bucket {
    double tokens = 0;
    time_point last{};
  };
  double rate_, burst_, global_rate_;
  std::size_t max_sources_;
  double global_tokens_;
  time_point global_last_{};
  std::map<boost::asio::ip::address, bucket> buckets_;
};

// What one source is, for a rate limit: an IPv4 address (IPv4-mapped
// IPv6 as IPv4), or an IPv6 address's /64, which one host usually holds
// whole and can send from any address of.
boost::asio::ip::address source_of(const boost::asio::ip::address& a);

}  // namespace crust::transport
