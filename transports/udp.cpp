#include "transports/udp.hpp"

#include "crust/base/notifier.hpp"
#include "transports/utp/packet.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace crust::transport {

namespace {
constexpr std::uint32_t stun_cookie = 0x2112A442;
constexpr int socket_buffer = 4 << 20;  // bursts of a whole µTP window fit
constexpr int batch_limit = 64;         // datagrams read before the batch ends
constexpr std::size_t max_datagram = 65536;
}  // namespace

datagram_kind classify(byte_span d) noexcept {
  if (utp::looks_like_utp(d)) return datagram_kind::utp;
  if (d.size() >= 20 && (d[0] & 0xc0) == 0 && get_u32(d.data() + 4) == stun_cookie)
    return datagram_kind::stun;
  return datagram_kind::other;
}

namespace {

// DF for IPv4 and IPv6 at once: a dual-stack socket sends IPv4 under the
// IPv4 option. Errors are ignored (the other family's level may refuse).
void set_pmtu_mode(int fd, int v4_mode, int v6_mode) {
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v4_mode, sizeof v4_mode);
  setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v6_mode, sizeof v6_mode);
}

}  // namespace

std::size_t max_udp_payload(const udp_endpoint& to) {
  auto addr = to.address();
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  const bool v6 = addr.is_v6();
  const int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  const udp_endpoint target(addr, to.port() == 0 ? 9 : to.port());
  int mtu = 0;
  socklen_t len = sizeof mtu;
  const bool ok =
      ::connect(fd, target.data(), static_cast<socklen_t>(target.size())) == 0 &&
      getsockopt(fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_MTU : IP_MTU, &mtu, &len) == 0;
  ::close(fd);
  const int headers = v6 ? 40 + 8 : 20 + 8;
  if (!ok || mtu <= headers) return 0;
  return std::min<std::size_t>(static_cast<std::size_t>(mtu - headers), 65507);
}

std::optional<asio::ip::address> source_address_toward(const udp_endpoint& to) {
  asio::io_context io;
  asio::ip::udp::socket s(io);
  error_code ec;
  auto addr = to.address();
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  s.open(addr.is_v4() ? asio::ip::udp::v4() : asio::ip::udp::v6(), ec);
  if (!ec) s.connect({addr, to.port() == 0 ? std::uint16_t{9} : to.port()}, ec);
  if (ec) return std::nullopt;
  const auto local = s.local_endpoint(ec);
  if (ec) return std::nullopt;
  return local.address();
}

result<std::shared_ptr<udp_mux>> udp_mux::open(const asio::any_io_executor& ex,
                                               const udp_endpoint& at) {
  asio::ip::udp::socket s(ex);
  error_code ec;
  s.open(at.protocol(), ec);
  if (ec) return ec;
  if (at.address().is_v6()) {
    s.set_option(asio::ip::v6_only(false), ec);
    ec.clear();  // dual-stack where the system allows it
  }
  // Larger buffers where the system allows them; the defaults still work.
  s.set_option(asio::socket_base::receive_buffer_size(socket_buffer), ec);
  s.set_option(asio::socket_base::send_buffer_size(socket_buffer), ec);
  ec.clear();
  s.bind(at, ec);
  if (ec) return ec;
  s.non_blocking(true, ec);
  if (ec) return ec;
  set_pmtu_mode(s.native_handle(), IP_PMTUDISC_DONT, IPV6_PMTUDISC_DONT);
  return std::shared_ptr<udp_mux>(new udp_mux(std::move(s)));
}

void udp_mux::on(datagram_kind k, handler h) {
  handlers_[static_cast<int>(k)] = std::move(h);
}

void udp_mux::send(byte_span d, const udp_endpoint& to) {
  error_code ec;
  socket_.send_to(asio::buffer(d.data(), d.size()), to, 0, ec);
  if (ec)
    ++stats_.send_dropped;
  else
    ++stats_.sent;
}

void udp_mux::send_unfragmented(byte_span d, const udp_endpoint& to) {
  // The mode is the socket's, so it is set for this one datagram; nothing
  // else sends on the socket in between (one thread runs its executor).
  const int fd = socket_.native_handle();
  set_pmtu_mode(fd, IP_PMTUDISC_PROBE, IPV6_PMTUDISC_PROBE);
  send(d, to);
  set_pmtu_mode(fd, IP_PMTUDISC_DONT, IPV6_PMTUDISC_DONT);
}

void udp_mux::dispatch(byte_span d, const udp_endpoint& from) {
  ++stats_.received;
  auto& h = handlers_[static_cast<int>(classify(d))];
  if (h)
    h(d, from);
  else
    ++stats_.unclaimed;
}

asio::awaitable<void> udp_mux::run() {
  auto self = shared_from_this();
  std::vector<byte> buf(max_datagram);
  while (socket_.is_open()) {
    // Wait until readable, then drain what is there without blocking.
    auto [wec] = co_await socket_.async_wait(asio::socket_base::wait_read,
                                             asio::as_tuple(asio::use_awaitable));
    const bool cancelled = co_await cancel_requested();
    if (cancelled || !socket_.is_open() || wec == asio::error::operation_aborted) co_return;
    for (int i = 0; i < batch_limit; ++i) {
      udp_endpoint from;
      error_code ec;
      const auto n = socket_.receive_from(asio::buffer(buf), from, 0, ec);
      if (ec == asio::error::would_block) break;
      if (ec) continue;  // ICMP reports (a port unreachable) and the like
      dispatch(byte_span(buf.data(), n), from);
    }
    if (batch_end_) batch_end_();
  }
}

void udp_mux::close() {
  error_code ec;
  socket_.close(ec);
}

udp_endpoint udp_mux::local_endpoint() const {
  error_code ec;
  return socket_.local_endpoint(ec);
}

}  // namespace crust::transport
