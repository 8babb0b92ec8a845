#include "transports/endpoint.hpp"

#include <charconv>
#include <string>

namespace crust::transport {

result<tcp_endpoint> parse_endpoint(std::string_view text) {
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return make_error_code(errc::bad_config);
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return make_error_code(errc::bad_config);
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned p = 0;
  auto [ptr, perr] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (perr != std::errc{} || ptr != port.data() + port.size() || p > 65535)
    return make_error_code(errc::bad_config);
  error_code ec;
  auto addr = boost::asio::ip::make_address(std::string(host), ec);
  if (ec) return make_error_code(errc::bad_config);
  return tcp_endpoint(addr, static_cast<unsigned short>(p));
}

std::string to_string(const tcp_endpoint& ep) {
  auto a = ep.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(ep.port());
}

boost::asio::ip::address canonical(const boost::asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
  return a;
}

}  // namespace crust::transport
