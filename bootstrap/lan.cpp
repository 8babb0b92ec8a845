#include "bootstrap/lan.hpp"

#include "crust/base/log.hpp"
#include "crust/base/notifier.hpp"
#include "transports/endpoint.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/multicast.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>

#include <algorithm>
#include <map>

namespace crust::bootstrap {

namespace asio = boost::asio;
using udp = asio::ip::udp;

namespace {
constexpr std::size_t datagram_buffer = 2048;  // requests are 512 bytes; answers smaller
}

asio::ip::address_v6 beacon_multicast_group() {
  return asio::ip::make_address_v6("ff02::114");
}

std::vector<lan_interface> lan_interfaces() {
  std::map<std::string, lan_interface> by_name;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return {};
  for (auto* i = list; i; i = i->ifa_next) {
    if (!i->ifa_name || !(i->ifa_flags & IFF_UP)) continue;
    auto& li = by_name[i->ifa_name];
    li.name = i->ifa_name;
    li.index = ::if_nametoindex(i->ifa_name);
    li.loopback = (i->ifa_flags & IFF_LOOPBACK) != 0;
    li.multicast = (i->ifa_flags & IFF_MULTICAST) != 0;
    if (!i->ifa_addr) continue;
    if (i->ifa_addr->sa_family == AF_INET) {
      const auto* a = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      li.addresses.push_back(asio::ip::address_v4(ntohl(a->sin_addr.s_addr)));
      if ((i->ifa_flags & IFF_BROADCAST) && i->ifa_broadaddr) {
        const auto* b = reinterpret_cast<const sockaddr_in*>(i->ifa_broadaddr);
        li.broadcast = asio::ip::address_v4(ntohl(b->sin_addr.s_addr));
      }
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      asio::ip::address_v6::bytes_type raw;
      std::copy_n(a->sin6_addr.s6_addr, 16, raw.begin());
      li.addresses.push_back(asio::ip::address_v6(raw, a->sin6_scope_id));
    }
  }
  ::freeifaddrs(list);
  std::vector<lan_interface> out;
  for (auto& [name, li] : by_name) out.push_back(std::move(li));
  return out;
}

namespace {

bool has_v6(const lan_interface& li) {
  return std::any_of(li.addresses.begin(), li.addresses.end(),
                     [](const auto& a) { return a.is_v6(); });
}

// Where a request goes: IPv4 broadcast addresses (loopback's too) and the
// IPv6 group on each multicast interface, scoped by its index.
std::vector<udp::endpoint> beacon_targets(std::uint16_t port) {
  std::vector<udp::endpoint> out;
  for (const auto& li : lan_interfaces()) {
    if (li.loopback) out.emplace_back(asio::ip::make_address_v4("127.255.255.255"), port);
    if (li.broadcast && !li.loopback) out.emplace_back(*li.broadcast, port);
    if (li.multicast && !li.loopback && has_v6(li)) {
      auto group = beacon_multicast_group();
      group.scope_id(li.index);
      out.emplace_back(group, port);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

result<udp::socket> open_socket(const asio::any_io_executor& ex, const udp::endpoint& at,
                                bool reuse) {
  udp::socket s(ex);
  error_code ec;
  s.open(at.protocol(), ec);
  if (!ec && at.address().is_v6()) s.set_option(asio::ip::v6_only(true), ec);
  if (!ec && reuse) s.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && at.address().is_v4()) s.set_option(asio::socket_base::broadcast(true), ec);
  if (!ec) s.bind(at, ec);
  if (ec) return ec;
  return s;
}

}  // namespace

std::vector<advertised_endpoint> advertised_endpoints(const transport::tcp_endpoint& listener,
                                                      const asio::ip::address& asker) {
  const auto& at = listener.address();
  const auto from = transport::canonical(asker);
  if (!at.is_unspecified()) {
    if (at.is_loopback() && !from.is_loopback()) return {};
    return {{at, listener.port()}};
  }
  // A dual-stack listener is reachable wherever the request came from.
  if (at.is_v6() || from.is_v4()) return {{std::nullopt, listener.port()}};
  if (from.is_loopback())
    return {{asio::ip::address(asio::ip::address_v4::loopback()), listener.port()}};
  std::vector<advertised_endpoint> out;
  const auto scope = from.to_v6().scope_id();
  for (const auto& li : lan_interfaces()) {
    if (li.index != scope || li.loopback) continue;
    for (const auto& a : li.addresses)
      if (a.is_v4() && out.size() < beacon_max_endpoints) out.push_back({a, listener.port()});
  }
  return out;
}

beacon_responder::beacon_responder(const asio::any_io_executor& ex, std::uint16_t port)
    : port_(port), v4_(ex), v6_(ex) {}

std::vector<beacon_responder::opened> beacon_responder::open() {
  std::vector<opened> out;
  const udp::endpoint at4(asio::ip::address_v4::any(), port_),
      at6(asio::ip::address_v6::any(), port_);
  const std::string where4 = "udp beacon " + transport::to_string({at4.address(), port_});
  auto s4 = open_socket(v4_.get_executor(), at4, true);
  if (s4) v4_ = std::move(*s4);
  out.push_back({where4, s4.has_value(), s4 ? error_code{} : s4.error()});

  std::string where6 = "udp6 beacon " + transport::to_string({at6.address(), port_});
  auto s6 = open_socket(v6_.get_executor(), at6, true);
  if (!s6) {
    out.push_back({where6, false, s6.error()});
    return out;
  }
  std::vector<std::string> joined;
  for (const auto& li : lan_interfaces()) {
    if (!li.multicast || li.loopback || !has_v6(li)) continue;
    error_code ec;
    s6->set_option(asio::ip::multicast::join_group(beacon_multicast_group(), li.index), ec);
    if (ec)
      CRUST_LOG(debug, "lan", "cannot join ff02::114 on " << li.name << ": " << ec.message());
    else
      joined.push_back(li.name);
  }
  v6_ = std::move(*s6);
  where6 += " (ff02::114 on ";
  for (std::size_t i = 0; i < joined.size(); ++i) where6 += (i ? "," : "") + joined[i];
  where6 += joined.empty() ? "no interface)" : ")";
  out.push_back({where6, true, {}});
  return out;
}

bool beacon_responder::is_open() const {
  return v4_.is_open() || v6_.is_open();
}

void beacon_responder::close() {
  error_code ec;
  v4_.close(ec);
  v6_.close(ec);
}

asio::awaitable<void> beacon_responder::serve(answer_fn answer) {
  using namespace asio::experimental::awaitable_operators;
  co_await (serve_one(v4_, answer) && serve_one(v6_, answer));
}

asio::awaitable<void> beacon_responder::serve_one(udp::socket& s, const answer_fn& answer) {
  std::vector<byte> buf(datagram_buffer);
  while (s.is_open()) {
    udp::endpoint from;
    auto [ec, n] =
        co_await s.async_receive_from(asio::buffer(buf), from, asio::as_tuple(asio::use_awaitable));
    const bool cancelled = co_await cancel_requested();
    if (cancelled || !s.is_open() || ec == asio::error::operation_aborted) co_return;
    if (ec) continue;  // ICMP errors and the like: keep serving
    auto reply = answer(byte_span(buf.data(), n), from);
    if (!reply) continue;
    auto [sec, sent] =
        co_await s.async_send_to(asio::buffer(*reply), from, asio::as_tuple(asio::use_awaitable));
    if (sec)
      CRUST_LOG(debug, "lan", "answer to " << from.address().to_string() << ": " << sec.message());
  }
}

asio::awaitable<std::vector<beacon_contact>> discover_lan(
    const beacon_query& query, std::uint16_t port, duration window,
    std::function<bool(const beacon_contact&)> keep) {
  using namespace asio::experimental::awaitable_operators;
  auto ex = co_await asio::this_coro::executor;
  std::vector<beacon_contact> found;
  auto s4 = open_socket(ex, {asio::ip::address_v4::any(), 0}, false);
  auto s6 = open_socket(ex, {asio::ip::address_v6::any(), 0}, false);
  if (!s4 && !s6) {
    CRUST_LOG(warn, "lan", "LAN discovery: cannot open a socket: " << s4.error().message());
    co_return found;
  }
  udp::socket v4 = s4 ? std::move(*s4) : udp::socket(ex);
  udp::socket v6 = s6 ? std::move(*s6) : udp::socket(ex);
  if (v6.is_open()) {
    error_code ec;
    v6.set_option(asio::ip::multicast::hops(1), ec);
  }
  const auto request = query.request();
  const auto targets = beacon_targets(port);

  auto send_all = [&] {
    for (const auto& t : targets) {
      auto& s = t.address().is_v4() ? v4 : v6;
      if (!s.is_open()) continue;
      error_code ec;
      s.send_to(asio::buffer(request), t, 0, ec);
      if (ec)
        CRUST_LOG(debug, "lan",
                  "LAN discovery: sending to " << t.address().to_string() << ": " << ec.message());
    }
  };
  auto listen = [&](udp::socket& s) -> asio::awaitable<void> {
    std::vector<byte> buf(datagram_buffer);
    while (s.is_open()) {
      udp::endpoint from;
      auto [ec, n] = co_await s.async_receive_from(asio::buffer(buf), from,
                                                   asio::as_tuple(asio::use_awaitable));
      const bool cancelled = co_await cancel_requested();
      if (cancelled || ec == asio::error::operation_aborted) co_return;
      if (ec) continue;
      auto c = query.accept(byte_span(buf.data(), n), from.address());
      if (!c || (keep && !keep(*c))) continue;
      const bool dup = std::any_of(found.begin(), found.end(),
                                   [&](const auto& f) { return f.key.id == c->key.id; });
      if (!dup) found.push_back(std::move(*c));
    }
  };
  // Sends, sends once more a third of the way in (for a request lost on the
  // way), and ends the round at the deadline.
  auto schedule = [&]() -> asio::awaitable<void> {
    timer t(ex);
    send_all();
    t.expires_after(window / 3);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return;
    send_all();
    t.expires_after(window - window / 3);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  };
  co_await (schedule() || (listen(v4) && listen(v6)));
  CRUST_LOG(debug, "lan", "LAN discovery: " << found.size() << " answers");
  co_return found;
}

}  // namespace crust::bootstrap
