// TCP endpoints as text: "1.2.3.4:5" and "[::1]:5".
#pragma once

#include "crust/base/error.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <string>
#include <string_view>

namespace crust::transport {

using tcp_endpoint = boost::asio::ip::tcp::endpoint;

// Parses "ip:port" or "[v6]:port". Errors: bad_config.
result<tcp_endpoint> parse_endpoint(std::string_view text);
std::string to_string(const tcp_endpoint& ep);

// The address as it should be compared: an IPv4-mapped IPv6 address
// (::ffff:a.b.c.d, what a dual-stack socket reports) as plain IPv4.
boost::asio::ip::address canonical(const boost::asio::ip::address& a);

}  // namespace crust::transport
