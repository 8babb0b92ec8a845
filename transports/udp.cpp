#include "transports/udp.hpp"

#include "crust/base/notifier.hpp"
#include "transports/utp/packet.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/use_awaitable.hpp>

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
